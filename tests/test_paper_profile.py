"""The `paper` profile's code path on a tiny Something-Something V1 folder written by `taf.synthetic`: the real
SSV1 reader, TSM's official recipe (`tsm_ssv1`, shrunk by overrides), the `val` split, then the corruption table
from the run manifest -- so a GPU box never meets this path for the first time."""
import json

import pandas as pd

from taf.synthetic import write_ssv1, get_config, replace_config


def test_paper_profile_on_tiny_ssv1(tmp_path, papermill):
    cfg = replace_config(get_config('small'), num_classes=4, size=32, num_frames=8, train_per_class=4, val_per_class=2)
    write_ssv1(tmp_path / 'ssv1', cfg)
    fig, runs = tmp_path / 'fig', tmp_path / 'runs'
    papermill('taf_vs_control.ipynb', tmp_path / 'a.ipynb', '-p', 'profile', 'paper', '-p', 'root', str(tmp_path / 'ssv1'),
              '-p', 'baseline_epochs', '1', '-p', 'finetune_epochs', '1', '-p', 'out_dir', str(fig),
              '-p', 'runs_dir', str(runs), '-y',
              'seeds: [0]\nmethods: [control, taf]\noverrides: {backbone: resnet18, width: 8, batch_size: 4, workers: 0, '
              'size: 32}')
    df = pd.read_csv(fig / 'taf_vs_control.csv')
    assert set(df.method) == {'baseline', 'control', 'taf'} and (df.split == 'val').all()
    manifest = json.loads((runs / 'paper' / 'runs.json').read_text())
    assert {e['config']['dataset'] for e in manifest} == {'ssv1'}
    assert {e['config']['root'] for e in manifest} == {str(tmp_path / 'ssv1')}
    papermill('table3_corruptions.ipynb', tmp_path / 'b.ipynb', '-p', 'profile', 'paper',
              '-p', 'manifest', str(runs / 'paper' / 'runs.json'), '-p', 'out_dir', str(fig), '-y', 'severities: [3]')
    t3 = pd.read_csv(fig / 'table3_corruptions.csv')
    assert set(t3.method) == {'baseline', 'control', 'taf'} and t3.top1.between(0, 1).all()

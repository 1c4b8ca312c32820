"""The `paper` profile's code path on a tiny Something-Something V1 folder written by `taf.synthetic`: the real
SSV1 reader, TSM's official recipe (`tsm_ssv1`, shrunk by overrides), the `val` split, then the corruption table
and every figure and table that reads the run manifest -- so a GPU box never meets this path for the first time."""
import json

import pandas as pd

import torch

from taf.models import create_model
from taf.study import OFFICIAL_CHECKPOINTS
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
    for name in ('figure1', 'figure3', 'figure4', 'figure5', 'figure6', 'figure7', 'table5'):   # every reader
        papermill(f'{name}.ipynb', tmp_path / f'{name}.ipynb', '-p', 'profile', 'paper',
                  '-p', 'manifest', str(runs / 'paper' / 'runs.json'), '-p', 'out_dir', str(fig))
        meta = json.loads((fig / f'{name}.meta.json').read_text())
        assert meta['config']['profile'] == 'paper' and (fig / f'{name}.md').read_text().strip(), name


def test_paper_profile_starts_from_the_release(tmp_path, papermill):
    "With TSM's SSV1 8f release in data/checkpoints, the baseline is that release (checked, imported), not trained."
    from test_paper_studies import tsm_official
    cfg = replace_config(get_config('small'), num_classes=4, size=32, num_frames=8, train_per_class=4, val_per_class=2)
    write_ssv1(tmp_path / 'ssv1', cfg)
    release = OFFICIAL_CHECKPOINTS['ssv1', 'tsm', 8]['file']
    (tmp_path / 'checkpoints').mkdir()
    torch.manual_seed(0)
    torch.save(tsm_official(create_model('tsm', 4, 8, backbone='resnet18', width=8).state_dict()),
               tmp_path / 'checkpoints' / release)
    fig, runs = tmp_path / 'fig', tmp_path / 'runs'
    papermill('taf_vs_control.ipynb', tmp_path / 'a.ipynb', '-p', 'profile', 'paper', '-p', 'root', str(tmp_path / 'ssv1'),
              '-p', 'finetune_epochs', '1', '-p', 'out_dir', str(fig), '-p', 'runs_dir', str(runs), '-p', 'tolerance', '100',
              '-y', 'seeds: [0]\nmethods: [control]\noverrides: {backbone: resnet18, width: 8, batch_size: 4, workers: 0, '
              'size: 32}')
    res = json.loads((runs / 'paper' / 'seed0' / 'baseline' / 'results.json').read_text())
    assert res['history'] == [] and res['verified']['reference'] == 45.6      # imported after its check, not trained
    base = json.loads((runs / 'paper' / 'seed0' / 'baseline' / 'config.json').read_text())
    assert base['pretrained'].endswith(release) and base['epochs'] == 45
    ctl = json.loads((runs / 'paper' / 'seed0' / 'control' / 'config.json').read_text())
    assert ctl['init'].endswith('baseline/last.pt')
    assert set(pd.read_csv(fig / 'taf_vs_control.csv').method) == {'baseline', 'control'}
    assert 'the release ' + release in (tmp_path / 'a.ipynb').read_text()

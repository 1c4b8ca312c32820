"""The ablation tables (Table 2(a), 2(b), 2(c), 4, 6(a), 6(b)) in the `smoke` profile, sharing one store: the baseline, the
control and the paper-setting TAF run are trained once and reused by the later notebooks."""
import json
import pandas as pd
import pytest

LEVELS = {'table2b': 4, 'table2c': 4, 'table6a': 3, 'table6b': 3, 'table2a': 3, 'table4': 8}


def test_ablations_smoke(tmp_path, papermill):
    figs, store = tmp_path / 'figures', tmp_path / 'store.json'
    for name, n in LEVELS.items():
        papermill(f'{name}.ipynb', tmp_path / f'{name}.ipynb', '-p', 'profile', 'smoke',
                  '-p', 'out_dir', str(figs), '-p', 'runs_dir', str(tmp_path / 'runs'),
                  '-y', f'study_kw: {{workers: 1, store: "{store}"}}')
        df = pd.read_csv(figs / f'{name}.csv')
        assert len(df) == n and set(df.regime) == {'permutation'} and (df.seeds == 1).all()
        assert df.paper_top1.notna().sum() == min(n, 6)      # Table 4: no paper row for FrameCutMix, CubeCutMix
        assert df.taf.between(0, 100).all() and df.taf_vs_control.between(-100, 100).all()
        assert ((df.taf - df.control - df.taf_vs_control).abs() < 1e-9).all()      # one seed: the plain difference
        md = (figs / f'{name}.md').read_text()
        assert 'profile `smoke`' in md and md.count('\n| ') == n + 1
        assert (figs / f'{name}.png').stat().st_size > 0
        meta = json.loads((figs / f'{name}.meta.json').read_text())
        assert meta['config']['seeds'] == [0] and len(meta['config']['levels']) == n - (name == 'table2a')
    entries = json.loads(store.read_text())
    # one baseline, one control, the paper-setting TAF shared by all; 3 + 3 + 2 + 2 other levels, AdvProp + CE,
    # 7 other fine-tunings of Table 4
    assert len(entries) == 1 + 1 + 1 + 3 + 3 + 2 + 2 + 2 + 7
    df = pd.read_csv(figs / 'table2a.csv')
    assert df.level.tolist() == ['AdvProp (scratch)', 'CE-based', 'TAF'] and df.paper_top1.tolist() == [44.5, 46.1, 46.9]

"""The corruption experiment (Table 3/7 layout) end to end in the `smoke` profile: taf_vs_control.ipynb trains the
baseline, control and TAF models, then table3_corruptions.ipynb evaluates them under every corruption."""
import json
import pandas as pd


def test_table3_smoke(tmp_path, papermill):
    figs, runs = tmp_path/'figures', tmp_path/'runs'
    common = ['-p', 'profile', 'smoke', '-p', 'out_dir', str(figs)]
    papermill('taf_vs_control.ipynb', tmp_path/'a.ipynb', *common, '-p', 'runs_dir', str(runs),
              '-y', 'methods: [control, taf]')
    papermill('table3_corruptions.ipynb', tmp_path/'b.ipynb', *common, '-p', 'manifest', str(runs/'smoke'/'runs.json'),
              '-y', 'severities: [1, 3]')
    df = pd.read_csv(figs/'table3_corruptions.csv')
    from taf.corruptions import CORRUPTIONS
    for m in ('baseline', 'control', 'taf'):
        d = df[df.method == m]
        assert set(d.corruption) == {'clean', *CORRUPTIONS}
        assert len(d) == 1 + 2 * len(CORRUPTIONS) and d.top1.between(0, 1).all() and (d.top5 >= d.top1).all()
    md = (figs/'table3_corruptions.md').read_text()
    assert 'TSM (paper, SSV1)' in md and 'Closest to the paper: severity' in md
    meta = json.loads((figs/'table3_corruptions.meta.json').read_text())
    assert meta['config']['severities'] == [1, 3] and meta['closest_severity'] in (1, 3)
    assert (figs/'table3_corruptions.png').stat().st_size > 0

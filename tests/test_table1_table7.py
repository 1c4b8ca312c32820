"""Table 1 (four models x benchmarks, baseline / control / TAF) and Table 7 (TSM under natural corruptions on the
Diving48 stand-in) end to end in the `smoke` profile, each on its own store."""
import json
import pandas as pd
from taf.corruptions import CORRUPTIONS


def _params(tmp_path):
    return ['-p', 'profile', 'smoke', '-y', f'study_kw: {{workers: 1, store: "{tmp_path / "store.json"}"}}',
            '-p', 'runs_dir', str(tmp_path / 'runs'), '-p', 'out_dir', str(tmp_path / 'figures')]


def test_table1_smoke(tmp_path, papermill):
    papermill('table1.ipynb', tmp_path / 'table1.ipynb', *_params(tmp_path))
    figs = tmp_path / 'figures'
    df = pd.read_csv(figs / 'table1.csv')
    # TSM and GST (a 3D model) on `permutation`, 8 and 16 frames: the paper has every one of these rows (SSV1)
    assert [(r.arch, r.T) for r in df.itertuples()] == [('tsm', 8), ('tsm', 16), ('gst', 8), ('gst', 16)]
    assert set(df.regime) == {'permutation'} and set(df.benchmark) == {'SSV1'} and (df.seeds == 1).all()
    assert df[['baseline', 'control', 'taf']].stack().between(0, 100).all()
    assert ((df.taf - df.control - df.taf_vs_control).abs() < 1e-9).all()      # one seed: the plain difference
    assert ((df.taf - df.baseline - df.taf_vs_baseline).abs() < 1e-9).all()
    assert df.paper_baseline.tolist() == [45.6, 47.2, 46.6, 48.4] and df.paper_gain.tolist() == [1.3, 0.7, 1.0, 0.4]
    assert (df.ft_lr < df.lr).all()                                            # the baseline's last LR (cosine)
    md = (figs / 'table1.md').read_text()
    assert 'profile `smoke`' in md and md.count('\n| SSV1 | permutation |') == 4 and '| 47.9 (+0.7) |' in md
    assert (figs / 'table1.png').stat().st_size > 0
    meta = json.loads((figs / 'table1.meta.json').read_text())
    assert meta['config']['archs'] == ['tsm', 'gst'] and meta['config']['seeds'] == [0]
    assert len(meta['config']['cells']) == 4 and meta['config']['baseline_config']['arch'] == 'tsm'
    store = json.loads((tmp_path / 'store.json').read_text())
    # 4 baselines and 8 fine-tunings with the default recipe; the 2 grid recipes' baselines of every cell rule 6
    # flagged (at toy sizes val is below 2 x chance); control and TAF of the cells whose chosen recipe is not the default
    flagged, chosen = meta['config']['flagged'], meta['config']['reselected']
    assert flagged and set(chosen) <= {'/'.join(map(str, c)) for c in flagged}
    assert set(chosen.values()) <= set(meta['config']['grid'])
    assert len(store) == 4 + 8 + 2 * len(flagged) + 2 * len(chosen)
    assert md.count('(re-selected)') == len(chosen) and '## Re-selected cells' in md
    assert md.split('## Re-selected cells')[1].count('\n| permutation |') == 3 * len(flagged)  # default + 2 recipes


def test_table7_smoke(tmp_path, papermill):
    papermill('table7.ipynb', tmp_path / 'table7.ipynb', *_params(tmp_path))
    figs = tmp_path / 'figures'
    df = pd.read_csv(figs / 'table7.csv')
    assert set(df.method) == {'baseline', 'control', 'taf'} and set(df.seed) == {0}
    for m in ('baseline', 'control', 'taf'):
        d = df[df.method == m]
        assert set(d.corruption) == {'clean', *CORRUPTIONS} and sorted(set(d.severity)) == [0, 1, 3]
        assert len(d) == 1 + 2 * len(CORRUPTIONS)
    assert df.top1.between(0, 1).all() and (df.top5 >= df.top1).all()
    md = (figs / 'table7.md').read_text()
    assert 'profile `smoke`, severity 3' in md and '| TSM (paper, Diving48) |  | 78.5 / 97.3 | 24.1 / 51.6 |' in md
    assert md.count('\n| ') == (1 + 5) + (1 + len(CORRUPTIONS)) and 'Closest to the paper: severity' in md
    assert (figs / 'table7.png').stat().st_size > 0
    meta = json.loads((figs / 'table7.meta.json').read_text())
    assert meta['config']['severities'] == [1, 3] and meta['config']['regime'] == 'diving48-like'
    assert meta['config']['baseline_config']['num_frames'] == 8 and meta['config']['kind'].startswith('corruptions/')
    store = json.loads((tmp_path / 'store.json').read_text())
    assert len(store) == 3 and all(k.endswith(meta['config']['kind']) for k in store)

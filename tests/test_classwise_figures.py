"""Figure 4, Table 5 and Figure 5 end to end in the `smoke` profile: taf_vs_control.ipynb trains the baseline, control
and TAF models once, then figure4.ipynb (per-class gains), table5.ipynb (long-term classes) and figure5.ipynb (loss
curves) read its manifest and are checked on what they write."""
import json
import numpy as np
import pandas as pd
from taf.synthetic import class_names, get_config, long_term_flags

METHODS = ['baseline', 'control', 'taf']


def check_figure4(figs, K, long_term, seeds):
    df = pd.read_csv(figs/'figure4.csv')
    assert list(df.columns[:8]) == ['rank', 'class', 'name', 'long_term', 'n_clips', *METHODS]
    assert len(df) == K and sorted(df['class']) == list(range(K)) and list(df['rank']) == list(range(1, K + 1))
    assert [long_term[k] for k in df['class']] == df.long_term.tolist()           # long-term marks of the dataset
    assert df[METHODS].stack().between(0, 1).all() and (df.n_clips > 0).all()
    np.testing.assert_allclose(df.gain_vs_baseline, df.taf - df.baseline, atol=1e-12)  # one seed: mean = difference
    np.testing.assert_allclose(df.gain_vs_control, df.taf - df.control, atol=1e-12)
    assert df.gain_vs_baseline.is_monotonic_decreasing                             # sorted by gain, as in the paper
    per_seed = pd.read_csv(figs/'figure4_per_seed.csv')
    assert len(per_seed) == len(seeds) * len(METHODS) * K and per_seed.top1.between(0, 1).all()
    md = (figs/'figure4.md').read_text()
    assert '| TAF - baseline |' in md and '| TAF - control |' in md and '26 of 35' in md
    assert md.count('| yes |') == sum(long_term)
    assert (figs/'figure4.png').stat().st_size > 0
    assert json.loads((figs/'figure4.meta.json').read_text())['config']['split'] == 'test'
    return df


def check_table5(figs, f4, classes, long_term):
    df = pd.read_csv(figs/'table5.csv')
    lt = [k for k in range(len(classes)) if long_term[k]]
    assert len(df) == len(lt) and sorted(df['class']) == lt
    assert df.name.tolist() == [classes[k] for k in df['class']]
    ranks = f4.set_index('class')['rank']
    assert df['rank'].tolist() == [ranks[k] for k in df['class']] and df['rank'].is_monotonic_increasing
    assert df[METHODS].stack().between(0, 1).all() and df.split.eq('test').all()
    np.testing.assert_allclose(df.gain_vs_control, df.taf - df.control, atol=1e-12)
    md = (figs/'table5.md').read_text()
    assert '## Paper (Table 5)' in md and '| 172 | Turning the camera upwards while filming something | 0.0 |' in md
    assert 'Paper (SSV1, vs baseline): 26 of 35' in md
    assert (figs/'table5.png').stat().st_size > 0


def check_figure5(figs, B, F, seeds):
    df = pd.read_csv(figs/'figure5.csv')
    for m in METHODS:
        d = df[df.method == m]
        want = list(range(1, B + 1)) if m == 'baseline' else list(range(B + 1, B + F + 1))
        assert len(d) == len(seeds) * len(want) and sorted(set(d.epoch)) == want   # baseline, then fine-tuning
        assert (d.train_loss_clean > 0).all() and np.isfinite(d.train_loss).all()
        assert d.val_loss.notna().any() and (d[d.run_epoch == d.run_epoch.max()].val_loss > 0).all()
    assert (df[df.method == 'taf'].train_loss_adv > 0).all() and (df[df.method == 'control'].train_loss_adv == 0).all()
    md = (figs/'figure5.md').read_text()
    assert '| **TAF - control** (paired) |' in md and 'test, final model' in md
    assert (figs/'figure5.png').stat().st_size > 0


def test_classwise_figures_smoke(tmp_path, papermill):
    figs, runs = tmp_path/'figures', tmp_path/'runs'
    common = ['-p', 'profile', 'smoke', '-p', 'out_dir', str(figs)]
    papermill('taf_vs_control.ipynb', tmp_path/'a.ipynb', *common, '-p', 'runs_dir', str(runs),
              '-y', 'methods: [control, taf]')
    manifest = runs/'smoke'/'runs.json'
    entries = json.loads(manifest.read_text())
    seeds = sorted({e['seed'] for e in entries})
    cfg = {e['method']: e['config'] for e in entries if e['seed'] == seeds[0]}
    syn = {k: v for k, v in cfg['baseline']['synthetic'].items() if k != 'preset'}
    syn_cfg = get_config(cfg['baseline']['synthetic']['preset'], **syn)
    classes, long_term = class_names(syn_cfg), long_term_flags(syn_cfg)
    assert 0 < sum(long_term) < len(classes)                 # the smoke benchmark has both kinds of class
    for nb in ('figure4', 'table5', 'figure5'):
        papermill(f'{nb}.ipynb', tmp_path/f'{nb}.ipynb', *common, '-p', 'manifest', str(manifest))
    f4 = check_figure4(figs, len(classes), long_term, seeds)
    check_table5(figs, f4, classes, long_term)
    check_figure5(figs, cfg['baseline']['epochs'], cfg['taf']['epochs'], seeds)

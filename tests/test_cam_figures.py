"""The CAM figures (Figures 1, 3, 6, 7) end to end in the `smoke` profile: taf_vs_control.ipynb trains a baseline,
a control and TAF once, then every figure notebook draws from its manifest."""
import json
import numpy as np
import pandas as pd

T = 6                                       # frames per clip of taf_vs_control's smoke benchmark
MASSES = [f'mass_{t + 1}' for t in range(T)]


def outputs(figs, name):
    "The four artefacts of a figure notebook, each checked to exist and be non-empty; (csv, md, meta)."
    for ext in ('png', 'csv', 'md', 'meta.json'):
        assert (figs/f'{name}.{ext}').stat().st_size > 0, f'{name}.{ext}'
    meta = json.loads((figs/f'{name}.meta.json').read_text())
    assert meta['notebook'] == f'nbs/experiments/{name}.ipynb' and meta['config']['split'] == 'test'
    return pd.read_csv(figs/f'{name}.csv'), (figs/f'{name}.md').read_text(), meta


def check_clips(df):
    "Per-clip rows: frame masses are a distribution (or all 0 without positive CAM), entropy in [0, 1]."
    m = df[MASSES].to_numpy()
    assert ((m >= 0) & (m <= 1 + 1e-6)).all()
    sums = m.sum(1)
    assert np.allclose(sums[df.entropy.notna()], 1, atol=1e-4) and np.allclose(sums[df.entropy.isna()], 0)
    assert df.entropy.dropna().between(0, 1 + 1e-6).all()
    assert (df.correct == (df.pred == df.label)).all()


def test_cam_figures_smoke(tmp_path, papermill):
    figs, runs = tmp_path/'figures', tmp_path/'runs'
    smoke = ['-p', 'profile', 'smoke']
    papermill('taf_vs_control.ipynb', tmp_path/'tvc.ipynb', *smoke, '-p', 'out_dir', str(figs),
              '-p', 'runs_dir', str(runs), '-y', 'methods: [control, taf]')
    manifest = runs/'smoke'/'runs.json'
    def run(name, manifest=manifest, out=figs):
        papermill(f'{name}.ipynb', tmp_path/f'{name}_{out.name}.ipynb', *smoke, '-p', 'out_dir', str(out),
                  '-p', 'manifest', str(manifest))

    # Figure 1: one clip, a row per model, the clip the metadata names
    run('figure1')
    f1, md, meta = outputs(figs, 'figure1')
    assert sorted(f1.model) == ['baseline', 'taf'] and f1['clip'].nunique() == 1
    assert int(f1['clip'][0]) == meta['config']['clip']
    check_clips(f1)
    assert 'Figure 1' in md and '| baseline |' in md and '| TAF |' in md and 'Over the split' in md

    # Figure 6: two groups of two rows (baseline, TAF) on distinct clips
    run('figure6')
    f6, md, meta = outputs(figs, 'figure6')
    assert list(f6.group) == ['a', 'a', 'b', 'b'] and list(f6.model) == ['baseline', 'taf'] * 2
    assert f6['clip'].nunique() == 2 and sorted(set(f6['clip'])) == sorted(meta['config']['clips'])
    check_clips(f6)

    # Figure 7: only rectified clips (wrong for the baseline, right for TAF), as many as the metadata counts
    run('figure7')
    f7, md, meta = outputs(figs, 'figure7')
    check_clips(f7)
    base, taf = f7[f7.model == 'baseline'].set_index('clip'), f7[f7.model == 'taf'].set_index('clip')
    assert (~base.correct).all() and taf.correct.all()
    assert len(base) == min(2, meta['rectified']) and 'Rectified clips' in md

    # ... and says so when there is none: TAF replaced by the baseline itself rectifies nothing
    same = json.loads(manifest.read_text())
    ckpt = {e['method']: e['checkpoint'] for e in same}
    for e in same:
        if e['method'] == 'taf': e['checkpoint'] = ckpt['baseline']
    (tmp_path/'same.json').write_text(json.dumps(same))
    run('figure7', tmp_path/'same.json', tmp_path/'none')
    f7n, md, meta = outputs(tmp_path/'none', 'figure7')
    assert len(f7n) == 0 and meta['rectified'] == 0 and meta['broken'] == 0 and 'No rectified clip' in md

    # Figure 3: every test clip in three versions; changes are distances in [0, 1]; two clips shown
    run('figure3')
    f3, md, meta = outputs(figs, 'figure3')
    n = f3['clip'].nunique()
    assert len(f3) == 3 * n and all(sorted(c) == ['ce', 'clean', 'ta'] for _, c in f3.groupby('clip').condition)
    check_clips(f3)
    assert f3.tv.dropna().between(0, 1 + 1e-6).all() and (f3[f3.condition == 'clean'].tv.fillna(0) == 0).all()
    assert f3.attacked.all()                                     # label rule 'taf': every clip is attacked
    assert sorted(f3[f3.group.notna()]['clip'].unique()) == sorted(meta['config']['clips_shown'])
    assert len(meta['config']['clips_shown']) == 2 and meta['config']['attack']['steps'] == 1
    assert set(meta['summary']) == {'clean', 'ce', 'ta'} and 0 <= meta['summary']['ta']['top1'] <= 1
    assert '| CE attack |' in md and '| TA attack |' in md and 'TV to clean' in md

"""`taf bench`: the smoke profile runs end to end from the command line and writes bench.md/.csv/.meta.json with
positive ratios (no timing assertions: the machine is shared)."""
import json, os, subprocess, sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def test_bench_smoke_writes_report(tmp_path):
    (tmp_path / 'bench.md').write_text('# old report\n\n## History\n\n- measured by hand\n')   # kept on rewrite
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get('PYTHONPATH', ''), OMP_NUM_THREADS='1')
    r = subprocess.run([sys.executable, '-m', 'taf.cli', 'bench', '--profile', 'smoke', '--out', tmp_path,
                        '--device', 'cpu'], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert 'results ->' in r.stdout
    md, csv, meta = (tmp_path / f for f in ('bench.md', 'bench.csv', 'bench.meta.json'))
    assert md.is_file() and csv.is_file() and meta.is_file()
    text = md.read_text()
    for s in ('## Ratio table', 'x of floor', 'cores', 'torch', '## Whole-run cost', '## Input pipeline', 'workers=0'):
        assert s in text, s
    assert text.endswith('\n## History\n\n- measured by hand\n') and '# old report' not in text
    df = pd.read_csv(csv)
    steps = df[df.section == 'step'].set_index('variant')
    assert set(steps.index) == {'baseline', 'taf_k1', 'taf_k3', 'ce_k1', 'eval_baseline', 'eval_stripped'}
    assert (steps.ratio > 0).all() and (steps.median_ms > 0).all() and (steps.mem_ratio > 0).all()
    assert steps.loc['baseline', 'ratio'] == 1.0
    assert (steps.loc[['taf_k1', 'ce_k1'], 'floor_ratio'] > 0).all()
    parts = df[df.section == 'part']
    assert set(parts.variant) == {'fwd', 'cam_grad', 'ce_grad', 'adv', 'clean_bwd', 'clean_bwd_dx', 'sgd'}
    assert (parts.median_ms > 0).all()
    # the floor of each K=1 step is the sum of the medians of its parts (the public steps, backward, SGD)
    med = parts.set_index('variant').median_ms
    floor = steps.loc['taf_k1', 'median_ms'] / steps.loc['taf_k1', 'floor_ratio']
    assert abs(floor - med[['fwd', 'cam_grad', 'adv', 'clean_bwd', 'sgd']].sum()) < 1e-6 * floor
    assert (df[df.section == 'pipeline'].clips_per_s > 0).all()
    m = json.loads(meta.read_text())
    assert m['profile'] == 'smoke' and m['config']['archs'] == ['tsm'] and m['device'] == 'cpu'


def test_bench_reads_the_profile_registry():
    "`taf bench --profile NAME` is `taf.profiles`' bench settings over `BenchConfig`'s defaults; no mock in taf/."
    from taf.bench import BenchConfig, bench_config
    from taf.profiles import PROFILES
    for name, p in PROFILES.items():
        if p.bench is None: continue
        cfg = bench_config(name)
        assert all(getattr(cfg, k) == v for k, v in p.bench.items())
    assert bench_config('quick') == BenchConfig()
    assert not [f for f in (ROOT / 'taf').glob('*.py') if 'unittest' in f.read_text()]


def test_bench_rows_for_torchvision_models_at_tiny_size():
    "`bench` times R(2+1)D-18 and Swin3D-T like the bundled models: every step variant, the floor, memory, report rows."
    from dataclasses import replace
    from taf.bench import bench, bench_config, report_markdown
    cfg = replace(bench_config('smoke'), archs=(), tv_archs=('r2plus1d_18', 'swin3d_t'), tv_frames=(16,), tv_size=16,
                  reps=1, focus_reps=1, pipeline_formats=(), profile_top=2)
    df = bench(cfg, 'cpu')
    steps = df[df.section == 'step']
    assert set(zip(steps.arch, steps.backbone, steps['T'])) == {('r2plus1d_18', 'torchvision', 16),
                                                                ('swin3d_t', 'torchvision', 16)}
    for arch in ('r2plus1d_18', 'swin3d_t'):
        s = steps[steps.arch == arch].set_index('variant')
        assert set(s.index) == {'baseline', 'taf_k1', 'taf_k3', 'ce_k1', 'eval_baseline', 'eval_stripped'}
        assert s.loc['baseline', 'ratio'] == 1.0 and (s.median_ms > 0).all() and (s.mem_ratio > 0).all()
        assert (s.loc[['taf_k1', 'ce_k1'], 'floor_ratio'] > 0).all()
        parts = df[(df.section == 'part') & (df.arch == arch)].set_index('variant').median_ms
        assert abs(s.loc['taf_k1', 'floor_ms'] - parts[['fwd', 'cam_grad', 'adv', 'clean_bwd', 'sgd']].sum()) < 1e-6
    md = report_markdown(df)
    assert '| R2PLUS1D_18 | torchvision | 16 | taf_k1 |' in md and '| SWIN3D_T | torchvision | 16 | taf_k1 |' in md
    assert "torchvision's r2plus1d_18, swin3d_t at full width, 16 px, T = 16" in md
    assert df.attrs['profile']['model'] == 'r2plus1d_18-torchvision T=16'

"""`taf bench`: the smoke profile runs end to end from the command line and writes bench.md/.csv/.meta.json with
positive ratios (no timing assertions: the machine is shared)."""
import json, os, subprocess, sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def test_bench_smoke_writes_report(tmp_path):
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
    df = pd.read_csv(csv)
    steps = df[df.section == 'step'].set_index('variant')
    assert {'baseline', 'taf_k1', 'taf_k3', 'ce_k1', 'eval_baseline', 'eval_stripped'} <= set(steps.index)
    before = ['taf_k1_xgrad', 'taf_k1_nocache']                 # timed only: no memory profile
    assert (steps.ratio > 0).all() and (steps.median_ms > 0).all()
    assert (steps.mem_ratio.drop(before) > 0).all() and steps.mem_ratio[before].isna().all()
    assert steps.loc['baseline', 'ratio'] == 1.0
    assert (steps.loc[['taf_k1', 'ce_k1'], 'floor_ratio'] > 0).all()
    assert (df[df.section == 'part'].median_ms > 0).all()
    assert (df[df.section == 'pipeline'].clips_per_s > 0).all()
    m = json.loads(meta.read_text())
    assert m['profile'] == 'smoke' and m['config']['archs'] == ['tsm'] and m['device'] == 'cpu'

"""`make reproduce`'s first notebook, run by papermill in the `smoke` profile: the synthetic benchmark is written in
the three real formats, read back by the real readers, and the summary files are produced from what was measured."""
import json, subprocess, sys
from pathlib import Path
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent


def test_benchmark_summary_smoke(tmp_path):
    out = tmp_path/'figures'
    cmd = [str(Path(sys.executable).parent/'papermill'), '-k', 'python3', '--cwd', str(ROOT/'nbs/experiments'),
           str(ROOT/'nbs/experiments/benchmark_summary.ipynb'), str(tmp_path/'run.ipynb'),
           '-p', 'profile', 'smoke', '-p', 'out_dir', str(out), '-p', 'data_dir', str(tmp_path/'data')]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    table = pd.read_csv(out/'benchmark_summary.csv')
    assert list(table['format']) == ['ssv1', 'ssv2', 'diving48']
    assert (table['labels_match'] == 1.0).all()                # every read-back label is the generated one
    assert (table['mean_abs_err_0_255'] < 12).all()            # frames decode close to the generated ones
    assert (table['read_clips'] == 16).all() and (table['mbytes'] > 0).all()
    md = (out/'benchmark_summary.md').read_text()
    assert 'long-term' in md and 'Pushing [something] from left to right' in md
    meta = json.loads((out/'benchmark_summary.meta.json').read_text())
    assert meta['profile'] == 'smoke' and meta['config']['num_classes'] == 4 and 'git' in meta
    assert (tmp_path/'data'/'ssv2'/'labels'/'labels.json').exists()

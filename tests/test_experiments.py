"""The experiment notebook `nbs/experiments/taf_vs_control.ipynb` runs end to end with papermill in the `smoke`
profile and writes its table (csv + md with the paper's numbers and the profile), its figure and its metadata."""
import csv, json, os, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NB = ROOT / 'nbs' / 'experiments' / 'taf_vs_control.ipynb'


def test_taf_vs_control_smoke(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get('PYTHONPATH', ''))
    r = subprocess.run([sys.executable, '-m', 'papermill', '-k', 'python3', '--cwd', str(NB.parent), str(NB),
                        str(tmp_path / 'executed.ipynb'), '-p', 'profile', 'smoke', '-p', 'out_dir', str(tmp_path / 'fig'),
                        '-p', 'runs_dir', str(tmp_path / 'runs'), '-p', 'workers', '2',       # run_many's processes
                        '-y', 'methods: [control, taf, ce]', '--no-progress-bar'],
                       env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    fig = tmp_path / 'fig'
    rows = list(csv.DictReader(open(fig / 'taf_vs_control.csv')))
    assert sorted(r['method'] for r in rows) == ['baseline', 'ce', 'control', 'taf']
    assert all(r['profile'] == 'smoke' and 0 <= float(r['top1']) <= 1 for r in rows)
    assert all(r['split'] == 'test' and float(r['lr']) > 0 for r in rows)          # reported on the test split
    lr = {r['method']: float(r['lr']) for r in rows}
    assert lr['taf'] == lr['control'] < lr['baseline']                           # fine-tunes: the baseline's last LR
    md = (fig / 'taf_vs_control.md').read_text()
    assert 'profile `smoke`' in md and '45.6' in md and '46.9' in md and 'control' in md
    assert (fig / 'taf_vs_control.png').stat().st_size > 1000
    meta = json.loads((fig / 'taf_vs_control.meta.json').read_text())
    assert meta['config']['profile'] == 'smoke' and 'git' in meta and 'versions' in meta and meta['wall_time_s'] > 0
    assert (tmp_path / 'runs' / 'smoke' / 'seed0' / 'taf' / 'log.csv').exists()

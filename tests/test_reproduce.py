"""`taf reproduce` end to end in the `smoke` profile: dependency order (table3_corruptions pulls in taf_vs_control and
reads its manifest), one folder per profile, executed notebooks kept, REPORT.md, and bad names refused up front;
every experiment notebook in the smoke profile (two at a time, sharing runs and a store), with the claims section of
REPORT.md."""
import json, re, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TAF = str(Path(sys.executable).parent / 'taf')


def test_reproduce_smoke_only_table3(tmp_path):
    (tmp_path / 'nbs').symlink_to(ROOT / 'nbs')                     # the repository's notebooks, results in tmp
    r = subprocess.run([TAF, 'reproduce', '--profile', 'smoke', '--only', 'table3_corruptions', '--root', str(tmp_path)],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert '1/2 taf_vs_control' in r.stdout and '2/2 table3_corruptions' in r.stdout
    smoke = tmp_path / 'figures' / 'smoke'
    for f in ('taf_vs_control.csv', 'table3_corruptions.csv', 'table3_corruptions.md', 'REPORT.md',
              'notebooks/taf_vs_control.ipynb', 'notebooks/table3_corruptions.ipynb'):
        assert (smoke / f).exists(), f
    report = (smoke / 'REPORT.md').read_text()
    assert 'Table 3' in report and 'TAF vs control' in report
    assert not (tmp_path / 'figures' / 'quick').exists()                # a smoke run writes only its own folder


def test_reproduce_refuses_unknown_names(tmp_path):
    r = subprocess.run([TAF, 'reproduce', '--profile', 'smoke', '--only', 'table9'], capture_output=True, text=True)
    assert r.returncode == 1 and "unknown experiment(s) ['table9']" in r.stderr


def test_reproduce_smoke_all(tmp_path, monkeypatch):
    "Every experiment of the smoke profile (figures, runs in tmp) writes md/csv/meta.json; REPORT.md lists the claims."
    from taf.profiles import get_profile
    from taf.reproduce import EXPERIMENTS, reproduce, read_claims
    from taf.stats import VERDICTS
    monkeypatch.setenv('OMP_NUM_THREADS', '1')                           # the notebooks' kernels inherit it
    figures, runs = tmp_path / 'figures', tmp_path / 'runs'
    timings = reproduce('smoke', root=ROOT, figures_dir=figures, runs_dir=runs)   # 2 notebooks at a time
    names = [e.name for e in EXPERIMENTS if get_profile('smoke').runs(e.name)]
    assert list(timings) == names and all(t > 0 for t in timings.values())
    smoke = figures / 'smoke'
    for n in names:
        for ext in ('md', 'csv', 'meta.json'):
            assert (smoke / f'{n}.{ext}').stat().st_size > 0, f'{n}.{ext}'
        assert (smoke / 'notebooks' / f'{n}.ipynb').exists()
        assert json.loads((smoke / f'{n}.meta.json').read_text())['config'] is not None, n
    assert (runs / 'taf_vs_control' / 'smoke' / 'runs.json').exists() and (runs / 'study' / 'smoke').is_dir()
    claims = read_claims(smoke)
    with_claims = {'table1', 'table2a', 'table2b', 'table2c', 'table3_corruptions', 'table4', 'table5', 'table6a',
                   'table6b', 'table7', 'underfit', 'figure3', 'figure4', 'figure5'}
    assert {c['artefact'] for c in claims} == with_claims
    for c in claims:
        assert {'artefact', 'claim', 'paper', 'measured', 'verdict', 'agrees', 'basis', 'diffs', 'n'} <= set(c)
        assert c['claim'] and c['paper'] and c['basis'] and c['verdict'] in (*VERDICTS, None)
        assert c['agrees'] == (None if c['verdict'] is None else c['verdict'] == 'reproduces'), c
        assert len(c['diffs']) == c['n']
    report = (smoke / 'REPORT.md').read_text()
    section = report.split('## What reproduces and what does not')[1].split('\n## ')[0]
    m = re.search(r'(\d+) claims of the paper in profile `smoke`: \*\*(\d+) reproduce, (\d+) against, (\d+) smaller '
                  r'than claimed, (\d+) inconclusive\*\*', section)
    assert m and int(m[1]) == len(claims), section[:500]
    assert [int(m[i]) for i in (2, 3, 4, 5)] == [sum(c['verdict'] == v for c in claims) for v in VERDICTS]
    rows = section.split('| artefact | claim |')[1].split('\n')[2:]
    assert sum(r.startswith('| `') for r in rows) == len(claims)        # one row per claim

"""`taf reproduce` end to end in the `smoke` profile: dependency order (table3_corruptions pulls in taf_vs_control and
reads its manifest), one folder per profile, executed notebooks kept, REPORT.md, and bad names refused up front."""
import subprocess, sys
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

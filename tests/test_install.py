"""`pip install .` as a new user does it: a fresh venv (no system site-packages), the repository's files only (what git
tracks or would track: no build artefacts), the core requirements of settings.ini only. Then `taf --help` and the help
of train, finetune, eval and bench work, the core modules import, and `taf reproduce` says in one line which extra it
needs. Packages come from where `make venv` gets them (pip's configuration on this machine and CI's); torch and
torchvision are held to requirements.txt's pins, which install from the local disk. About a minute on 2 cores."""
import os, shutil, subprocess, sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORE = ('taf.train', 'taf.methods', 'taf.cam', 'taf.attack', 'taf.models', 'taf.evaluate', 'taf.bench', 'taf.config',
        'taf.checkpoint', 'taf.cli')
NOT_CORE = ('papermill', 'matplotlib', 'seaborn', 'scipy', 'jupyterlab')   # the notebooks extra
NEEDS_NOTEBOOKS = "taf reproduce: needs the notebooks extra: pip install 'taf[notebooks]'"


def repo_files()->list:
    "The repository's files as a clean clone has them: tracked, or untracked but not ignored."
    out = subprocess.run(['git', 'ls-files', '-z', '--cached', '--others', '--exclude-standard'], cwd=ROOT,
                         capture_output=True, check=True).stdout.decode()
    return [f for f in out.split('\0') if f and (ROOT / f).is_file()]


def pins()->str:
    "requirements.txt's torch and torchvision lines: the releases on this machine's disk (others download GBs)."
    lines = (ROOT / 'requirements.txt').read_text().splitlines()
    return ''.join(l.strip() + '\n' for l in lines if l.split('==')[0].strip() in ('torch', 'torchvision'))


@pytest.fixture(scope='module')
def venv(tmp_path_factory):
    "A fresh venv with `pip install .` of a copy of the repository; removed afterwards (it holds GBs of torch)."
    d = tmp_path_factory.mktemp('install')
    src = d / 'src'
    for f in repo_files():
        (src / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / f, src / f)
    (d / 'constraints.txt').write_text(pins())
    python = shutil.which('python3.11') or sys.executable
    env = {k: v for k, v in os.environ.items() if k not in ('PYTHONPATH', 'VIRTUAL_ENV', 'PYTHONHOME')}
    try:
        subprocess.run([python, '-m', 'venv', d / 'venv'], check=True, env=env, timeout=300)
        r = subprocess.run([d / 'venv' / 'bin' / 'pip', 'install', '-q', '--no-cache-dir', '-c', d / 'constraints.txt',
                            str(src)], cwd=d, env=env, capture_output=True, text=True, timeout=1500)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        yield d / 'venv' / 'bin', d, env
    finally: shutil.rmtree(d, ignore_errors=True)


def run(venv, *cmd, timeout=300):
    "Run `cmd` (a program of the venv, then its arguments) outside the repository, one thread."
    bin, d, env = venv
    return subprocess.run([str(bin / cmd[0]), *map(str, cmd[1:])], cwd=d, env={**env, 'OMP_NUM_THREADS': '1'},
                          capture_output=True, text=True, timeout=timeout)


def test_core_only(venv):
    "The venv holds the core requirements and not the notebooks extra (else this test would prove nothing)."
    r = run(venv, 'python', '-c', 'import importlib.util as u, sys; '
            f'print(",".join(m for m in {NOT_CORE!r} if u.find_spec(m)))')
    assert r.returncode == 0 and r.stdout.strip() == '', r.stdout + r.stderr


def test_core_modules_import_from_the_install(venv):
    r = run(venv, 'python', '-c', f'import {", ".join(CORE)}; import taf; print(taf.__file__)')
    assert r.returncode == 0, r.stderr[-3000:]
    assert '/site-packages/taf/' in r.stdout and str(ROOT) not in r.stdout, r.stdout   # the installed copy


@pytest.mark.parametrize('command', [[], ['train'], ['finetune'], ['eval'], ['bench']])
def test_help(venv, command):
    r = run(venv, 'taf', *command, '--help')
    assert r.returncode == 0 and 'Traceback' not in r.stderr, r.stderr[-3000:]
    assert r.stdout.startswith(f"usage: taf {' '.join(command)}".rstrip()), r.stdout[:200]


def test_reproduce_names_the_extra(venv):
    r = run(venv, 'taf', 'reproduce', '--profile', 'smoke')
    assert r.returncode == 1 and r.stderr == NEEDS_NOTEBOOKS + '\n', r.stderr[-3000:]

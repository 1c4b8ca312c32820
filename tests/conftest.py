"""Shared pytest fixtures."""
import subprocess, sys
from pathlib import Path

import pytest
import torch


@pytest.fixture(scope='module')
def one_thread():
    "One intra-op thread for a test module: tiny models run ~10x faster than with two threads on a busy 2-core machine."
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


EXPERIMENTS = Path(__file__).resolve().parents[1] / 'nbs' / 'experiments'


@pytest.fixture
def papermill():
    "Run an experiment notebook with papermill (the venv's kernel, working folder nbs/experiments); fail with its output."
    def run(nb, out, *params):
        cmd = [str(Path(sys.executable).parent / 'papermill'), '-k', 'python3', '--cwd', str(EXPERIMENTS),
               str(EXPERIMENTS / nb), str(out), '--no-progress-bar', *params]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        assert 'Unable to parse' not in r.stderr, r.stderr[-2000:]      # every parameter line is understood
        assert 'unknown parameter' not in r.stderr, r.stderr[-2000:]    # every parameter passed is declared
        return r
    return run

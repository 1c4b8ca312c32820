"""Kill-and-resume: a training process killed with SIGKILL in the middle of an epoch and resumed with `--resume`
ends with the same weights as an uninterrupted run (CPU, same seed)."""
import json, os, signal, subprocess, sys, time
from pathlib import Path

import pytest
import torch

from taf.config import get_recipe
from taf.train import train

ROOT = Path(__file__).resolve().parents[1]
SMALL = {"preset": "small", "num_classes": 4, "size": 16, "num_frames": 6, "train_per_class": 6, "val_per_class": 1}
CONFIG = dict(dataset='synthetic', synthetic=SMALL, num_frames=6, backbone='resnet18', width=8, epochs=2, batch_size=4,
              lr=0.05, lr_steps=[1], dropout=0.5, workers=0, progress=False, ckpt_every=1)   # 6 steps per epoch


def env():
    return dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get('PYTHONPATH', ''), OMP_NUM_THREADS='1',
                PYTHONUNBUFFERED='1')


def cmd(cfg, out, *extra):
    return [sys.executable, '-m', 'taf.cli', 'train', '--recipe', 'synthetic', '--config', str(cfg), '--out_dir', str(out), *extra]


def test_sigkill_mid_epoch_then_resume_equals_uninterrupted(tmp_path):
    cfg = tmp_path / 'run.json'
    cfg.write_text(json.dumps(CONFIG))
    killed = tmp_path / 'killed'
    p = subprocess.Popen(cmd(cfg, killed), cwd=ROOT, env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines, t0 = [], time.time()
    try:
        for line in p.stdout:                                   # wait for the 2nd mid-epoch checkpoint of epoch 1
            lines.append(line)
            if 'checkpoint' in line and '(epoch 1, step 2)' in line:
                os.kill(p.pid, signal.SIGKILL)
                break
            assert time.time() - t0 < 120, ''.join(lines)
    finally:
        p.wait(timeout=60)
    assert p.returncode == -signal.SIGKILL, ''.join(lines)
    ck = torch.load(killed / 'last.pt', weights_only=True)
    assert ck['global_step'] < 12 and ck['step_in_epoch'] > 0, (ck['epoch'], ck['step_in_epoch'])   # killed mid-epoch
    assert not (killed / 'results.json').exists()

    r = subprocess.run(cmd(cfg, killed, '--resume'), cwd=ROOT, env=env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert 'resumed from' in r.stdout

    straight = tmp_path / 'straight'                                 # the uninterrupted run, in this process
    threads = torch.get_num_threads()
    torch.set_num_threads(1)                                         # as the subprocesses (OMP_NUM_THREADS=1)
    try: train(get_recipe('synthetic', **{**CONFIG, 'out_dir': str(straight)}))
    finally: torch.set_num_threads(threads)

    a = torch.load(straight / 'last.pt', weights_only=True)
    b = torch.load(killed / 'last.pt', weights_only=True)
    assert (a['epoch'], b['epoch']) == (2, 2)
    for k, v in a['model'].items():
        torch.testing.assert_close(b['model'][k], v, rtol=0, atol=1e-6, msg=f'weights differ at {k}')
    for k in ('train_loss', 'train_acc', 'val_loss', 'val_top1'):
        assert [h[k] for h in a['history']] == pytest.approx([h[k] for h in b['history']], abs=1e-6), k
    assert len((killed / 'log.csv').read_text().splitlines()) == 3       # header + 2 epochs, no duplicated rows

"""DDP: 2 CPU processes (torchrun, gloo) give the same weights and losses as 1 process with the same global batch
(accumulating the two per-process micro-batches). Checked for TAF fine-tuning: dual BN, the attack reusing the clean
forward through the DDP wrapper, random target labels and dropout."""
import json, os, shutil, subprocess, sys
from pathlib import Path

import pytest
import torch

from taf.synthetic import SyntheticVideos
from taf.cli import main
from taf.config import TrainConfig
from taf.train import train

ROOT = Path(__file__).resolve().parents[1]
SMALL = {"preset": "small", "num_classes": 4, "size": 16, "num_frames": 6, "train_per_class": 4, "val_per_class": 1}
BASE = dict(dataset='synthetic', synthetic=SMALL, num_frames=6, backbone='resnet18', width=8, epochs=1, batch_size=8,
            lr=0.05, dropout=0.5, workers=0, progress=False)
TORCHRUN = shutil.which('torchrun', path=str(Path(sys.executable).parent)) or shutil.which('torchrun')


def env():
    return dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get('PYTHONPATH', ''), OMP_NUM_THREADS='1')


@pytest.mark.skipif(TORCHRUN is None, reason='torchrun not found')
def test_two_gloo_processes_equal_one_process(tmp_path):
    ds = lambda s: SyntheticVideos(s, **SMALL)
    base = train(TrainConfig(**BASE, out_dir=str(tmp_path / 'base')), train_ds=ds('train'), val_ds=ds('val'))
    cfg = tmp_path / 'taf.json'
    cfg.write_text(json.dumps({'epochs': 2, 'batch_size': 8, 'progress': False, 'workers': 0}))
    common = ['finetune', '--init', base['checkpoint'], '--method', 'taf', '--config', str(cfg)]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)                                         # as the torchrun processes (OMP_NUM_THREADS=1)
    try: assert main([*common, '--accum_steps', '2', '--out_dir', str(tmp_path / 'one')]) == 0   # 1 process, 2 micro-batches
    finally: torch.set_num_threads(threads)
    two = subprocess.run([TORCHRUN, '--standalone', '--nproc-per-node', '2', '-m', 'taf.cli', *common,
                          '--out_dir', str(tmp_path / 'two')], cwd=ROOT, env=env(), capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stdout + two.stderr
    assert two.stdout.count('epoch 2/2') == 1                        # only rank 0 prints (and writes)
    a = torch.load(tmp_path / 'one' / 'last.pt', weights_only=True)
    b = torch.load(tmp_path / 'two' / 'last.pt', weights_only=True)
    assert a['meta']['dual'] and b['meta']['dual']
    params = [k for k in a['model'] if not k.endswith(('running_mean', 'running_var', 'num_batches_tracked'))]
    for k in params:                                                 # BN running stats: per-process in DDP
        torch.testing.assert_close(b['model'][k], a['model'][k], rtol=1e-4, atol=1e-5, msg=f'{k} differs')
    for k in ('train_loss', 'train_loss_clean', 'train_loss_adv', 'train_acc', 'attacked_frac'):
        assert [h[k] for h in b['history']] == pytest.approx([h[k] for h in a['history']], rel=1e-4, abs=1e-6), k
    assert sorted(p.name for p in (tmp_path / 'two').iterdir() if p.suffix in ('.pt', '.csv')) == ['last.pt', 'log.csv']

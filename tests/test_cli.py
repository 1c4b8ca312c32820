"""The `taf` command line: help lists every option with its default; train -> finetune -> eval end to end;
config file + overrides; bad values fail before any work with the field's name."""
import dataclasses, json, os, shutil, subprocess, sys
from pathlib import Path

import pytest

from taf.cli import main, build_parser
from taf.config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
SMALL = {"preset": "small", "num_classes": 4, "size": 16, "num_frames": 6, "train_per_class": 2, "val_per_class": 1}
CONFIG = dict(dataset='synthetic', synthetic=SMALL, num_frames=6, backbone='resnet18', width=8, epochs=1, batch_size=4,
              workers=0, progress=False)


def env():
    return dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get('PYTHONPATH', ''), OMP_NUM_THREADS='1')


def taf(*args, timeout=300):
    return subprocess.run([sys.executable, '-m', 'taf.cli', *map(str, args)], cwd=ROOT, env=env(), capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.parametrize('command', ['train', 'finetune'])
def test_help_shows_every_option_with_its_default(command, capsys):
    with pytest.raises(SystemExit): build_parser().parse_args([command, '--help'])
    h = ' '.join(capsys.readouterr().out.split())
    skip = {'init', 'method'} if command == 'finetune' else set()
    for f in dataclasses.fields(TrainConfig):
        if f.name in skip: continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        assert f'--{f.name}' in h and f'(default: {default!r})' in h, f.name
    assert '--resume' in h and '--config' in h


def test_eval_help(capsys):
    with pytest.raises(SystemExit): main(['eval', '--help'])
    h = capsys.readouterr().out
    assert '--corruption' in h and '--severity' in h and '(default: 3)' in h and '--checkpoint' in h


def test_train_finetune_eval_end_to_end(tmp_path, capsys):
    cfg = tmp_path / 'run.json'
    cfg.write_text(json.dumps({**CONFIG, 'epochs': 5}))
    r = taf('train', '--recipe', 'synthetic', '--config', cfg, '--epochs', 1, '--out_dir', tmp_path / 'base')
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"results -> {tmp_path / 'base'}" in r.stdout                 # says where results go
    base = tmp_path / 'base' / 'last.pt'
    assert base.exists() and (tmp_path / 'base' / 'log.csv').exists() and (tmp_path / 'base' / 'run.json').exists()
    assert json.loads((tmp_path / 'base' / 'config.json').read_text())['epochs'] == 1   # CLI beats the config file

    assert main(['finetune', '--init', str(base), '--method', 'taf', '--epochs', '1', '--eps', '6/255',
                 '--out_dir', str(tmp_path / 'taf')]) == 0
    c = json.loads((tmp_path / 'taf' / 'config.json').read_text())
    assert (c['method'], c['lr_steps'], c['width'], c['alpha']) == ('taf', [10], 8, 0.7)
    assert c['eps'] == pytest.approx(6 / 255)
    assert 'results ->' in capsys.readouterr().out

    ck = tmp_path / 'taf' / 'last.pt'
    assert main(['eval', '--checkpoint', str(ck), '--corruption', 'gaussian_noise', '--attention']) == 0
    res = json.loads((tmp_path / 'taf' / 'eval_gaussian_noise.json').read_text())
    assert res['corruption'] == 'gaussian_noise' and res['severity'] == 3 and res['n'] == 4
    assert 0 <= res['top1'] <= 1 and 0 <= res['attention_top2'] <= 1
    assert main(['eval', '--checkpoint', str(ck), '--corruption', 'all', '--out', str(tmp_path / 'table.csv')]) == 0
    rows = (tmp_path / 'table.csv').read_text().splitlines()
    assert rows[0].startswith('corruption,severity,top1,top5') and rows[1].startswith('clean,0,') and len(rows) == 10


@pytest.mark.parametrize('args, field', [(['--arch', 'i3d'], 'arch'), (['--eps', '-1'], 'eps'), (['--alpha', '2'], 'alpha'),
                                         (['--n_nonkey', '9'], 'n_nonkey'), (['--dataset', 'ssv1', '--root', '/nope'], 'root')])
def test_bad_values_fail_before_work(tmp_path, capsys, args, field):
    out = tmp_path / 'never'
    assert main(['train', '--recipe', 'synthetic', *args, '--out_dir', str(out)]) == 2
    assert f'TrainConfig.{field}=' in capsys.readouterr().err
    assert not out.exists()


def test_unknown_option_and_missing_config(tmp_path, capsys):
    with pytest.raises(SystemExit): main(['train', '--learning_rate', '0.1'])
    assert main(['train', '--config', str(tmp_path / 'missing.json')]) == 2
    assert 'missing.json' in capsys.readouterr().err


@pytest.mark.skipif(shutil.which('taf') is None, reason='console script not installed (pip install -e .)')
def test_console_script():
    r = subprocess.run(['taf', '--help'], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and 'finetune' in r.stdout

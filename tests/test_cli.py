"""The `taf` command line: help lists every option with its default; train -> finetune -> eval end to end;
config file + overrides; bad values fail before any work with the field's name; every error a user can cause (a missing
file, a file that is not a run checkpoint, a bad value, for each subcommand) is one line on stderr naming the culprit,
without a traceback or torch's advice to load a file unsafely."""
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


TAF = Path(sys.executable).parent / 'taf'


@pytest.mark.skipif(not TAF.exists(), reason='console script not installed (pip install -e .)')
def test_console_script():
    r = subprocess.run([TAF, '--help'], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and 'finetune' in r.stdout


# ---- one-line errors: every error a user can cause is one line on stderr naming the culprit, exit status != 0 ----

@pytest.fixture(scope='module')
def files(tmp_path_factory):
    "A run checkpoint of a tiny synthetic baseline, and files that are not run checkpoints."
    import numpy as np, pickle, torch
    from taf.config import get_recipe
    from taf.train import train
    d = tmp_path_factory.mktemp('files')
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try: train(get_recipe('synthetic', **{**CONFIG, 'out_dir': str(d / 'base')}))
    finally: torch.set_num_threads(n)
    (d / 'notes.txt').write_text('not a checkpoint\n')
    torch.save({'w': torch.ones(2)}, d / 'weights.pt')                   # a bare state dict: no run config
    torch.save([torch.ones(2)], d / 'list.pt')                           # a torch file without a model
    pickle.dump({'model': np.ones(2)}, open(d / 'objects.pt', 'wb'))     # refused by the safe loader
    return d


def one_line_error(argv, capsys):
    "(exit status, the error line) of `taf *argv`, asserting that stderr is one line without a traceback."
    try: rc = main([str(a) for a in argv])
    except SystemExit as e: rc = e.code
    err = capsys.readouterr().err
    assert rc not in (0, None), (argv, err)
    assert err.endswith('\n') and err.count('\n') == 1, (argv, err)
    assert 'Traceback' not in err and 'weights_only' not in err, err
    assert err.startswith((f"taf {argv[0]}: ", 'taf: ')), err          # the command's, or the top parser's
    return rc, err


NOT_CHECKPOINTS = ['missing.pt', 'notes.txt', 'weights.pt', 'list.pt', 'objects.pt']


@pytest.mark.parametrize('name', NOT_CHECKPOINTS)
@pytest.mark.parametrize('command, option', [('eval', '--checkpoint'), ('finetune', '--init')])
def test_not_a_run_checkpoint(files, capsys, command, option, name):
    out = ['--out_dir', files / 'never'] if command == 'finetune' else []
    rc, err = one_line_error([command, option, files / name, *out], capsys)
    assert rc == 2 and str(files / name) in err
    assert ('does not exist' if name == 'missing.pt' else 'not a taf') in err
    assert not (files / 'never').exists()


@pytest.mark.parametrize('args, culprit', [
    (['train', '--recipe', 'synthetic', '--alpha', '2'], 'TrainConfig.alpha=2.0'),
    (['train', '--recipe', 'synthetic', '--epochs', 'x'], "--epochs 'x'"),
    (['train', '--recipe', 'synthetic', '--dataset', 'nosuch'], "TrainConfig.dataset='nosuch'"),
    (['train', '--recipe', 'synthetic', '--eps', '1/0'], "--eps '1/0'"),
    (['train', '--recipe', 'nosuch'], "--recipe: invalid choice: 'nosuch'"),
    (['train', '--config', '{d}/notes.txt'], 'notes.txt'),                      # not JSON, no [train] section
    (['train', '--config', '{d}/missing.json'], 'missing.json'),
    (['train', '--config', '{d}/base/last.pt'], 'last.pt: not a text file'),    # a binary file
    (['finetune', '--init', '{d}/base/last.pt', '--alpha', '2'], 'TrainConfig.alpha=2.0'),
    (['finetune', '--init', '{d}/base/last.pt', '--method', 'nosuch'], "TrainConfig.method='nosuch'"),
    (['finetune', '--init', '{d}/base/last.pt', '--arch', 'tam'], "arch='tsm'"),  # the baseline is a TSM
    (['finetune', '--init', '{d}/base/last.pt', '--severity', '2'], 'unrecognized arguments: --severity'),
    (['eval', '--checkpoint', '{d}/base/last.pt', '--severity', '9'], '--severity: invalid choice: 9'),
    (['eval', '--checkpoint', '{d}/base/last.pt', '--corruption', 'nosuch'], "--corruption: invalid choice: 'nosuch'"),
    (['eval', '--checkpoint', '{d}/base/last.pt', '--dataset', 'nosuch'], "--dataset: invalid choice: 'nosuch'"),
    (['eval', '--checkpoint', '{d}/base/last.pt', '--dataset', 'ssv1'], "--root None: no folder with the ssv1 dataset"),
    (['eval', '--checkpoint', '{d}/base/last.pt', '--batch_size', '0'], "--batch_size: '0': expected an integer >= 1"),
    (['eval', '--checkpoint', '{d}/base/last.pt', '--device', 'nosuch'], "--device: 'nosuch'"),
    (['eval', '--checkpoint', '{d}/base/last.pt', '--size', 'x'], "--size: 'x'"),
    (['eval', '--checkpoint', '{d}/base/last.pt', '--out', '{d}'], "--out: '{d}' is a folder"),
    (['bench', '--profile', 'nosuch'], "--profile: invalid choice: 'nosuch'"),
    (['bench', '--device', 'nosuch'], "--device: 'nosuch'"),
    (['bench', '--out', '{d}/notes.txt'], 'notes.txt'),                          # a file where a folder belongs
    (['reproduce', '--profile', 'nosuch'], "'nosuch'"),
    (['reproduce', '--only', 'table9'], "unknown experiment(s) ['table9']"),
    (['reproduce', '--jobs', '0'], "--jobs: '0': expected an integer >= 1"),
    (['reproduce', '--root', '{d}/notes.txt'], 'notes.txt'),                     # a file where the repository belongs
])
def test_bad_value_is_one_line(files, capsys, args, culprit):
    rc, err = one_line_error([a.format(d=files) for a in args], capsys)
    assert culprit.format(d=files) in err, err
    assert not (files / 'base_taf').exists() and not (files / 'never').exists()


def test_cuda_asked_for_without_cuda(files, capsys):
    import torch
    if torch.cuda.is_available(): pytest.skip('this machine has CUDA')
    _, err = one_line_error(['eval', '--checkpoint', files / 'base' / 'last.pt', '--device', 'cuda'], capsys)
    assert "--device: 'cuda'" in err
    _, err = one_line_error(['train', '--recipe', 'synthetic', '--device', 'cuda', '--out_dir', files / 'never'],
                            capsys)
    assert "TrainConfig.device='cuda'" in err


@pytest.mark.parametrize('args, culprit', [(['eval', '--checkpoint', 'missing.pt'], 'missing.pt'),
                                           (['finetune', '--init', '{d}/notes.txt'], 'notes.txt'),
                                           (['finetune', '--init', '{d}/objects.pt'], 'objects.pt')])
def test_console_errors_are_one_line(files, args, culprit):
    "The same from a new process: nothing else on stderr (no warning from torch's loader)."
    r = taf(*[a.format(d=files) for a in args], timeout=120)
    assert r.returncode == 2 and r.stderr.count('\n') == 1 and culprit in r.stderr, r.stderr
    assert 'Traceback' not in r.stderr and 'weights_only' not in r.stderr, r.stderr


@pytest.mark.parametrize('kind', ['folder', 'list'])
def test_train_on_a_folder_or_list_dataset(tmp_path, kind):
    "`taf train --dataset folder|list --root DIR`: the user's own videos, in the Kinetics layout or as a list file."
    import numpy as np
    from taf.synthetic import write_video
    root = tmp_path / 'data'
    lines = {'train': [], 'val': []}
    for split, n in (('train', 4), ('val', 2)):
        for c, cls in enumerate(('left', 'right')):
            for i in range(n):
                frames = np.zeros((8, 32, 32, 3), np.uint8)
                frames[:, :, c * 16:(c + 1) * 16] = 200                      # the class is where the bright half is
                p = write_video(root / split / cls / f'{i}.webm', frames)
                lines[split].append(f"{p.relative_to(root)} {c}")
    if kind == 'list':
        for split, ls in lines.items(): (root / f'{split}.txt').write_text('# path label\n' + '\n'.join(ls) + '\n')
    args = ['--dataset', kind, '--root', root, '--num_frames', 4, '--size', 32, '--backbone', 'resnet18', '--width', 8,
            '--epochs', 1, '--batch_size', 4, '--workers', 0, '--out_dir', tmp_path / 'run']
    r = taf('train', *args)
    assert r.returncode == 0, r.stdout + r.stderr
    c = json.loads((tmp_path / 'run' / 'config.json').read_text())
    assert c['dataset'] == kind and (tmp_path / 'run' / 'last.pt').exists()
    (root / 'val' / 'left' / 'broken.webm').write_bytes(b'no video')
    if kind == 'list': (root / 'val.txt').write_text('val/left/broken.webm 0\nval/left/0.webm zero\n')
    r = taf('train', *args[:-1], tmp_path / 'run2')
    assert r.returncode != 0 and ('broken.webm' in r.stderr or 'line 2' in r.stderr), r.stderr[-2000:]


def test_train_and_finetune_a_torchvision_model(tmp_path):
    "`taf train --arch r2plus1d_18` on the synthetic benchmark, then `taf finetune --method taf` (eq. 7) from it."
    cfg = tmp_path / 'run.json'
    cfg.write_text(json.dumps({**CONFIG, 'arch': 'r2plus1d_18'}))      # backbone/width of CONFIG: ignored
    r = taf('train', '--config', cfg, '--out_dir', tmp_path / 'base')
    assert r.returncode == 0, r.stdout + r.stderr
    assert main(['finetune', '--init', str(tmp_path / 'base' / 'last.pt'), '--method', 'taf', '--epochs', '1',
                 '--n_nonkey', '2', '--out_dir', str(tmp_path / 'taf')]) == 0
    c = json.loads((tmp_path / 'taf' / 'config.json').read_text())
    assert (c['arch'], c['method']) == ('r2plus1d_18', 'taf') and (tmp_path / 'taf' / 'last.pt').exists()
    r = taf('train', '--config', cfg, '--arch', 'r2plus1d_19', '--out_dir', tmp_path / 'bad')
    assert r.returncode == 2 and 'r2plus1d_19' in r.stderr and 'swin3d_t' in r.stderr, r.stderr


@pytest.mark.parametrize('arch', ['r3d_18', 'mc3_18', 's3d', 'mvit_v2_s'])
def test_train_and_finetune_every_other_torchvision_model(tmp_path, arch):
    "`taf train --arch A`, then `taf finetune --method taf`, for the torchvision models the two tests around skip."
    cfg = tmp_path / 'run.json'
    cfg.write_text(json.dumps({**CONFIG, 'arch': arch, 'num_frames': 8, 'synthetic': {**SMALL, 'num_frames': 8,
                                                                                       'size': 32}}))
    assert main(['train', '--config', str(cfg), '--out_dir', str(tmp_path / 'base')]) == 0
    assert main(['finetune', '--init', str(tmp_path / 'base' / 'last.pt'), '--method', 'taf', '--epochs', '1',
                 '--n_nonkey', '2', '--out_dir', str(tmp_path / 'taf')]) == 0
    c = json.loads((tmp_path / 'taf' / 'config.json').read_text())
    assert (c['arch'], c['method']) == (arch, 'taf') and (tmp_path / 'taf' / 'last.pt').exists()


def test_train_a_torchvision_model_on_a_folder_dataset(tmp_path):
    "`taf train --dataset folder --arch swin3d_t`: the synthetic benchmark written as root/<split>/<class>/<id>.webm."
    from taf.synthetic import get_config, write_folder
    write_folder(tmp_path / 'data', get_config('small', num_classes=4, num_frames=8, size=32, train_per_class=2,
                                               val_per_class=1))
    r = taf('train', '--dataset', 'folder', '--root', tmp_path / 'data', '--arch', 'swin3d_t', '--num_frames', 8,
            '--size', 32, '--epochs', 1, '--batch_size', 4, '--workers', 0, '--progress', 'false',
            '--out_dir', tmp_path / 'run')
    assert r.returncode == 0, r.stdout + r.stderr
    c = json.loads((tmp_path / 'run' / 'config.json').read_text())
    assert (c['dataset'], c['arch']) == ('folder', 'swin3d_t') and (tmp_path / 'run' / 'last.pt').exists()

"""The `paper` profile of the study artefacts (Tables 1, 2(a-c), 4, 6(a, b), 7) on tiny folders in the real formats
written by `taf.synthetic` (SSV1 JPEG frames, SSV2 VP9 webm, Diving48 H.264 mp4), with the official recipes shrunk by
`study_kw['sizes']`: every notebook end to end on one store, a baseline imported from a checkpoint in TSM's official key
layout, the data check refusing broken folders, the plan and the dry run, one run per GPU slot, a DDP run, and a
killed study that resumes."""
import json, multiprocessing as mp, os, shutil, signal, subprocess, sys, time
from pathlib import Path

import pandas as pd
import pytest
import torch

from taf.synthetic import get_config, write_ssv1, write_ssv2, write_diving48

ROOT = Path(__file__).resolve().parents[1]
TINY = get_config('small', num_classes=4, size=32, num_frames=8, train_per_class=4, val_per_class=2)
SIZES = {'ft_epochs': 1, 'config': dict(backbone='resnet18', width=8, size=32, batch_size=4, workers=0, epochs=1)}
RELEASE = 'TSM_something_RGB_resnet50_shift8_blockres_avg_segment8_e45.pth'   # taf.study.OFFICIAL_CHECKPOINTS
EXPECT = {d: dict(classes=4, train=16, val=8) for d in ('ssv1', 'ssv2', 'diving48')}


def tsm_official(sd):
    "A state dict in the layout of TSM's releases: `module.base_model.*`, `.conv1.net.`, `module.new_fc.*`."
    out = {}
    for k, v in sd.items():
        if k.startswith('fc.'): out['module.new_fc.' + k[3:]] = v
        else: out['module.base_model.' + k.replace('.conv1.', '.conv1.net.', 1) if k.startswith('layer') else
                  'module.base_model.' + k] = v
    return {'epoch': 45, 'arch': 'resnet50', 'best_prec1': 45.6, 'state_dict': out}


def write_data(data:Path):
    "The three datasets and a released SSV1 TSM 8-frame checkpoint (a tiny TSM-ResNet18 in TSM's layout)."
    write_ssv1(data / 'ssv1', TINY)
    write_ssv2(data / 'ssv2', TINY)
    write_diving48(data / 'diving48', TINY)
    from taf.models import create_model
    torch.manual_seed(0)
    (data / 'checkpoints').mkdir(parents=True)
    torch.save(tsm_official(create_model('tsm', 4, 8, backbone='resnet18', width=8).state_dict()),
               data / 'checkpoints' / RELEASE)
    return data


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    return write_data(tmp_path_factory.mktemp('paper') / 'data')


def study_kw(store, **kw):
    return json.dumps({'workers': 1, 'store': str(store), 'sizes': SIZES, 'tolerance': 100, **kw})


def test_paper_profile_of_every_study_artefact(tmp_path, data, papermill):
    "Table 1, 7 and the ablation tables under `-p profile paper` on the tiny folders, sharing one store and runs folder."
    figs, runs, store = tmp_path / 'figures', tmp_path / 'runs', tmp_path / 'store.json'
    common = ['-p', 'profile', 'paper', '-p', 'out_dir', str(figs), '-p', 'runs_dir', str(runs),
              '-p', 'data_dir', str(data), '-y', f'study_kw: {study_kw(store)}']
    papermill('table1.ipynb', tmp_path / 'table1.ipynb', *common,
              '-y', 'select: {archs: [tsm], frames: [8], seeds: [0]}')
    t1 = pd.read_csv(figs / 'table1.csv')
    assert [(r.regime, r.benchmark, r.arch, r['T']) for _, r in t1.iterrows()] == [
        ('ssv1', 'SSV1', 'tsm', 8), ('ssv2', 'SSV2', 'tsm', 8), ('diving48', 'Diving48', 'tsm', 8)]
    assert t1.paper_baseline.tolist() == [45.6, 58.9, 78.5] and t1[['baseline', 'control', 'taf']].stack().between(0, 100).all()
    md = (figs / 'table1.md').read_text()
    assert 'profile `paper`' in md and "The paper's datasets" in md and '**val** split' in md
    assert f'the released `{RELEASE}`' in md and "TSM's official recipe (1 epochs" in md     # imported / trained
    assert '| release |' in md and md.count('| official |') == 2 and 'No cell was flagged.' in md
    entries = json.loads(store.read_text())
    imported = [e for e in entries.values() if e['result'].get('verified')]
    assert len(imported) == 1 and imported[0]['run'] == 'ssv1/tsm/8/0'
    assert imported[0]['result']['verified']['reference'] == 45.6 and imported[0]['result']['split'] == 'val'
    assert all(e['device'].startswith('cpu') for e in entries.values()) and len(entries) == 3 * 3

    papermill('table7.ipynb', tmp_path / 'table7.ipynb', *common, '-y', 'select: {seeds: [0], severities: [3]}')
    t7 = pd.read_csv(figs / 'table7.csv')
    assert set(t7.method) == {'baseline', 'control', 'taf'} and t7.top1.between(0, 1).all()
    meta7 = json.loads((figs / 'table7.meta.json').read_text())['config']
    assert meta7['regime'] == 'diving48' and meta7['split'] == 'val' and meta7['kind'].startswith('corruptions/val/')
    assert '**val**' in (figs / 'table7.md').read_text()
    n = len(json.loads(store.read_text()))
    assert n == 9 + 3                                   # Table 1's Diving48 runs measured again, not trained again

    levels = {'table2b': 4, 'table2c': 4, 'table6a': 3, 'table6b': 3, 'table2a': 3, 'table4': 8}
    for name, k in levels.items():
        papermill(f'{name}.ipynb', tmp_path / f'{name}.ipynb', *common, '-y', 'select: {seeds: [0]}')
        df = pd.read_csv(figs / f'{name}.csv')
        assert len(df) == k and set(df.regime) == {'ssv1'} and df.taf.between(0, 100).all(), name
        text = (figs / f'{name}.md').read_text()
        assert 'profile `paper`' in text and "The paper's datasets ['ssv1']" in text and '**val** split' in text, name
        assert f'the released `{RELEASE}`' in text, name
    entries = json.loads(store.read_text())
    # the imported baseline, its control and TAF are Table 1's; new: 3 + 3 + 2 + 2 levels, CE and AdvProp (a trained
    # baseline), 7 other fine-tunings of Table 4
    assert len(entries) == n + 3 + 3 + 2 + 2 + 2 + 7
    adv = [e for e in entries.values() if e['run'] == 'ssv1/0/advprop']
    assert len(adv) == 1 and 'verified' not in adv[0]['result']                  # AdvProp is trained, not imported


def test_release_too_far_from_its_reference_stops(tmp_path, data):
    "A release whose top-1 is more than `tolerance` from its reference stops, naming the file and the data preparation."
    from taf.evaluate import CheckpointMismatch
    from taf.study import paper_baseline, study_sizes, import_release, release_of
    cfg = paper_baseline('ssv1', 0, tmp_path / 'b', study_sizes('paper', SIZES, data))
    assert release_of(cfg)['file'] == RELEASE and cfg.pretrained == str((data / 'checkpoints' / RELEASE).resolve())
    with pytest.raises(CheckpointMismatch, match=rf'{RELEASE}.*45.60 published.*check the data preparation'):
        import_release(cfg, tolerance=1.0)
    assert not (tmp_path / 'b' / 'results.json').exists()                         # nothing imported
    res = import_release(cfg, tolerance=100)
    assert res['imported_from'] == cfg.pretrained and res['verified']['protocol'] == '1x1'
    assert import_release(cfg, tolerance=100)['verified'] == res['verified']        # read back, not measured again


def test_data_check_refuses_broken_folders(tmp_path, data):
    "A missing video and a wrong label list fail the check with a message naming them; `taf reproduce` stops first."
    from taf.reproduce import check_data, ReproduceError
    repo = tmp_path / 'repo'
    shutil.copytree(data, repo / 'data')
    assert set(check_data(['ssv1', 'ssv2', 'diving48'], repo, EXPECT)) == {'ssv1', 'ssv2', 'diving48'}
    gone = sorted((repo / 'data' / 'diving48' / 'rgb').glob('*.mp4'))[0]
    gone.unlink()
    with pytest.raises(ReproduceError, match=rf'diving48 root .* fails taf data check: .*{gone.name}'):
        check_data(['diving48'], repo, EXPECT, full=True)
    labels = repo / 'data' / 'ssv1' / 'something-something-v1-labels.csv'
    names = labels.read_text().splitlines()
    labels.write_text('\n'.join(names[1:]) + '\n')                           # a class missing from the label list
    with pytest.raises(ReproduceError, match=rf'ssv1 root .* fails taf data check: .*something-something-v1-'):
        check_data(['ssv1'], repo, EXPECT)
    (repo / 'nbs').symlink_to(ROOT / 'nbs')
    r = subprocess.run([str(Path(sys.executable).parent / 'taf'), 'reproduce', '--profile', 'paper', '--only', 'table2b',
                        '--root', str(repo)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and 'fails taf data check' in r.stderr and 'ssv1' in r.stderr, r.stderr[-2000:]
    assert not (repo / 'runs').exists() and not (repo / 'figures' / 'paper' / 'plan.md').exists()  # stopped first


def test_plan_and_dry_run(tmp_path, data, capsys):
    "The dry run lists every run of the selected artefacts once, with its cost from a probe, and trains nothing."
    from taf.reproduce import reproduce
    repo = tmp_path / 'repo'
    repo.mkdir()
    (repo / 'nbs').symlink_to(ROOT / 'nbs')
    shutil.copytree(data, repo / 'data')
    kw = {'study_kw': {'workers': 1, 'sizes': SIZES, 'tolerance': 100}}
    tvc = {'seeds': [0], 'baseline_epochs': 1, 'finetune_epochs': 1, 'overrides': {**SIZES['config'], 'epochs': 1}}
    out = reproduce('paper', only=['taf_vs_control', 'table2b', 'table7', 'sensitivity'], root=repo, dry_run=True,
                    data_expect=EXPECT, extra={'table2b': {**kw, 'select': {'seeds': [0]}}, 'taf_vs_control': tvc,
                                               'table7': {**kw, 'select': {'seeds': [0, 1]}},
                           'table1': {**kw, 'select': {'archs': ['tsm'], 'frames': [8], 'seeds': [0, 1]}}},
                    probe=dict(batch=2, steps=1, warmup=0))      # table7 pulls in table1, whose runs it measures
    text = capsys.readouterr().out
    assert out == {} and '[taf reproduce] skipped sensitivity (profile paper): synthetic only' in text
    plan = pd.read_csv(repo / 'figures' / 'paper' / 'plan.csv')
    # table2b: the imported SSV1 baseline, its control, TAF (alpha 0.7) and 3 other alphas; table1: 3 datasets x
    # 2 seeds x (baseline, control, TAF), of which seed 0 on SSV1 is table2b's; table7: table1's Diving48 runs;
    # taf_vs_control: its own baseline (the same SSV1 TSM 8f release, imported), control and TAF
    assert len(plan) == 3 + 6 + 18 - 3 and plan.run.is_unique
    assert sorted(plan.status.value_counts().items()) == [('import', 3), ('train', 21)]
    shared = plan[plan.artefacts.str.contains(',')]
    assert sorted(shared.artefacts.value_counts().items()) == [('table1, table7', 6), ('table2b, table1', 3)]
    assert set(plan[plan.artefacts == 'table2b'].dataset) == {'ssv1'} and set(shared[shared.artefacts == 'table1, table7']
                                                                             .dataset) == {'diving48'}
    assert (plan[plan.status == 'train'].hours > 0).all() and (plan[plan.status == 'import'].hours == 0).all()
    assert (plan.clips == 16).all() and set(plan.epochs) == {45, 1}
    assert set(plan[plan.artefacts == 'taf_vs_control'].id) == {'seed0/baseline', 'seed0/control', 'seed0/taf'}
    md = (repo / 'figures' / 'paper' / 'plan.md').read_text()
    assert md in text and '24 runs (each counted once' in md and '3 released checkpoints to import, 4 baselines and 17' in md
    assert '| `taf_vs_control` | 3 | 0 | 1 | 0 | 2 | 0 |' in md and '| `table2b` | 6 | 0 | 1 | 0 | 5 | 0 |' in md and '| `table1` | 18 | 3 | 1 | 4 | 10 | 0 |' in md
    assert '| `table7` | 6 | 6 | 0 | 0 | 0 | 0 | 0 |' in md and md.count('\n| `') == 4 + 24 and '## Probe' in md
    assert not list((repo / 'runs').rglob('*.pt')) and not (repo / 'figures' / 'paper' / 'REPORT.md').exists()


def _slot_after_barrier(barrier):
    barrier.wait(timeout=120)                       # both jobs run at once: two workers, one slot each
    return os.environ.get('CUDA_VISIBLE_DEVICES')


def test_one_run_per_gpu_slot():
    "`run_jobs(slots=...)` pins each worker process to its slot: two jobs running at once see two different slots."
    from taf.jobs import Job, run_jobs, gpu_slots
    with mp.get_context('spawn').Manager() as m:
        barrier = m.Barrier(2)
        got = {r for _, r in run_jobs([Job(i, _slot_after_barrier, (barrier,)) for i in range(2)], slots=['4', '6'],
                                      threads=None)}
    assert got == {'4', '6'}
    assert gpu_slots(4, 2, visible='2,3,4,5') == ['2,3', '4,5']


@pytest.mark.skipif(not (shutil.which('torchrun', path=str(Path(sys.executable).parent)) or shutil.which('torchrun')),
                    reason='torchrun not found')
def test_study_run_with_ddp(tmp_path):
    "`gpus_per_run=2`: a study's run trains with DDP in 2 processes (torchrun, gloo on the CPU), measured and stored."
    from taf.study import Study, regime_baseline, study_sizes
    st = Study(tmp_path / 'store.json', gpus_per_run=2, slots=[])
    st.add_baseline('b', regime_baseline('permutation', 0, tmp_path / 'b', study_sizes('smoke')))
    st.run()
    assert json.loads((tmp_path / 'b' / 'run.json').read_text())['world_size'] == 2
    assert (tmp_path / 'b' / 'ddp.log').exists() and (tmp_path / 'b' / 'results.json').exists()
    m = st.store.data[st.base_key('b')]
    assert m['device'].startswith('cpu') and m['result']['clips_per_s'] > 0 and 0 <= m['result']['test'] <= 1


KILLED = """
import sys
from taf.study import Study, ablation, study_sizes
sizes = study_sizes('paper', {'ft_epochs': 3, 'config': dict(backbone='resnet18', width=8, size=32, batch_size=4,
                                                         workers=0, epochs=1, progress=False)}, sys.argv[1])
st = ablation(Study(sys.argv[2], tolerance=100), ['ssv2'], [0], {}, sys.argv[3], sizes)
st.run()
print('STUDY DONE', flush=True)
"""


def test_killed_study_resumes(tmp_path, data):
    "A study killed in the middle of a fine-tuning, run again: the stored baseline is kept and the run resumes."
    script, store, runs = tmp_path / 'study.py', tmp_path / 'store.json', tmp_path / 'runs'
    script.write_text(KILLED)
    cmd = [sys.executable, str(script), str(data), str(store), str(runs)]
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONUNBUFFERED='1')
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         start_new_session=True)
    lines, t0 = [], time.time()
    try:
        for line in p.stdout:                       # the control's first epoch ends: kill mid-fine-tuning
            lines.append(line)
            if 'control on ssv2' in ''.join(lines) and 'epoch 1/3' in line:
                os.killpg(p.pid, signal.SIGKILL)
                break
            assert time.time() - t0 < 240, ''.join(lines)
    finally: p.wait(timeout=60)
    assert p.returncode == -signal.SIGKILL, ''.join(lines)
    before = json.loads(store.read_text())
    assert [e['run'] for e in before.values()] == ['ssv2/0/tuned']             # the baseline was stored
    control = runs / 'ssv2' / 'seed0' / 'tuned' / 'control'
    assert (control / 'last.pt').exists() and not (control / 'results.json').exists()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and 'STUDY DONE' in r.stdout, r.stdout[-2000:] + r.stderr[-2000:]
    assert f'resumed from {control / "last.pt"} at epoch 2' in r.stdout
    after = json.loads(store.read_text())
    k = next(iter(before))
    assert after[k] == before[k] and len(after) == 2                          # the baseline kept, the control added
    hist = json.loads((control / 'results.json').read_text())['history']
    assert [h['epoch'] for h in hist] == [1, 2, 3]

"""The one job runner (`taf.jobs`) in worker processes, and its three users: `run_many` (two processes that ask for
the same run at once train it once; a fine-tuning starts behind its baseline), `Study.run` (runs stored once,
measured in this process) and the store that several writers share."""
import json, os, time
from pathlib import Path

import pytest

from taf.jobs import Job, JobError, run_jobs
from taf.runs import ResultStore, cached_train, run_key, run_many
from taf.study import regime_baseline


# module-level: a spawned worker imports this module to find them
def stamp(path, nap=0.0):
    "Sleep `nap` s, then write when this job started and ended (perf_counter is not shared; wall time is)."
    t0 = time.time()
    time.sleep(nap)
    Path(path).write_text(json.dumps({'start': t0, 'end': time.time(), 'pid': os.getpid()}))
    return os.getpid()


def fail(msg):
    raise KeyError(msg)


def test_jobs_start_after_what_they_need_in_workers(tmp_path):
    p = lambda n: tmp_path / f'{n}.json'
    jobs = [Job('ft', stamp, (p('ft'),), after=('base',)), Job('base', stamp, (p('base'), 0.5)),
            Job('other', stamp, (p('other'), 0.2)), Job('last', stamp, (p('last'),), after=('ft', 'other'))]
    got = list(run_jobs(jobs, workers=2, threads=None))
    assert sorted(j.name for j, _ in got) == ['base', 'ft', 'last', 'other']
    t = {n: json.loads(p(n).read_text()) for n in ('base', 'ft', 'other', 'last')}
    assert t['ft']['start'] >= t['base']['end'] and t['last']['start'] >= max(t['ft']['end'], t['other']['end'])
    assert {pid for _, pid in got} - {os.getpid()}                # in other processes
    names = [j.name for j, _ in got]
    assert names.index('ft') > names.index('base') and names[-1] == 'last'


def test_a_failing_job_is_named_and_running_ones_finish(tmp_path):
    jobs = [Job('slow', stamp, (tmp_path / 'slow.json', 0.5)), Job(('broken', 3), fail, ('no such key',)),
            Job('behind', stamp, (tmp_path / 'behind.json',), after=('slow',))]
    seen = []
    with pytest.raises(JobError, match=r"job \('broken', 3\) failed: KeyError: 'no such key'") as e:
        for j, _ in run_jobs(jobs, workers=2, threads=None): seen.append(j.name)
    assert isinstance(e.value.error, KeyError) and e.value.job.name == ('broken', 3)
    assert seen == ['slow'] and not (tmp_path / 'behind.json').exists()   # finished, but nothing more started


def test_unknown_and_circular_after_are_refused_before_anything_runs(tmp_path):
    with pytest.raises(ValueError, match=r"`after` names no given job: \{'ft': \['baseline'\]\}"):
        run_jobs([Job('ft', stamp, (tmp_path / 'x',), after=('baseline',))], workers=2)
    loop = [Job('a', stamp, (tmp_path / 'a',), after=('b',)), Job('b', stamp, (tmp_path / 'b',), after=('a',))]
    with pytest.raises(ValueError, match=r"circular `after`: jobs \['a', 'b'\] can never start"):
        run_jobs(loop, workers=2)
    assert not list(tmp_path.iterdir())


def test_same_run_in_two_processes_trains_once(tmp_path):
    cfg = regime_baseline('permutation', 0, tmp_path / 'base', 'smoke')
    a, b = run_many([cfg, cfg], workers=2)
    same = lambda r: json.dumps(r, sort_keys=True)            # (epochs without validation hold NaN != NaN)
    assert same(a) == same(b)                                  # the same run read back, not trained twice
    assert same(json.loads((tmp_path / 'base' / 'results.json').read_text())) == same(a)


def test_workers_yield_every_run_and_the_store_merges_writers(tmp_path):
    cfgs = [regime_baseline('permutation', s, tmp_path / f'seed{s}', 'smoke') for s in (0, 1, 2)]
    first, second = ResultStore(tmp_path / 'store.json'), ResultStore(tmp_path / 'store.json')
    got = {j.name: r for j, r in run_jobs([Job(i, cached_train, (c,)) for i, c in enumerate(cfgs)], workers=2)}
    assert sorted(got) == [0, 1, 2] and all(got[i]['out_dir'] == cfgs[i].out_dir for i in got)
    here = dict((j.name, r) for j, r in run_jobs([Job(0, cached_train, (cfgs[0],))]))    # here: the run read back
    assert here[0]['train_time_s'] == got[0]['train_time_s']
    for i, c in enumerate(cfgs):                                # two stores opened before any put, written in turn
        (first if i % 2 else second).put(run_key(c), {'train_time_s': got[i]['train_time_s']})
    assert len(ResultStore(tmp_path / 'store.json')) == 3


def test_study_in_two_processes_trains_and_stores_every_run_once(tmp_path):
    from taf.study import Study, regime_finetune
    study = Study(tmp_path / 'store.json', workers=2)
    for s in (0, 1):
        b = study.add_baseline(s, regime_baseline('permutation', s, tmp_path / f'seed{s}' / 'baseline', 'smoke'))
        for m in ('control', 'taf'): study.add_finetune(s, regime_finetune(b, m, size='smoke'), seed=s, method=m)
    assert study.run() > 0
    assert len(study.store) == 6 and len(study.finetunes()) == 4 and study.finetunes().test.between(0, 1).all()
    started = lambda c: (Path(c.out_dir) / 'config.json').stat().st_mtime      # written as a run starts
    finished = lambda c: (Path(c.out_dir) / 'results.json').stat().st_mtime
    assert all(started(j.cfg) >= finished(study.bases[j.base]) for j in study.jobs)
    again = Study(tmp_path / 'store.json')                      # everything stored: nothing to train
    again.bases, again.jobs = study.bases, study.jobs
    assert again.run() == 0.0


def test_study_names_the_run_that_failed(tmp_path):
    from taf.study import Study
    study = Study(tmp_path / 'store.json')
    cfg = regime_baseline('permutation', 0, tmp_path / 'b', 'smoke', batch_size=10_000)   # more than the clips
    study.add_baseline(('permutation', 0), cfg)
    with pytest.raises(JobError, match=r"job \('baseline', \('permutation', 0\)\) failed: .*batch_size"):
        study.run()
    assert len(study.store) == 0


def test_run_many_starts_a_fine_tuning_once_its_baseline_is_done(tmp_path):
    from taf.study import regime_finetune
    base = [regime_baseline('permutation', s, tmp_path / f'seed{s}' / 'baseline', 'smoke') for s in (0, 1)]
    fts = [regime_finetune(b, 'control', size='smoke') for b in base]       # init: the baseline's last.pt
    res = run_many([*base, *fts], workers=2, after={2: 0, 3: 1})
    assert [r['out_dir'] for r in res] == [c.out_dir for c in [*base, *fts]]
    started = lambda c: (Path(c.out_dir) / 'config.json').stat().st_mtime      # written as a run starts
    finished = lambda c: (Path(c.out_dir) / 'results.json').stat().st_mtime
    assert all(started(f) >= finished(b) for b, f in zip(base, fts))

"""Two processes that ask for the same run at once (two notebooks sharing a baseline under `taf reproduce --jobs 2`):
one trains it, the other waits on the run folder's lock and reuses it; both results land in one shared store."""
import json
from pathlib import Path

from taf.study import regime_baseline
from taf.train import ResultStore, TrainPool, run_key, run_many


def test_same_run_in_two_processes_trains_once(tmp_path):
    cfg = regime_baseline('permutation', 0, tmp_path / 'base', 'smoke')
    a, b = run_many([cfg, cfg], workers=2)
    same = lambda r: json.dumps(r, sort_keys=True)            # (epochs without validation hold NaN != NaN)
    assert same(a) == same(b)                                  # the same run read back, not trained twice
    assert same(json.loads((tmp_path / 'base' / 'results.json').read_text())) == same(a)


def test_pool_yields_every_run_and_the_store_merges_writers(tmp_path):
    cfgs = [regime_baseline('permutation', s, tmp_path / f'seed{s}', 'smoke') for s in (0, 1, 2)]
    first, second = ResultStore(tmp_path / 'store.json'), ResultStore(tmp_path / 'store.json')
    with TrainPool(2) as pool:
        got = dict(pool.run(cfgs))
        assert sorted(got) == [0, 1, 2] and all(got[i]['out_dir'] == cfgs[i].out_dir for i in got)
        got2 = dict(pool.run(cfgs[:1]))                        # the same processes serve a second batch (reused run)
        assert got2[0]['train_time_s'] == got[0]['train_time_s']
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
    again = Study(tmp_path / 'store.json')                      # everything stored: nothing to train
    again.bases, again.jobs = study.bases, study.jobs
    assert again.run() == 0.0


def test_run_many_starts_a_fine_tuning_once_its_baseline_is_done(tmp_path):
    from taf.study import regime_finetune
    base = [regime_baseline('permutation', s, tmp_path / f'seed{s}' / 'baseline', 'smoke') for s in (0, 1)]
    fts = [regime_finetune(b, 'control', size='smoke') for b in base]       # init: the baseline's last.pt
    res = run_many([*base, *fts], workers=2, after={2: 0, 3: 1})
    assert [r['out_dir'] for r in res] == [c.out_dir for c in [*base, *fts]]
    started = lambda c: (Path(c.out_dir) / 'config.json').stat().st_mtime      # written as a run starts
    finished = lambda c: (Path(c.out_dir) / 'results.json').stat().st_mtime
    assert all(started(f) >= finished(b) for b, f in zip(base, fts))

"""The underfit study (nbs/experiments/underfit.ipynb) in the `smoke` profile: calibration, selection, every level on
the main cell, the branch shares, the pretrained start and the claims it hands to REPORT.md."""
import json
import numpy as np
import pandas as pd
from taf.runs import ResultStore


def test_underfit_smoke(tmp_path, papermill):
    figs, store = tmp_path / 'figures', tmp_path / 'store.json'
    papermill('underfit.ipynb', tmp_path / 'underfit.ipynb', '-p', 'profile', 'smoke', '-p', 'out_dir', str(figs),
              '-p', 'runs_dir', str(tmp_path / 'runs'), '-y', f'study_kw: {{workers: 1, store: "{store}"}}')
    meta = json.loads((figs / 'underfit.meta.json').read_text())
    cfg = meta['config']
    cal = pd.DataFrame(meta['calibration'])
    assert list(cal.regime) == ['underfit-dropout', 'underfit-decay', 'label-noise']
    assert cal.train_forward.between(0, 1).all() and (cal.qualifies == False).iloc[-1]   # the contrast never qualifies
    assert cfg['main'] in ('underfit-dropout', 'underfit-decay') and cfg['others'][-1] == 'label-noise'
    df = pd.read_csv(figs / 'underfit.csv')
    main = df[df.part == 'main']
    assert list(main.level) == ['control', 'TAF', 'CE-based', '-C ++W', '++C -W'] and (main.regime == cfg['main']).all()
    # the label rule's levels have a true-label share; the CE-based attack does not use the rule's targets
    assert main.set_index('level')['true-label share'][['TAF', '-C ++W']].notna().all()
    assert np.isnan(main.set_index('level')['true-label share']['CE-based'])
    assert main.set_index('level')['true-label share']['++C -W'] == 0
    assert set(df.part) == {'main', 'other', 'pretrained', 'scratch'}
    assert set(df[df.part == 'pretrained'].regime) == {'permutation', cfg['main']}
    assert (df[df.part == 'pretrained'].start == 'pretrained').all() and (df[df.part != 'pretrained'].start == 'scratch').all()
    # the pretrained baselines are other runs than those from scratch, and their configs name the weights
    entries = ResultStore(store).data
    runs = [e['run'] for e in entries.values()]
    assert any('pretrained' in r for r in runs) and any(r.endswith('tuned') for r in runs)
    assert cfg['pretrain']['path'].endswith('backbone.pt') and 0 <= cfg['pretrain']['val_top1'] <= 1
    # claims: 4 levels on the main cell, TAF on the others and the pretrained start, and the hypothesis
    claims = cfg['claims']
    whats = [c['what'] for c in claims]
    assert whats.count('TAF - control') == 1 + len(cfg['others']) + 2 and 'true-label seeds, TAF - control' in whats
    assert {'CE-based - control', '-C ++W - control', '++C -W - control'} <= set(whats)
    assert all(c['n'] == 1 and c['paper_effect'] > 0 for c in claims)
    assert not any('scratch start' in c['claim'] and c['claim'].startswith('TAF beats the control (permutation')
                   for c in claims)                                      # shown beside, claimed by sensitivity
    md = (figs / 'underfit.md').read_text()
    assert '## Calibration' in md and '**Main cell:' in md and '**Hypothesis**' in md and '2D pretraining' in md
    assert (figs / 'underfit.png').stat().st_size > 0

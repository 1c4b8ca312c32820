"""The benchmark-regime study end to end in the `smoke` profile (papermill): the baseline-recipe grid
(`baseline_recipe.ipynb`) and the regime / sensitivity notebook (`sensitivity.ipynb`)."""
import json

import pandas as pd


def test_baseline_recipe_smoke(tmp_path, papermill):
    papermill('baseline_recipe.ipynb', tmp_path / 'out.ipynb', '-p', 'profile', 'smoke', '-p', 'workers', '1',
              '-p', 'out_dir', str(tmp_path / 'fig'), '-p', 'runs_dir', str(tmp_path / 'runs'))
    df = pd.read_csv(tmp_path / 'fig' / 'baseline_recipe.csv')
    assert set(df.stage) == {1, 2, 3} and df.val_top1.between(0, 1).all() and df.test_top1.between(0, 1).all()
    meta = json.loads((tmp_path / 'fig' / 'baseline_recipe.meta.json').read_text())
    winner = meta['config']['winner']
    assert '**(selected)**' in (tmp_path / 'fig' / 'baseline_recipe.md').read_text()
    assert len(df[df.config == winner]) == 3                             # the winner ran 3 seeds


def test_sensitivity_smoke(tmp_path, papermill):
    store = tmp_path / 'store.json'
    papermill('sensitivity.ipynb', tmp_path / 'out.ipynb', '-p', 'profile', 'smoke',
              '-y', f'study_kw: {{workers: 1, store: "{store}"}}',
              '-p', 'out_dir', str(tmp_path / 'fig'), '-p', 'runs_dir', str(tmp_path / 'runs'))
    fig = tmp_path / 'fig'
    b, f = pd.read_csv(fig / 'sensitivity_baselines.csv'), pd.read_csv(fig / 'sensitivity.csv')
    assert set(b.regime) == {'permutation', 'keyframe-shortcut'}
    assert {'test', 'reversed', 'shuffled', 'gap'} <= set(b.columns)
    taf = f[(f.method == 'taf') & (f.factor == 'paper')]
    assert len(taf) == 2 and taf.vs_control.notna().all()
    assert set(f[f.factor == 'baseline'].level) == {'weak recipe', '20 clips/class'}
    md = (fig / 'sensitivity.md').read_text()
    assert '## Regimes' in md and 'keyframe-shortcut' in md and (fig / 'sensitivity.png').stat().st_size > 0

    # the store alone regenerates the tables: no runs folder, nothing trained
    papermill('sensitivity.ipynb', tmp_path / 'again.ipynb', '-p', 'profile', 'smoke',
              '-y', f'study_kw: {{train_missing: false, store: "{store}"}}',
              '-p', 'out_dir', str(tmp_path / 'fig2'), '-p', 'runs_dir', str(tmp_path / 'none'))
    assert not (tmp_path / 'none').exists()
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / 'fig2' / 'sensitivity.csv'), f)

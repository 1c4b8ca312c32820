"""A run configuration written by main before `TrainConfig` inherited `AdvSettings` (commit ac881f3) still loads,
is the same configuration, has the same flat dict, and keeps its result-store keys (`run_key`)."""
import dataclasses, json
from pathlib import Path

from taf.config import TrainConfig, config_from_dict, get_recipe
from taf.methods import AdvSettings
from taf.runs import run_key

OLD = Path(__file__).parent / 'data' / 'config_main_ac881f3.json'   # asdict(get_recipe('synthetic', seed=3, alpha=0.5))


def test_old_config_loads_as_the_same_config():
    d = json.loads(OLD.read_text())
    cfg = config_from_dict(d)
    assert cfg == get_recipe('synthetic', seed=3, alpha=0.5)
    assert isinstance(cfg, AdvSettings) and (cfg.alpha, cfg.seed, cfg.lr_steps) == (0.5, 3, (20, 40))
    # the same flat dict: same keys, same values (as JSON), only the order of the fields may differ
    assert json.loads(json.dumps(dataclasses.asdict(cfg))) == d


def test_adversarial_settings_declared_once():
    own = TrainConfig.__dataclass_fields__.keys() - AdvSettings.__dataclass_fields__.keys()
    assert {f.name for f in dataclasses.fields(AdvSettings)} <= {f.name for f in dataclasses.fields(TrainConfig)}
    assert not set(TrainConfig.__annotations__) & set(AdvSettings.__annotations__)   # not re-declared
    assert len(own) + 11 == len(dataclasses.fields(TrainConfig))


def test_run_keys_unchanged():
    "Keys computed with the pre-refactor code (taf.train.run_key at ac881f3)."
    cfg = config_from_dict(json.loads(OLD.read_text()))
    assert run_key(cfg) == '4a13840550a6591d'
    assert run_key(cfg, get_recipe('synthetic', method='taf', init='x.pt', steps=3)) == '5fc75cfaf7192ec7'

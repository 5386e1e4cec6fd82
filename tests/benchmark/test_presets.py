"""The study presets compose, validate, and sweep the budgets they declare."""

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from medprivbench.benchmark import preflight as pf
from medprivbench.benchmark.config import register_configs
from medprivbench.benchmark.validate import validate_config

CONFIGS = str(Path(__file__).resolve().parents[2] / "configs")
PRESETS = sorted(p.stem for p in Path(CONFIGS, "experiment").glob("*.yaml") if p.stem != "ziller2024")


def test_there_is_a_preset_per_real_dataset():
    assert {"pneumoniamnist", "breastmnist", "adrenalmnist3d"} <= set(PRESETS)


@pytest.mark.parametrize("name", PRESETS)
def test_preset_selects_its_dataset_full_sizing_and_budgets(name):
    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        cfg = compose("config", overrides=[f"experiment={name}"], return_hydra_config=True)
    GlobalHydra.instance().clear()
    assert cfg.dataset.name == name
    assert cfg.membership.num_models == 16 and cfg.train.epochs == 40 and cfg.train.nonprivate.augmult == 1
    assert str(cfg.hydra.sweeper.params["privacy.epsilon"]).split(",") == ["1", "2", "8", "1e3", "1e6", "inf"]
    validate_config(cfg)


def test_ziller2024_runs_the_server_attacks_on_pneumoniamnist_up_to_1e18(monkeypatch):
    """Ziller et al. 2024's experiment: imprint and gradient inversion, no membership attacks, ε up to 1e18."""
    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        cfg = compose("config", overrides=["experiment=ziller2024"], return_hydra_config=True)
    GlobalHydra.instance().clear()
    assert cfg.dataset.name == "pneumoniamnist" and list(cfg.attack) == ["gradient_inversion", "imprint"]
    assert cfg.attack.gradient_inversion.iterations == 3000 and cfg.attack.imprint.n_batches == 4  # full strength
    assert str(cfg.hydra.sweeper.params["privacy.epsilon"]).split(",") == [
        "1", "8", "1e3", "1e6", "1e9", "1e12", "1e15", "1e18", "inf"]
    assert list(cfg.privacy.references) == ["same_recipe", "tuned"]
    validate_config(cfg)
    seen = []
    monkeypatch.setattr(pf, "_training_size", lambda cfg, cache: (4708, 2))
    import medprivbench.benchmark.validate as v
    real = v.validate_with_data
    monkeypatch.setattr(v, "validate_with_data", lambda cfg, n: (real(cfg, n), seen.append(float(cfg.privacy.epsilon))))
    assert pf.preflight(["experiment=ziller2024"], CONFIGS) == 9  # every budget reachable, up to 1e18
    assert seen[-2:] == [1e18, float("inf")]


def test_preflight_sees_the_budgets_a_preset_declares(monkeypatch):
    seen = []
    monkeypatch.setattr(pf, "_training_size", lambda cfg, cache: (1000, 2))
    import medprivbench.benchmark.validate as v
    monkeypatch.setattr(v, "validate_with_data", lambda cfg, n: seen.append(float(cfg.privacy.epsilon)))
    assert pf.preflight(["experiment=breastmnist"], CONFIGS) == 6
    assert seen == [1.0, 2.0, 8.0, 1e3, 1e6, float("inf")]

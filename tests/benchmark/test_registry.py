"""One attack, one place: a new attack is one module, one config file and one registry entry.

The test plays a contributor who adds a "random guess" membership attack: its scoring function
(what would be attacks/random_guess.py), its config (configs/attack/random_guess.yaml, here written
to a folder on Hydra's search path) and one registered class. No other engine file is edited, yet
validation, the experiment, the run record, the table and the report all pick it up; its AUC
comes out at chance.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from medprivbench.attacks import membership
from medprivbench.attacks.settings import Validated, integer
from medprivbench.benchmark import registry, store
from medprivbench.benchmark.callbacks import finish_sweeps
from medprivbench.benchmark.config import register_configs
from medprivbench.benchmark.errors import ConfigError
from medprivbench.benchmark.families import FAMILIES
from medprivbench.benchmark.experiment import run_experiment
from medprivbench.benchmark.membership_run import MembershipAttack
from medprivbench.benchmark.paths import CONFIG_DIR
from medprivbench.benchmark.validate import validate_config, validate_with_data

from ..conftest import TINY


# --- the new module (attacks/random_guess.py): pure, no engine import ------------------------
@dataclass
class RandomGuessConfig(Validated):
    """Scores drawn at random: the attack that knows nothing."""

    salt: int = integer(0, 0)


def random_guess(target_logits, labels, reference_logits, reference_member, population, *, salt=0):  # noqa: ANN001, ANN201
    return np.random.default_rng([salt, len(labels)]).random(len(labels))


# --- the new config file ---------------------------------------------------------------------
CONFIG = """# @package attack.random_guess
defaults:
  - random_guess_schema@_here_
  - _self_
salt: 3
"""


@pytest.fixture
def random_guess_attack(tmp_path):
    membership.register_scorer("random_guess", uses_references=False)(random_guess)

    # --- the one registry entry
    @registry.register_attack
    class RandomGuess(MembershipAttack):
        name, schema, label, shadows = "random_guess", RandomGuessConfig, "random guess", False
        threat_model = "none: the attacker flips coins"

        def scorers(self, ctx, settings):
            return {"random_guess": ("random_guess", {"salt": settings.salt})}

    extra = tmp_path / "extra" / "attack"
    extra.mkdir(parents=True)
    (extra / "random_guess.yaml").write_text(CONFIG)
    yield tmp_path / "extra"
    registry.unregister("random_guess")
    membership.SCORERS.pop("random_guess")


def _compose(overrides: list[str]):
    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose("config", overrides=overrides)


@pytest.mark.slow
def test_a_new_attack_needs_one_module_one_config_and_one_entry(random_guess_attack, tmp_path):
    overrides = [o for o in TINY if not o.startswith(("attack", "membership"))]
    cfg = _compose([*overrides, "attack=[loss,random_guess]", "membership.num_models=3", f"results_root={tmp_path}",
                    f"hydra.searchpath=[file://{random_guess_attack}]", "privacy.epsilon=inf"])
    validate_config(cfg)
    validate_with_data(cfg, 300)
    assert registry.settings_of(cfg, "random_guess").salt == 3  # the YAML's value, typed by the schema
    outcome = run_experiment(cfg)
    record = json.loads((outcome.run_dir / store.METRICS).read_text())
    metrics = record["attacks"]["random_guess"]["variants"]["random_guess"]
    # where the run's time went: each stage once, the attacks' in run order; together at most the run's wall time
    timings = record["timings_s"]
    assert list(timings) == ["setup", "target", "attack:loss", "attack:random_guess", "protocols", "membership_pool"]
    assert all(t >= 0 for t in timings.values())
    assert sum(v for k, v in timings.items() if k != "membership_pool") <= record["wall_time_s"]
    assert timings["membership_pool"] <= timings["attack:loss"]  # the first membership attack trains the shared pool
    assert abs(metrics["auc"] - 0.5) < 0.05 and metrics["auc_ci"][0] < 0.5 < metrics["auc_ci"][1]
    finish_sweeps([outcome.sweep_dir])
    table = store.aggregate(outcome.sweep_dir)
    assert table["mia_random_guess_auc"].iloc[0] == metrics["auc"]
    md = (outcome.sweep_dir / "report.md").read_text()
    assert "random guess" in md
    assert f"| time per stage (s; attacks include what they share, e.g. the pool) | setup {timings['setup']:.0f}, target " in md


def test_registered_settings_are_validated_from_their_schema(random_guess_attack, tmp_path):
    cfg = _compose(["attack=[random_guess]", f"hydra.searchpath=[file://{random_guess_attack}]", "attack.random_guess.salt=-1"])
    with pytest.raises(ConfigError, match=r"attack\.random_guess\.salt=-1 is not valid; use a whole number ≥ 0"):
        validate_config(cfg)


def test_every_attack_config_file_has_a_registry_entry_and_back():
    files = {p.stem for p in (CONFIG_DIR / "attack").glob("*.yaml")}
    assert files == set(registry.load())
    for name, entry in registry.ATTACKS.items():
        assert entry.label and entry.threat_model and entry.family is FAMILIES[entry.family.key]
        defaults = entry.settings_schema()
        assert isinstance(defaults, entry.schema) or defaults is entry.schema


def test_every_attack_declares_one_of_the_threat_models():
    from medprivbench.benchmark.threats import THREAT_MODELS

    keys = {name: entry.threat for name, entry in registry.load().items()}
    assert set(keys.values()) == set(THREAT_MODELS)  # every threat model has an attack, every attack one threat model
    assert keys["imprint"] == "malicious_server" and keys["whitebox"] == keys["audit"] == "worst_case_audit"
    class NoThreat(MembershipAttack):
        name, schema, label, threat, threat_model = "no_threat", RandomGuessConfig, "x", "server", "x"

    with pytest.raises(ValueError, match="threat='server'; expected one of black_box"):
        registry.register_attack(NoThreat)
    assert "no_threat" not in registry.ATTACKS

    class NoFamily(registry.Attack):
        name, schema, label, family, threat, threat_model = "no_family", RandomGuessConfig, "x", "membership", "black_box", "x"

    with pytest.raises(ValueError, match="family='membership'; expected a registered family"):
        registry.register_attack(NoFamily)


@pytest.mark.slow
def test_the_non_private_point_trains_one_run_per_reference(tmp_path):
    overrides = [o for o in TINY if not o.startswith(("attack", "membership", "privacy.references"))]
    cfg = _compose([*overrides, "attack=[]", f"results_root={tmp_path}", "privacy.epsilon=inf"])
    validate_config(cfg)
    outcome = run_experiment(cfg)
    recs = {r["privacy"]["reference"]: r for _, r in store.iter_complete_runs(outcome.sweep_dir)}
    assert set(recs) == {"same_recipe", "tuned"}
    assert recs["same_recipe"]["train"]["optimizer"] == cfg.train.optimizer
    assert recs["tuned"]["train"]["optimizer"] == cfg.train.nonprivate.optimizer
    assert recs["same_recipe"]["run_id"] != recs["tuned"]["run_id"]
    assert run_experiment(cfg).skipped  # resumes: both are complete
    only = _compose([*overrides, "attack=[]", f"results_root={tmp_path / 'one'}", "privacy.epsilon=inf",
                     "privacy.references=[same_recipe]"])
    assert [r["privacy"]["reference"] for _, r in store.iter_complete_runs(run_experiment(only).sweep_dir)] == ["same_recipe"]

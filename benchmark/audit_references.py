"""Reference models for ``medprivbench-audit``: offline LiRA and RMIA on a model trained elsewhere.

The loss attack needs nothing but the audited model's outputs, and it is the weakest membership
attack. LiRA (Carlini et al., "Membership Inference Attacks From First Principles", IEEE S&P 2022)
and RMIA (Zarifzadeh, Liu, Shokri, "Low-Cost High-Power Membership Inference Attacks", ICML 2024)
compare the audited model's confidence on each candidate with that of reference models which did
not train on it. Here the auditor trains K such models itself:

- the candidates are the images audited (the dataset's training split, with the test split when
  every training image was a member); reference k trains on a random half of them, each candidate
  in its training set independently with probability ½ (benchmark/shadow.py ``draw_membership``),
  from its own random streams ``Streams(seed).of("reference", k)`` (benchmark/streams.py);
- with the stated recipe (``--recipe``: the sweep's configuration with ``train.*`` and
  ``privacy.*`` overrides, validated as a sweep's point is). q and T are those of the recipe on
  the audited model's member set; a reference on its half keeps them, as the sweep's pool does;
- offline: a candidate's score uses only the references that did not train on it (LiRA's OUT
  Gaussian, with one global variance below 64 references as the sweep's ``variance=auto``; RMIA's
  offline approximation of Pr(x)), and RMIA's population is a split none of the models saw (the
  validation split, else the test split; never the candidates).

Nothing else about the audited model's training is assumed known: its member set enters only the
metrics. The recipe is the auditor's guess; a recipe far from the real one weakens both attacks,
and the output says so (:data:`RECIPE_NOTE`). Scoring is ``medprivbench.attacks.membership``'s
:func:`~medprivbench.attacks.membership.score_target`; the metrics are the loss attack's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from medprivbench.attacks import membership
from medprivbench.attacks.lira import fixed_variance_for

from .errors import ConfigError
from .recipe import DPRecipe, effective_train, make_recipe
from .shadow import PoolResult, train_pool
from .streams import Streams

# LiRAConfig's variance="auto" (the sweep's rule): one global variance below this many references
RECIPE_PREFIXES = ("train.", "privacy.")
NOT_RECIPE = ("train.nonprivate", "privacy.reference")  # the references train with train.* at every ε

THREAT_MODEL = ("black box: the audited model's logits on each candidate image (and its horizontal flip) and on "
                "held-out population images; reference models the auditor trains with the stated recipe on random "
                "halves of the candidates; offline: each candidate is scored with the references that did not train "
                "on it")
RECIPE_NOTE = ("The reference models follow the stated recipe (--recipe), not the unknown one that trained the audited "
               "model; the further the stated recipe is from the real one (optimiser, epochs, learning rate, batch "
               "size, augmentation, DP noise), the weaker LiRA and RMIA become, and the looser the lower bound their "
               "results put on what the model leaks.")


@dataclass(frozen=True)
class AuditAttack:
    """A membership attack of the audit: its scoring function (a key of ``membership.SCORERS``)."""

    name: str
    title: str  # a few words, for the printed lines
    label: str  # the attack with its paper and its score, for the tables
    scorer: str
    options_for: Callable[[int], dict] = lambda n_references: {}  # the scorer's options, given K references

    @property
    def uses_references(self) -> bool:
        return membership.SCORERS[self.scorer].uses_references

    @property
    def uses_population(self) -> bool:
        return membership.SCORERS[self.scorer].uses_population


_RMIA = membership.RMIAConfig()
AUDIT_ATTACKS: dict[str, AuditAttack] = {a.name: a for a in (
    AuditAttack("loss", "loss attack", "loss threshold (Yeom et al. 2018): score = −loss", "loss"),
    AuditAttack("lira", "offline LiRA", "offline LiRA (Carlini et al. 2022): one-sided test against the OUT references' Gaussian",
                "lira_offline", lambda n_references: {"fixed_variance": fixed_variance_for("auto", n_references)}),
    AuditAttack("rmia", "offline RMIA", "offline RMIA (Zarifzadeh et al. 2024): likelihood ratio against a held-out population",
                "rmia", lambda n_references: {"online": False, "offline_a": _RMIA.offline_a, "gamma": _RMIA.gamma}),
)}


def check_attacks(requested: Sequence[str] | None, n_references: int | None) -> None:
    """``--attacks`` names known attacks, and those that need reference models have them."""
    for name in requested or ():
        if name not in AUDIT_ATTACKS:
            raise ConfigError(f"--attacks {name} is not valid; choose from {', '.join(AUDIT_ATTACKS)}")
        if AUDIT_ATTACKS[name].uses_references and not n_references:
            raise ConfigError(f"--attacks {name} needs reference models: add --reference-models K (and the recipe that "
                              "trained the model, --recipe train.…=… privacy.…=…), or audit with --attacks loss")


def attacks_to_run(requested: Sequence[str] | None, n_references: int | None,
                   population: str | None) -> tuple[list[str], dict[str, str]]:
    """The attacks to run, and why any of the default ones cannot (no references, no population).

    The default is every attack the inputs allow; an attack asked for by name that cannot run is an error.
    """
    run, not_run = [], {}
    for name, attack in AUDIT_ATTACKS.items():
        if requested is not None and name not in requested:
            continue
        if attack.uses_references and not n_references:
            not_run[name] = "needs reference models (--reference-models K)"
        elif attack.uses_population and population is None:
            not_run[name] = "needs a held-out population split (validation or test) that is not among the candidates"
        else:
            run.append(name)
    if requested is not None and not_run:
        name, reason = next(iter(not_run.items()))
        raise ConfigError(f"--attacks {name} cannot run here: it {reason}")
    return run, not_run


def compose_recipe(overrides: Sequence[str], model: dict) -> DictConfig:
    """The reference models' recipe: the sweep's configuration composed with ``overrides``
    (``train.*`` and ``privacy.*`` settings) and validated as a sweep's point is. ``model`` is the
    audited model's architecture (a ``ModelConfig`` as a dict); raises ConfigError (one line)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from .preflight import compose_point
    from .validate import validate_recipe

    parser = OverridesParser.create()
    for override in overrides:
        key = override.lstrip("+~").partition("=")[0]
        if not key.startswith(RECIPE_PREFIXES) or key.startswith(NOT_RECIPE):
            raise ConfigError(f"--recipe {override}: the recipe takes train.* and privacy.* settings (not "
                              "train.nonprivate.* or privacy.reference*); the architecture is --model/--width")
        try:
            sweep = parser.parse_override(override).is_sweep_override()
        except Exception:  # noqa: BLE001 - a malformed override: compose_point below words the error
            sweep = False
        if sweep:
            raise ConfigError(f"--recipe {override} is a sweep; give one value per setting (the recipe of one training run)")
    cfg = compose_point([*overrides, "privacy.references=[same_recipe]"])
    cfg.model = OmegaConf.merge(cfg.model, model)
    validate_recipe(cfg)
    return cfg


def recorded_recipe(folder) -> list[str]:
    """The ``train.*`` and ``privacy.*`` settings of a recorded run (its ``config.yaml``, as every run
    folder of a sweep holds it) as ``--recipe`` overrides: the references then train as that run did."""
    from pathlib import Path

    path = Path(folder).expanduser() / "config.yaml"
    if not path.is_file():
        raise ConfigError(f"--recipe-from {folder}: no config.yaml there; give a run folder of a sweep "
                          "(<sweep>/runs/<run>/), which records its configuration")
    try:
        recorded = OmegaConf.to_container(OmegaConf.load(path), resolve=False)  # YAML only: nothing is executed
    except Exception as exc:  # noqa: BLE001 - any reader failure is the file's fault here
        raise ConfigError(f"--recipe-from {folder}: config.yaml is not readable YAML ({type(exc).__name__})") from None
    if not isinstance(recorded, dict) or not isinstance(recorded.get("train"), dict) \
            or not isinstance(recorded.get("privacy"), dict):
        raise ConfigError(f"--recipe-from {folder}: config.yaml has no train and privacy settings; is it a run's?")
    train = dict(recorded["train"])
    if recorded["privacy"].get("reference") == "tuned":  # that run trained with the non-private recipe's settings
        train.update({k: v for k, v in (train.get("nonprivate") or {}).items() if v is not None})
    overrides = []
    for section, settings in (("train", train), ("privacy", recorded["privacy"])):
        for key, value in settings.items():
            if f"{section}.{key}".startswith(NOT_RECIPE) or isinstance(value, dict):
                continue
            overrides.append(f"{section}.{key}={_override_value(value)}")
    return overrides


def _override_value(value) -> str:
    """A recorded value as Hydra override text (lists as [a,b], None as null, floats as written)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_override_value(v) for v in value) + "]"
    return repr(value) if isinstance(value, float) else str(value)


def recipe_for(cfg: DictConfig, n_members: int) -> tuple[DPRecipe, dict]:
    """The DP recipe (σ, q, T, C) of the stated recipe on the audited model's ``n_members``
    training images, and its training settings; checked against that size first."""
    from .validate import validate_recipe_with_data

    validate_recipe_with_data(cfg, n_members)
    epsilon = float(cfg.privacy.epsilon)
    return make_recipe(cfg.privacy, cfg.train, n_members), effective_train(cfg.train, epsilon, None)


def describe_recipe(recipe: DPRecipe, hp: dict) -> str:
    """The recipe in one line: DP-SGD's σ, q, T, C (or none), and the optimiser's settings."""
    dp = (f"DP-SGD ε={recipe.epsilon_target:g} σ={recipe.noise_multiplier:.4g} q={recipe.sample_rate:.4g} "
          f"T={recipe.steps} C={recipe.max_grad_norm:g}" if recipe.private else f"without DP, T={recipe.steps} steps")
    return (f"{dp}; {hp['optimizer']} lr={hp['lr']:g} {hp['lr_schedule']}, {hp['epochs']} epochs of expected batch "
            f"{hp['batch_size']}, augmult {hp['augmult']}")


@dataclass(frozen=True)
class ReferenceData:
    """What the reference models train on and are queried with: the candidates (x, y), the
    population split none of them sees (x, y), and the test split for their accuracy."""

    x: np.ndarray
    y: np.ndarray
    population_x: np.ndarray
    population_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray


def train_references(*, model: dict, image: dict, data: ReferenceData, recipe: DPRecipe, hp: dict, grad_sample_mode: str,
                     n_references: int, queries: list[str], seed: int, device, progress=None) -> PoolResult:
    """Train the K reference models, reference k from ``Streams(seed).of("reference", k)`` on a random
    half of the candidates, and query each on the candidates and the population (benchmark/shadow.py).

    ``image``: in_channels, n_classes, image_size and spatial_dims of the audited model.
    """
    from .experiment import ModelBuilder

    build = ModelBuilder(model, image["in_channels"], image["n_classes"], image["image_size"], image["spatial_dims"])
    return train_pool(
        build=build, x=torch.from_numpy(data.x), y=torch.from_numpy(data.y), x_test=torch.from_numpy(data.test_x),
        y_test=data.test_y, x_population=torch.from_numpy(data.population_x), y_population=data.population_y,
        recipe=recipe, hp=hp, grad_sample_mode=grad_sample_mode, num_models=n_references, queries=queries,
        streams=Streams(seed), device=device, progress=progress, role="reference",
    )


def reference_scores(name: str, target_logits: np.ndarray, target_population_logits: np.ndarray, labels: np.ndarray,
                     references: PoolResult) -> np.ndarray:
    """Attack ``name``'s score of every candidate against the audited model (higher = more likely a member).

    ``target_logits`` (N, A, K) and ``target_population_logits`` (P, A, K) are the audited model's
    logits under the references' queries; the references' membership, never the model's, enters.
    """
    attack = AUDIT_ATTACKS[name]
    return membership.score_target(
        attack.scorer, target_logits, labels, references.logits, references.member,
        target_population_logits=target_population_logits, reference_population_logits=references.population_logits,
        population_labels=references.population_labels, **attack.options_for(references.num_models),
    )


def references_record(cfg: DictConfig, overrides: Sequence[str], recipe: DPRecipe, hp: dict, references: PoolResult,
                      population: str | None, n_candidates: int, seed: int) -> dict:
    """What audit.json says about the reference models: how they were made, and the caveat."""
    return {
        "count": references.num_models, "recipe_overrides": list(overrides), "recipe": recipe.to_record(), "train": hp,
        "model": OmegaConf.to_container(cfg.model, resolve=True), "queries": list(references.queries), "seed": seed,
        "trained_on": f"random halves of the {n_candidates} candidates (each in a reference's training set with "
                      "probability 1/2)",
        "population": population, "test_accuracy": [float(a) for a in references.test_accuracy],
        "wall_time_s": references.wall_time_s, "threat_model": THREAT_MODEL, "note": RECIPE_NOTE,
    }


def model_dict(name: str, width: int) -> dict:
    """The audited model's architecture as the audit builds it: the registry's ``name`` at ``width``."""
    from .config import ModelConfig

    return asdict(ModelConfig(name=name, width=width))

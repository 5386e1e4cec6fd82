"""The attack registry: one entry per attack, holding everything the engine knows about it.

Opacus registers one per-sample-gradient function per layer type; breaching keeps tables of
interchangeable parts keyed by name. Here one :class:`AttackSpec` per attack holds its name (the
``attack=[…]`` name and ``configs/attack/<name>.yaml``), its settings schema (the attack's own
dataclass, registered in Hydra's ConfigStore so the YAML is typed), its threat model in words, the
function that runs it on a trained run, the table columns it produces, its report label and the
checks that need more than its own settings. Validation (benchmark/validate.py), the experiment
(benchmark/experiment.py), the run record (benchmark/record.py) and the report loop over
:data:`ATTACKS`; no other engine code names an attack.

Adding an attack: a pure module in ``attacks/`` (arrays and models in, scores, images or bounds
out), a config ``configs/attack/<name>.yaml`` (``defaults: [<name>_schema@_here_, _self_]``) and
one :func:`register` call in an engine module listed in :data:`ENTRY_MODULES` (the attack modules
themselves never import the engine).

Every ``run`` has one calling shape: ``run(ctx, settings) -> dict``, with ``ctx`` the trained
run (benchmark/experiment.py's ``Context``: data, recipe, target model, streams, shared
protocols such as the membership pool) and ``settings`` an instance of ``schema``. The result is
JSON-friendly and holds ``threat_model``; ``columns(name, result)`` flattens it into table columns.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, fields
from typing import Any, Callable

from omegaconf import OmegaConf

from .errors import ConfigError
from .threats import THREAT_MODELS

# Engine modules whose import registers attacks (in this order, which is also the run order).
ENTRY_MODULES = ("membership_run", "audit_run", "reconstruction_run")
# What an attack's result is about, and so how the run record and the report present it:
# membership inference (per-variant ROC metrics), audits (ε lower bounds from canaries), image
# reconstruction (PSNR/SSIM/ReRo@η), and games of an informed adversary against the ReRo bound.
FAMILIES = ("membership", "audit", "reconstruction", "prior_aware")


def _no_check(*args: Any) -> None:
    return None


@dataclass(frozen=True)
class AttackSpec:
    name: str
    schema: type
    label: str
    family: str
    threat_model: str
    run: Callable[[Any, Any], dict]
    columns: Callable[[str, dict], dict]
    # sub-results a run produces, by key → report label (LiRA: online and offline); default {name: label}
    variants: Callable[[Any], dict[str, str]] | None = None
    check: Callable[[Any, Any], None] = _no_check  # (settings, cfg): rules involving other settings
    check_data: Callable[[Any, Any, int], None] = _no_check  # (settings, cfg, n_train)
    lower_bounds: Callable[[Any], int] = lambda settings: 0  # ε lower bounds it computes (they share α)
    checkpoints: Callable[[Any], int] = lambda settings: 0  # model states of the target's training it needs
    # something that joins the target's training (gradient canaries): instrument(ctx, settings),
    # built before the target trains and found by ``run`` in ``ctx.instruments[name]``
    instrument: Callable[[Any, Any], Any] | None = None
    # the schema's instance whose values are the attack's defaults, where they differ from the
    # schema's own (a variant such as DLG: the gradient-inversion schema with Zhu et al.'s settings)
    defaults: Any = None
    # the adversary, one key of benchmark/threats.py THREAT_MODELS: the report's verdicts are per threat model
    threat: str = ""

    def settings_schema(self) -> Any:
        return self.defaults if self.defaults is not None else self.schema

    def variant_labels(self, settings: Any) -> dict[str, str]:
        return self.variants(settings) if self.variants is not None else {self.name: self.label}


ATTACKS: dict[str, AttackSpec] = {}


def register(spec: AttackSpec) -> AttackSpec:
    """Add ``spec`` to the registry and its schema to Hydra's ConfigStore (as ``attack/<name>_schema``)."""
    from hydra.core.config_store import ConfigStore

    if spec.name in ATTACKS:
        raise ValueError(f"attack {spec.name!r} is already registered")
    if spec.family not in FAMILIES:
        raise ValueError(f"family={spec.family!r}; expected one of {', '.join(FAMILIES)}")
    if spec.threat not in THREAT_MODELS:
        raise ValueError(f"attack {spec.name!r}: threat={spec.threat!r}; expected one of {', '.join(THREAT_MODELS)}")
    ATTACKS[spec.name] = spec
    ConfigStore.instance().store(group="attack", name=f"{spec.name}_schema", node=spec.settings_schema())
    return spec


def unregister(name: str) -> None:
    """Remove an attack (tests that register one of their own clean up with this)."""
    ATTACKS.pop(name, None)


def load() -> dict[str, AttackSpec]:
    """Import the engine modules that register attacks; returns the registry."""
    for module in ENTRY_MODULES:
        importlib.import_module(f"{__package__}.{module}")
    return ATTACKS


def spec(name: str) -> AttackSpec:
    load()
    if name not in ATTACKS:
        raise ConfigError(f"attack {name!r} is not valid; choose from {', '.join(sorted(ATTACKS))}")
    return ATTACKS[name]


def label(key: str) -> str:
    """The report label of an attack or of one of its variants (e.g. 'lira_online')."""
    load()
    for entry in ATTACKS.values():
        if key == entry.name:
            return entry.label
        if entry.variants is not None:
            defaults = entry.defaults if entry.defaults is not None else entry.schema()
            for variant, text in entry.variants(defaults).items():
                if variant == key:
                    return text
    return key.replace("_", " ")


def selected(cfg) -> list[str]:
    """The selected attacks (``attack=[…]``) in registry order."""
    load()
    chosen = list(cfg.attack.keys()) if cfg.get("attack") else []
    for name in chosen:
        spec(name)
    return [name for name in ATTACKS if name in chosen]


def settings_of(cfg, name: str) -> Any:
    """The typed settings of one selected attack: an instance of its schema, every declared
    constraint and cross-field rule checked (unknown keys rejected), or one ConfigError line."""
    schema = spec(name).schema
    # resolved in place, so that interpolations such as ${sizing.inversion_images} see the whole config
    raw = OmegaConf.to_container(cfg.attack[name], resolve=True) if cfg.attack[name] is not None else {}
    known = {f.name for f in fields(schema)}
    unknown = [k for k in raw if k not in known]
    if unknown:
        raise ConfigError(f"attack.{name}.{unknown[0]} is not a setting of attack {name!r}; valid: {', '.join(sorted(known)) or 'none'}")
    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(spec(name).settings_schema()), raw))
    except Exception as exc:  # the schema's own checks (attacks/settings.py) and omegaconf's type errors
        raise ConfigError(f"attack.{name}.{str(exc).splitlines()[0]}") from exc


def selected_settings(cfg) -> dict[str, Any]:
    return {name: settings_of(cfg, name) for name in selected(cfg)}


def lower_bound_count(settings: dict[str, Any]) -> int:
    """How many ε lower bounds the selected attacks compute: the run's α is divided among them."""
    return sum(ATTACKS[name].lower_bounds(s) for name, s in settings.items())

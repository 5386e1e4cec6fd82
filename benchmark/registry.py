"""The attack registry: one entry per attack, holding everything the engine knows about it.

Opacus registers one per-sample-gradient function per layer type with a decorator where it is
defined (``register_grad_sampler``); here each attack is a small :class:`Attack` subclass
registered with :func:`register_attack` where it is defined (benchmark/membership_run.py,
audit_run.py, reconstruction_run.py). Its class attributes say what it is: its name (the
``attack=[…]`` name and ``configs/attack/<name>.yaml``), its settings schema (the attack's own
dataclass, registered in Hydra's ConfigStore so the YAML is typed), its report label, its family
(benchmark/families: how its results are tabled, judged against chance and reported), its threat
model (a key of benchmark/threats.py, and the attacker's view in words); its methods what it does:
``run(ctx, settings)`` returns a typed result of its family, and the checks that need more than its
own settings. Validation, the experiment, the run summary and the report loop over
:data:`ATTACKS`; no other engine code names an attack.

Adding an attack: a pure module in ``attacks/`` (arrays and models in, scores, images or bounds
out), a config ``configs/attack/<name>.yaml`` (``defaults: [<name>_schema@_here_, _self_]``) and
one decorated class in an engine module (the attack modules themselves never import the engine).
Adding a family: one module with a registered :class:`~benchmark.families.base.Family`.

Run order: by family rank (membership, the privacy tail, audits, the informed adversary, reconstruction; see each
family's ``rank``), then in the order the attacks were registered. It is also the order of the
sweep table's columns and of the report's sections. No result depends on it: every attack draws
from random streams of its own (benchmark/streams.py), and the membership pool is built by
whichever membership attack runs first.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any, ClassVar

from omegaconf import OmegaConf

from .errors import ConfigError
from .families import FAMILIES, AttackResult, Family
from .threats import THREAT_MODELS


class Attack:
    """One attack: what it is (class attributes) and what it does (methods). Subclass, set the
    attributes, override :meth:`run` and whichever checks apply, and decorate with :func:`register_attack`."""

    name: ClassVar[str]
    schema: ClassVar[type]  # the settings dataclass (attacks/settings.py helpers declare each constraint)
    label: ClassVar[str]  # the report's name for it
    family: ClassVar[Family]
    threat: ClassVar[str]  # the adversary, a key of benchmark/threats.py THREAT_MODELS
    threat_model: ClassVar[str]  # what this attacker sees, in words (recorded with each result)
    # the schema's instance whose values are the attack's defaults, where they differ from the
    # schema's own (a variant such as DLG: the gradient-inversion schema with Zhu et al.'s settings)
    defaults: ClassVar[Any] = None
    # something that joins the target's training (gradient canaries), or None: a method
    # ``instrument(ctx, settings)``, called before the target trains; ``run`` finds what it
    # returned in ``ctx.instruments[name]``
    instrument: ClassVar[Any] = None

    def run(self, ctx, settings) -> AttackResult:
        """Attack the trained run ``ctx`` (benchmark/experiment.py's ``Context``) with ``settings``."""
        raise NotImplementedError

    def variants(self, settings) -> dict[str, str]:
        """The sub-results a run produces, by key → report label (LiRA: online and offline)."""
        return {self.name: self.label}

    def check(self, settings, cfg) -> None:
        """Rules involving other settings than the attack's own (raise ConfigError)."""

    def check_data(self, settings, cfg, n_train: int) -> None:
        """Rules that need the size of the training set."""

    def lower_bounds(self, settings) -> int:
        """How many ε lower bounds the attack computes (the run's α is divided among all of them)."""
        return 0

    def checkpoints(self, settings) -> int:
        """How many model states of the target's training the attack needs."""
        return 0

    def settings_schema(self) -> Any:
        return self.defaults if self.defaults is not None else self.schema

    def variant_labels(self, settings) -> dict[str, str]:
        return self.variants(settings)

    def every_variant(self) -> dict[str, str]:
        """Every variant key the attack can produce, with its label (for reading records back)."""
        return self.variants(self.defaults if self.defaults is not None else self.schema())

    def read(self, data) -> AttackResult:
        """The typed result of a recorded result (its family's result class)."""
        return self.family.read(data)


ATTACKS: dict[str, Attack] = {}
_REGISTERED: list[str] = []  # registration order, the tie-break of the run order


def register_attack(cls: type[Attack]) -> type[Attack]:
    """Class decorator: add one instance of ``cls`` to the registry (in run order) and its settings
    schema to Hydra's ConfigStore (as ``attack/<name>_schema``)."""
    from hydra.core.config_store import ConfigStore

    entry = cls()
    name = getattr(entry, "name", "")
    if not name:
        raise ValueError(f"attack class {cls.__name__} has no name")
    if name in ATTACKS and type(ATTACKS[name]).__qualname__ != cls.__qualname__:
        raise ValueError(f"attack {name!r} is already registered")
    family = getattr(entry, "family", None)
    if not isinstance(family, Family) or FAMILIES.get(family.key) is not family:
        raise ValueError(f"attack {name!r}: family={family!r}; expected a registered family ({', '.join(FAMILIES)})")
    if entry.threat not in THREAT_MODELS:
        raise ValueError(f"attack {name!r}: threat={entry.threat!r}; expected one of {', '.join(THREAT_MODELS)}")
    if name not in _REGISTERED:
        _REGISTERED.append(name)
    ATTACKS[name] = entry
    ordered = sorted(ATTACKS.values(), key=lambda a: (a.family.rank, _REGISTERED.index(a.name)))
    ATTACKS.clear()
    ATTACKS.update((a.name, a) for a in ordered)
    ConfigStore.instance().store(group="attack", name=f"{name}_schema", node=entry.settings_schema())
    return cls


def unregister(name: str) -> None:
    """Remove an attack (tests that register one of their own clean up with this)."""
    ATTACKS.pop(name, None)
    if name in _REGISTERED:
        _REGISTERED.remove(name)


def load() -> dict[str, Attack]:
    """The registry, with the built-in attacks registered (their modules register them on import)."""
    from . import audit_run, membership_run, reconstruction_run  # noqa: F401

    return ATTACKS


def spec(name: str) -> Attack:
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
        for variant, text in entry.every_variant().items():
            if variant == key:
                return text
    return key.replace("_", " ")


def selected(cfg) -> list[str]:
    """The selected attacks (``attack=[…]``) in run order."""
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


def read_results(attacks: dict) -> dict[str, AttackResult]:
    """A run's attack results (record form or typed), typed, in run order; names not registered are left out."""
    load()
    return {name: ATTACKS[name].read(attacks[name]) for name in ATTACKS if name in (attacks or {})}

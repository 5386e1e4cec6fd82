"""Validation of a run configuration, once, where it enters (scikit-learn's habit).

``validate_config`` checks everything that needs no data; ``validate_with_data`` what needs the
training-set size. Each failure is a :class:`ConfigError` whose message is one line naming the
bad value and what would be valid. The experiment calls both before it trains anything, and the
command line calls them for every point of a sweep before the first job starts
(benchmark/preflight.py).
"""

from __future__ import annotations

import math
import re
from dataclasses import fields

from omegaconf import OmegaConf

from .config import (
    AuditAttackConfig,
    GradientInversionAttackConfig,
    ImprintAttackConfig,
    LiRAAttackConfig,
    LossAttackConfig,
    PriorAwareAttackConfig,
    RMIAAttackConfig,
    is_private,
)
from .errors import ConfigError

ATTACK_SCHEMAS = {
    "loss": LossAttackConfig,
    "lira": LiRAAttackConfig,
    "rmia": RMIAAttackConfig,
    "audit": AuditAttackConfig,
    "prior_aware": PriorAwareAttackConfig,
    "gradient_inversion": GradientInversionAttackConfig,
    "dlg": GradientInversionAttackConfig,
    "imprint": ImprintAttackConfig,
}
RECONSTRUCTION_ATTACKS = ("gradient_inversion", "dlg", "imprint")
MEMBERSHIP_ATTACKS = ("loss", "lira", "rmia")


def register_attack_schema(name: str, schema) -> None:
    """Attack modules register their config dataclass here (name = the attack/<name>.yaml file)."""
    ATTACK_SCHEMAS[name] = schema


def _number(value, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{key}={value!r} is not a number")
    if math.isnan(value):
        raise ConfigError(f"{key}=nan is not a number")
    return float(value)


def _positive(value, key: str, *, allow_inf: bool = False, integer: bool = False) -> float:
    v = _number(value, key)
    if integer and (math.isinf(v) or v != int(v)):
        raise ConfigError(f"{key}={value!r} must be a whole number")
    if not v > 0 or (math.isinf(v) and not allow_inf):
        raise ConfigError(f"{key}={value!r} is not valid; use a positive {'number or inf' if allow_inf else 'number'}")
    return v


def safe_name(value: str, what: str) -> str:
    """A folder name taken from config: no separators, no '..', not hidden, not empty."""
    value = str(value)
    if not value or value in (".", "..") or "/" in value or "\\" in value or value.startswith(".") or "\0" in value:
        raise ConfigError(f"{what}={value!r} is not a valid folder name; use letters, digits, '-', '_' or '.' (no '/', no '..')")
    return value


def check_device(name: str) -> None:
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", str(name)):
        raise ConfigError(f"device={name!r} is not valid; use auto, cpu, cuda or cuda:N")


def attack_settings(cfg, name: str):
    """The typed settings of one selected attack (unknown keys and wrong types rejected)."""
    if name not in ATTACK_SCHEMAS:
        raise ConfigError(f"attack {name!r} is not valid; choose from {', '.join(sorted(ATTACK_SCHEMAS))}")
    # resolved in place, so that interpolations such as ${sizing.inversion_images} see the whole config
    raw = OmegaConf.to_container(cfg.attack[name], resolve=True) if cfg.attack[name] is not None else None
    schema = ATTACK_SCHEMAS[name]
    known = {f.name for f in fields(schema)}
    unknown = [k for k in raw.keys() if k not in known] if raw is not None else []
    if unknown:
        raise ConfigError(
            f"attack.{name}.{unknown[0]} is not a setting of attack {name!r}; valid: {', '.join(sorted(known)) or 'none'}"
        )
    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), raw or {}))
    except Exception as exc:  # omegaconf's validation errors, made one line
        first = str(exc).splitlines()[0]
        raise ConfigError(f"attack.{name}: {first}") from exc


def validate_config(cfg) -> None:
    """Checks that need no data."""
    from .models import FROZEN_FEATURES, MODELS, check_options, grad_sample_mode
    from .privacy import ACCOUNTANTS
    from .progress import MODES
    from .training import LR_SCHEDULES, OPTIMIZERS

    if cfg.dataset.name == "medmnist":
        raise ConfigError("dataset=medmnist needs the subset: add dataset.name=<subset>, e.g. dataset.name=dermamnist")
    if cfg.dataset.name == "imagefolder" and not str(cfg.dataset.root).strip():
        raise ConfigError("dataset=imagefolder needs dataset.root=/path/to/images (one sub-folder per class)")
    if cfg.dataset.max_train is not None:
        _positive(cfg.dataset.max_train, "dataset.max_train", integer=True)
    for key in ("n_train", "n_test", "size"):
        _positive(cfg.dataset[key], f"dataset.{key}", integer=True)
    eps = _number(cfg.privacy.epsilon, "privacy.epsilon")
    if not eps > 0:
        raise ConfigError(f"privacy.epsilon={cfg.privacy.epsilon!r} is not valid; use a positive number, or inf for non-private")
    delta = _number(cfg.privacy.delta, "privacy.delta")
    if not 0 < delta < 1:
        raise ConfigError(f"privacy.delta={cfg.privacy.delta!r} is not valid; use a number in (0, 1/N)")
    _positive(cfg.privacy.max_grad_norm, "privacy.max_grad_norm")
    alpha = _number(cfg.statistics.alpha, "statistics.alpha")
    if not 0 < alpha < 1:
        raise ConfigError(f"statistics.alpha={cfg.statistics.alpha!r} is not valid; use a level in (0, 1), e.g. 0.05")
    if cfg.privacy.accountant not in ACCOUNTANTS:
        raise ConfigError(f"privacy.accountant={cfg.privacy.accountant!r} is not valid; choose one of {', '.join(ACCOUNTANTS)}")

    if cfg.model.name not in MODELS:
        raise ConfigError(f"model={cfg.model.name!r} is not valid; choose one of {', '.join(sorted(MODELS))}")
    grad_sample_mode(cfg.model)
    _positive(cfg.model.width, "model.width", integer=True)
    _positive(cfg.model.norm_groups, "model.norm_groups", integer=True)
    check_options(cfg.model)

    for key in ("epochs", "batch_size"):
        _positive(cfg.train[key], f"train.{key}", integer=True)
    _positive(cfg.train.lr, "train.lr")
    if cfg.train.optimizer not in OPTIMIZERS:
        raise ConfigError(f"train.optimizer={cfg.train.optimizer!r} is not valid; choose one of {', '.join(OPTIMIZERS)}")
    if cfg.train.lr_schedule not in LR_SCHEDULES:
        raise ConfigError(f"train.lr_schedule={cfg.train.lr_schedule!r} is not valid; choose one of {', '.join(LR_SCHEDULES)}")
    from .training import AUGMENTATIONS

    augmult = cfg.train.augmult
    if isinstance(augmult, bool) or not isinstance(augmult, int) or augmult < 0:
        raise ConfigError(f"train.augmult={augmult!r} is not valid; use 0 (off) or the number of views per image")
    bad = [a for a in cfg.train.augmentations if a not in AUGMENTATIONS]
    if bad:
        raise ConfigError(f"train.augmentations={list(cfg.train.augmentations)} is not valid; choose from {', '.join(AUGMENTATIONS)}")
    if FROZEN_FEATURES.get(cfg.model.name) and any(
            (v or 0) > 0 for v in (augmult, cfg.train.nonprivate.get("augmult"))):
        raise ConfigError(f"train.augmult is not available for model={cfg.model.name} (its features are fixed and computed "
                          "once); use train.augmult=0")
    if augmult > 0 and grad_sample_mode(cfg.model) == "ghost":
        raise ConfigError("train.augmult needs per-sample gradients, which ghost clipping never forms; use model.grad_sample_mode=hooks or ew")
    if cfg.train.ema_decay is not None and not 0 <= _number(cfg.train.ema_decay, "train.ema_decay") < 1:
        raise ConfigError(f"train.ema_decay={cfg.train.ema_decay!r} is not valid; use a value in [0, 1) or null")
    for key, value in cfg.train.nonprivate.items():
        if value is None:
            continue
        if key in ("epochs", "batch_size"):
            _positive(value, f"train.nonprivate.{key}", integer=True)
        elif key == "lr":
            _positive(value, "train.nonprivate.lr")
        elif key == "optimizer" and value not in OPTIMIZERS:
            raise ConfigError(f"train.nonprivate.optimizer={value!r} is not valid; choose one of {', '.join(OPTIMIZERS)}")

    from .report import report_options

    report_options(cfg.get("report"))
    safe_name(cfg.name, "name")
    check_device(cfg.device)
    if cfg.progress not in MODES:
        raise ConfigError(f"progress={cfg.progress!r} is not valid; choose one of {', '.join(MODES)}")
    if cfg.num_threads is not None:
        _positive(cfg.num_threads, "num_threads", integer=True)
    _validate_attacks(cfg)


def _validate_attacks(cfg) -> None:
    from .shadow import check_queries

    selected = list(cfg.attack.keys())
    settings = {name: attack_settings(cfg, name) for name in selected}
    m = cfg.membership.num_models
    if any(name in MEMBERSHIP_ATTACKS for name in selected):
        _positive(m, "membership.num_models", integer=True)
        check_queries(cfg.membership.queries)
        if m < 2:
            raise ConfigError(f"membership.num_models={m} is too small; membership attacks need at least 2 models "
                              "(one held out for the empirical ε)")
        shadowed = [name for name in selected if name in ("lira", "rmia")]
        if shadowed and m < 3:
            raise ConfigError(f"membership.num_models={m} is too small for attack {shadowed[0]!r}, which needs shadow models; "
                              "use at least 3 (1 target, 1 shadow, 1 held out for the empirical ε)")
    if "lira" in settings:
        lira = settings["lira"]
        if lira.variance not in ("auto", "per_sample", "fixed"):
            raise ConfigError(f"attack.lira.variance={lira.variance!r} is not valid; choose one of auto, per_sample, fixed")
        if not (lira.online or lira.offline):
            raise ConfigError("attack.lira: online and offline are both false; enable one or drop lira from attack=[…]")
        if lira.online and m < 5:
            raise ConfigError(
                f"membership.num_models={m} is too small for online LiRA, which fits IN and OUT Gaussians from the "
                "shadow models; use at least 5 (16 or more recommended) or attack.lira.online=false"
            )
    if "rmia" in settings:
        rmia = settings["rmia"]
        _positive(rmia.n_references, "attack.rmia.n_references", integer=True)
        need = 2 * rmia.n_references if rmia.online else rmia.n_references
        # one model is held out for the empirical ε, and each target needs its references among the rest
        if m - 2 < need:
            raise ConfigError(
                f"membership.num_models={m} leaves {m - 2} reference models (one target, one held out), too few for "
                f"attack.rmia.n_references={rmia.n_references}{' (online needs twice as many)' if rmia.online else ''}; "
                f"use num_models ≥ {need + 2}"
            )
    if "audit" in settings:
        from .shadow import CANARY_KINDS

        audit = settings["audit"]
        _positive(audit.n_canaries, "attack.audit.n_canaries", integer=True)
        if audit.canary not in CANARY_KINDS:
            raise ConfigError(f"attack.audit.canary={audit.canary!r} is not valid; choose one of {', '.join(CANARY_KINDS)}")
        if not 0 < audit.guess_fraction <= 0.5:
            raise ConfigError(f"attack.audit.guess_fraction={audit.guess_fraction} is not valid; use a value in (0, 0.5]")


    if "prior_aware" in settings:
        pa = settings["prior_aware"]
        if pa.n_candidates < 2:
            raise ConfigError(f"attack.prior_aware.n_candidates={pa.n_candidates} is not valid; the prior needs at least 2 candidates")
        _positive(pa.trials, "attack.prior_aware.trials", integer=True)
        _positive(pa.n_states, "attack.prior_aware.n_states", integer=True)
        if pa.pool_size < pa.n_candidates:
            raise ConfigError(
                f"attack.prior_aware.pool_size={pa.pool_size} is smaller than n_candidates={pa.n_candidates}; use at least {pa.n_candidates}"
            )


    for name in ("gradient_inversion", "dlg"):
        if name in settings:
            _validate_inversion(name, settings[name])
    if "imprint" in settings:
        imp = settings["imprint"]
        for key in ("batch_size", "n_batches", "n_bins", "n_measurements"):
            _positive(getattr(imp, key), f"attack.imprint.{key}", integer=True)
        if imp.measurement not in ("gaussian", "mean"):
            raise ConfigError(f"attack.imprint.measurement={imp.measurement!r} is not valid; choose gaussian or mean")
        if imp.model_state not in ("init", "trained"):
            raise ConfigError(f"attack.imprint.model_state={imp.model_state!r} is not valid; choose init or trained")
        if imp.measurement == "mean" and imp.n_measurements != 1:
            raise ConfigError("attack.imprint.n_measurements must be 1 with measurement=mean (one vector)")
        if imp.n_bins < 2 * imp.n_measurements:
            raise ConfigError(f"attack.imprint.n_bins={imp.n_bins} is too small; use at least 2 bins per measurement ({2 * imp.n_measurements})")


def _validate_inversion(name: str, gi) -> None:
    _positive(gi.n_images, f"attack.{name}.n_images", integer=True)
    _positive(gi.batch_size, f"attack.{name}.batch_size", integer=True)
    if gi.n_images % gi.batch_size:
        raise ConfigError(f"attack.{name}.n_images={gi.n_images} is not a multiple of batch_size={gi.batch_size}")
    if gi.model_state not in ("init", "trained"):
        raise ConfigError(f"attack.{name}.model_state={gi.model_state!r} is not valid; choose init or trained")
    if gi.labels not in ("known", "recovered"):
        raise ConfigError(f"attack.{name}.labels={gi.labels!r} is not valid; choose known or recovered")
    try:
        inversion_config(gi)
    except ValueError as exc:
        raise ConfigError(f"attack.{name}.{exc}") from exc


def inversion_config(gi):
    """The attack's optimiser settings (attacks/reconstruction.py validates them)."""
    from medprivbench.attacks.reconstruction import InversionConfig

    return InversionConfig(loss=gi.loss, optimizer=gi.optimizer, iterations=int(gi.iterations), lr=float(gi.lr),
                           signed=bool(gi.signed), lr_decay=bool(gi.lr_decay), boxed=bool(gi.boxed),
                           tv_weight=float(gi.tv_weight), restarts=int(gi.restarts), init=gi.init)


def validate_with_data(cfg, n_train: int) -> None:
    """Checks that need the size N of the training set."""
    from .training import effective_train

    eps = float(cfg.privacy.epsilon)
    delta = float(cfg.privacy.delta)
    if is_private(eps) and not delta < 1.0 / n_train:
        raise ConfigError(
            f"privacy.delta={delta:g} is not below 1/N = {1.0 / n_train:.3g} for N={n_train} training images; "
            f"use a delta below {1.0 / n_train:.3g} (e.g. {10 ** math.floor(math.log10(0.1 / n_train)):g})"
        )
    for name in RECONSTRUCTION_ATTACKS:
        if name in cfg.attack:
            a = attack_settings(cfg, name)
            n_images = a.n_images if hasattr(a, "n_images") else a.batch_size * a.n_batches
            if n_images > n_train:
                raise ConfigError(f"attack.{name}.n_images={n_images} is more than the {n_train} training images")
    batch = effective_train(cfg.train, eps)["batch_size"]
    if batch > n_train:
        raise ConfigError(f"train.batch_size={batch} is larger than the {n_train} training images; use at most {n_train}")

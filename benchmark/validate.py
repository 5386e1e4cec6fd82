"""Validation of a run configuration, once, where it enters (scikit-learn's habit).

``validate_config`` checks everything that needs no data; ``validate_with_data`` what needs the
training-set size. Each failure is a :class:`ConfigError` whose message is one line naming the
bad value and what would be valid. The command line calls both for every point of a sweep before
the first job starts (benchmark/preflight.py); the engine below trusts its input. An attack's
settings are validated by its own schema (attacks/settings.py) and registry entry.
"""

from __future__ import annotations

import math
import re


from omegaconf import ListConfig, OmegaConf

from . import registry
from .config import REFERENCES, is_private
from .errors import ConfigError


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


def check_output_location(results_root, name: str) -> None:
    """The results folder can be made and written, and its names fit the file system's limits
    (a run folder adds runs/<run id> of about 40 characters below results_root/name)."""
    import os
    from pathlib import Path

    text = str(results_root)
    if not text.strip() or "\0" in text:
        raise ConfigError(f"results_root={results_root!r} is not a usable folder; give a path, e.g. results")
    root = Path(text).expanduser().absolute()
    limit = 255
    for part in (*root.parts[1:], str(name)):
        if len(os.fsencode(part)) > limit:
            raise ConfigError(f"results_root/name component {part[:40]!r}… is {len(os.fsencode(part))} bytes long; "
                              f"the file system allows {limit}")
    if len(os.fsencode(str(root / str(name)))) + 64 > 4096:
        raise ConfigError(f"results_root={text[:40]!r}… is too long a path for run folders; use a shorter one")
    existing = root
    while not existing.exists():
        existing = existing.parent
    if root.exists() and not root.is_dir():
        raise ConfigError(f"results_root={text!r} is a file, not a folder; choose a folder")
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"results_root={text!r} cannot be written ({existing} is not a writable folder); choose another")


def check_device(name: str, *, jobs_run_here: bool = True) -> None:
    """The device's spelling, and, when the jobs run on this machine, that it exists here. Jobs
    that a launcher sends elsewhere (Slurm, Ray) find their GPU there; the job checks it then."""
    match = re.fullmatch(r"auto|cpu|cuda(?::(\d+))?", str(name))
    if not match:
        raise ConfigError(f"device={name!r} is not valid; use auto, cpu, cuda or cuda:N")
    if jobs_run_here and str(name).startswith("cuda"):
        import torch

        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(match.group(1) or 0)
        if index >= count:
            where = f"GPUs 0–{count - 1}" if count else "no GPU"
            raise ConfigError(f"device={name!r} is not available: this machine has {where}; use auto or cpu")


def validate_config(cfg, *, jobs_run_here: bool = True) -> None:
    """Checks that need no data (``jobs_run_here``: the launcher runs the jobs on this machine)."""
    from .tasks import check_config

    check_config(cfg)
    _validate_dataset(cfg)
    validate_recipe(cfg)
    _validate_run(cfg, jobs_run_here)
    _validate_attacks(cfg)


def validate_recipe(cfg) -> None:
    """The settings that shape one training run, needing no data: privacy.*, model.* and train.*
    (a sweep's, and the recipe of ``medprivbench-audit``'s reference models)."""
    _validate_privacy(cfg)
    _validate_model(cfg)
    _validate_train(cfg)


def _validate_dataset(cfg) -> None:
    if cfg.dataset.name == "medmnist":
        raise ConfigError("dataset=medmnist needs the subset: add dataset.name=<subset>, e.g. dataset.name=dermamnist")
    if cfg.dataset.name == "imagefolder" and not str(cfg.dataset.root).strip():
        raise ConfigError("dataset=imagefolder needs dataset.root=/path/to/images (one sub-folder per class)")
    if cfg.dataset.name == "segfolder" and not str(cfg.dataset.root).strip():
        raise ConfigError("dataset=segfolder needs dataset.root=/path/to/folder (images/ and masks/ paired by name, "
                          "or <case>_img.nii.gz with <case>_seg.nii.gz)")
    if cfg.dataset.max_train is not None:
        _positive(cfg.dataset.max_train, "dataset.max_train", integer=True)
    for key in ("n_train", "n_test", "size"):
        _positive(cfg.dataset[key], f"dataset.{key}", integer=True)
    if cfg.dataset.name == "synthetic3d" and not 8 <= cfg.dataset.size <= 64:
        raise ConfigError(f"dataset.size={cfg.dataset.size!r} is not valid for synthetic3d; use 8 to 64 voxels a side")
    _validate_segmentation_size(cfg.dataset)
    for key in ("label_noise", "rare_fraction"):
        if not 0 <= _number(cfg.dataset[key], f"dataset.{key}") < 1:
            raise ConfigError(f"dataset.{key}={cfg.dataset[key]!r} is not valid; use a share in [0, 1), e.g. 0.03")


# The segmentation datasets' sizes, (smallest, largest or None): a multiple of 4, since the U-Net
# halves the image twice, and the phantoms need room for an organ with lesions.
SEGMENTATION_SIZES = {"phantom2d": (16, None), "phantom3d": (8, 64), "segfolder": (4, None)}


def _validate_segmentation_size(dataset) -> None:
    if dataset.name not in SEGMENTATION_SIZES:
        return
    lo, hi = SEGMENTATION_SIZES[dataset.name]
    size = dataset.size
    if size % 4 or size < lo or (hi is not None and size > hi):
        span = f"{lo} to {hi}" if hi is not None else f"at least {lo}"
        unit = "voxels" if dataset.name == "phantom3d" else "pixels (voxels)" if dataset.name == "segfolder" else "pixels"
        raise ConfigError(f"dataset.size={size!r} is not valid for {dataset.name}; use a multiple of 4, {span} "
                          f"{unit} a side (the U-Net halves it twice)")


def _validate_privacy(cfg) -> None:
    from .privacy import ACCOUNTANTS

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
    references = cfg.privacy.references
    if not isinstance(references, (list, ListConfig)) or not references or any(r not in REFERENCES for r in references) \
            or len(set(references)) != len(references):
        shown = OmegaConf.to_object(references) if isinstance(references, ListConfig) else references
        raise ConfigError(f"privacy.references={shown!r} is not valid; choose a non-empty list of distinct values from "
                          f"{', '.join(REFERENCES)}")
    if cfg.privacy.reference is not None:
        raise ConfigError(f"privacy.reference={cfg.privacy.reference!r} is set per run; choose the non-private references "
                          "with privacy.references=[same_recipe,tuned]")
    if cfg.privacy.accountant not in ACCOUNTANTS:
        raise ConfigError(f"privacy.accountant={cfg.privacy.accountant!r} is not valid; choose one of {', '.join(ACCOUNTANTS)}")


def _validate_model(cfg) -> None:
    from .models import MODELS, check_options, grad_sample_mode

    if cfg.model.name not in MODELS:
        raise ConfigError(f"model={cfg.model.name!r} is not valid; choose one of {', '.join(sorted(MODELS))}")
    grad_sample_mode(cfg.model)
    _positive(cfg.model.width, "model.width", integer=True)
    _positive(cfg.model.norm_groups, "model.norm_groups", integer=True)
    check_options(cfg.model)


def _validate_run(cfg, jobs_run_here: bool) -> None:
    """The run's own settings: report, names and places, seed, device, tracking, progress, workers."""
    from . import tracking
    from .progress import MODES
    from .report import report_options

    report_options(cfg.get("report"))
    safe_name(cfg.name, "name")
    check_output_location(cfg.results_root, cfg.name)
    seed = cfg.seed
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise ConfigError(f"seed={seed!r} is not valid; use a whole number in [0, 2^63)")
    check_device(cfg.device, jobs_run_here=jobs_run_here)
    tracking.check(cfg)
    if cfg.progress not in MODES:
        raise ConfigError(f"progress={cfg.progress!r} is not valid; choose one of {', '.join(MODES)}")
    if cfg.num_threads is not None:
        _positive(cfg.num_threads, "num_threads", integer=True)
    workers = cfg.shadow_workers
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise ConfigError(f"shadow_workers={workers!r} is not valid; use 0 (one per CPU core) or a positive whole number")


def _validate_train(cfg) -> None:
    """The training recipe's settings (train.*, train.nonprivate.*)."""
    from .models import FROZEN_FEATURES, grad_sample_mode
    from .training import AUGMENTATIONS, LR_SCHEDULES, OPTIMIZERS

    for key in ("epochs", "batch_size"):
        _positive(cfg.train[key], f"train.{key}", integer=True)
    _positive(cfg.train.lr, "train.lr")
    if cfg.train.momentum is not None and not 0 <= _number(cfg.train.momentum, "train.momentum") < 1:
        raise ConfigError(f"train.momentum={cfg.train.momentum!r} is not valid; use a number in [0, 1), e.g. 0.9")
    if cfg.train.weight_decay is not None and not 0 <= _number(cfg.train.weight_decay, "train.weight_decay") < math.inf:
        raise ConfigError(f"train.weight_decay={cfg.train.weight_decay!r} is not valid; use a finite number ≥ 0, e.g. 5e-4")
    if cfg.train.optimizer not in OPTIMIZERS:
        raise ConfigError(f"train.optimizer={cfg.train.optimizer!r} is not valid; choose one of {', '.join(OPTIMIZERS)}")
    if cfg.train.lr_schedule not in LR_SCHEDULES:
        raise ConfigError(f"train.lr_schedule={cfg.train.lr_schedule!r} is not valid; choose one of {', '.join(LR_SCHEDULES)}")
    augmult = cfg.train.augmult
    if isinstance(augmult, bool) or not isinstance(augmult, int) or augmult < 0:
        raise ConfigError(f"train.augmult={augmult!r} is not valid; use 0 (off) or the number of views per image")
    bad = [a for a in cfg.train.augmentations if a not in AUGMENTATIONS]
    if bad:
        raise ConfigError(f"train.augmentations={list(cfg.train.augmentations)} is not valid; choose from {', '.join(AUGMENTATIONS)}")
    if augmult > 0 and not list(cfg.train.augmentations):
        raise ConfigError(f"train.augmult={augmult} needs at least one of train.augmentations ({', '.join(AUGMENTATIONS)})")
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


def _validate_attacks(cfg) -> None:
    """Each selected attack's settings (its schema's declared constraints and rules), then the
    rules its registry entry states about other settings (e.g. enough pool models)."""
    for name in registry.selected(cfg):
        registry.ATTACKS[name].check(registry.settings_of(cfg, name), cfg)


def validate_with_data(cfg, n_train: int) -> None:
    """Checks that need the size N of the training set."""
    _check_delta(cfg, n_train)
    for name in registry.selected(cfg):
        registry.ATTACKS[name].check_data(registry.settings_of(cfg, name), cfg, n_train)
    _check_batches_and_budget(cfg, n_train)


def validate_recipe_with_data(cfg, n_train: int) -> None:
    """The recipe's checks that need the size N of the training set (δ < 1/N, batches, a reachable ε)."""
    _check_delta(cfg, n_train)
    _check_batches_and_budget(cfg, n_train)


def _check_delta(cfg, n_train: int) -> None:
    delta = float(cfg.privacy.delta)
    if is_private(float(cfg.privacy.epsilon)) and not delta < 1.0 / n_train:
        raise ConfigError(
            f"privacy.delta={delta:g} is not below 1/N = {1.0 / n_train:.3g} for N={n_train} training images; "
            f"use a delta below {1.0 / n_train:.3g} (e.g. {10 ** math.floor(math.log10(0.1 / n_train)):g})"
        )


def _check_batches_and_budget(cfg, n_train: int) -> None:
    """Every run's batch fits the training set, and a DP run's ε is reachable with its q and T."""
    from .training import effective_train

    eps = float(cfg.privacy.epsilon)
    delta = float(cfg.privacy.delta)
    for reference in ([None] if is_private(eps) else list(cfg.privacy.references)):
        batch = effective_train(cfg.train, eps, reference)["batch_size"]
        if batch > n_train:
            key = "train.nonprivate.batch_size" if batch != cfg.train.batch_size else "train.batch_size"
            raise ConfigError(f"{key}={batch} is larger than the {n_train} training images; use at most {n_train}")
    if is_private(eps):
        from .privacy import check_reachable
        from .training import steps_per_epoch

        hp = effective_train(cfg.train, eps, None)
        k = steps_per_epoch(n_train, hp["batch_size"])
        check_reachable(epsilon=eps, delta=delta, sample_rate=1.0 / k, steps=int(hp["epochs"]) * k)

"""One experiment, one point of a sweep: data → DP training → evaluation → attacks → run record.

``run_experiment(cfg)`` is what every Hydra job calls. It returns at once when the run's folder
already holds a complete record (resume), and otherwise publishes the new run atomically
(benchmark/store.py), so an interrupted job leaves nothing that could be counted.
"""

from __future__ import annotations

import logging
import math
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from medprivbench.datasets import ImageDataset, load_dataset

from . import store
from .config import is_private
from .errors import ConfigError
from .metrics import per_class_accuracy, utility_metrics
from .models import build_model, grad_sample_mode
from .progress import epoch_bar
from .training import effective_train, make_recipe, predict_logits, train

log = logging.getLogger("medprivbench")


@dataclass(frozen=True)
class RunOutcome:
    run_dir: Path
    sweep_dir: Path
    skipped: bool


def run_config_dict(cfg: DictConfig) -> dict:
    """The resolved run configuration without Hydra's own section."""
    container = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    container.pop("hydra", None)
    return container


def safe_name(value: str, what: str) -> str:
    """A folder name taken from config: no separators, no '..', not empty."""
    value = str(value)
    if not value or value in (".", "..") or "/" in value or "\\" in value or value.startswith(".") or "\0" in value:
        raise ConfigError(f"{what}={value!r} is not a valid folder name; use letters, digits, '-', '_' or '.' (no '/', no '..')")
    return value


def sweep_dir_for(cfg: DictConfig) -> Path:
    return Path(str(cfg.results_root)).expanduser() / safe_name(cfg.name, "name")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(f"device={name!r} is not valid; use auto, cpu, cuda or cuda:N") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={name!r} but no CUDA GPU is available; use device=auto or device=cpu")
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"device={name!r} is not supported; use auto, cpu, cuda or cuda:N")
    return device


def versions() -> dict:
    import monai
    import opacus

    from importlib.metadata import PackageNotFoundError, version

    try:
        own = version("medprivbench")
    except PackageNotFoundError:
        own = "unknown"
    return {
        "medprivbench": own,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "opacus": opacus.__version__,
        "monai": monai.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
    }


def check_against_data(cfg: DictConfig, ds: ImageDataset) -> None:
    """Checks that need the data: δ < 1/N and a batch that fits the training set."""
    n = ds.n_train
    delta = float(cfg.privacy.delta)
    if is_private(float(cfg.privacy.epsilon)) and not delta < 1.0 / n:
        raise ConfigError(
            f"privacy.delta={delta:g} is not below 1/N = {1.0 / n:.3g} for N={n} training images; "
            f"use a delta below {1.0 / n:.3g} (e.g. {10 ** math.floor(math.log10(0.1 / n)):g})"
        )
    batch = effective_train(cfg.train, float(cfg.privacy.epsilon))["batch_size"]
    if batch > n:
        raise ConfigError(f"train.batch_size={batch} is larger than the {n} training images; use at most {n}")


def run_experiment(cfg: DictConfig) -> RunOutcome:
    run_config = run_config_dict(cfg)
    sweep_dir = sweep_dir_for(cfg)
    run_id = store.run_id_for(run_config)
    label = f"[{cfg.dataset.name} {cfg.model.name} eps={store.format_epsilon(float(cfg.privacy.epsilon))} seed={cfg.seed}]"

    existing = store.find_complete_run(sweep_dir, run_id)
    if existing is not None:
        log.info("%s already complete in %s: skipped", label, existing)
        return RunOutcome(existing, sweep_dir, skipped=True)

    started = time.perf_counter()
    device = resolve_device(str(cfg.device))
    if cfg.num_threads is not None:
        torch.set_num_threads(int(cfg.num_threads))
    ds = load_dataset(cfg.dataset)
    check_against_data(cfg, ds)
    recipe = make_recipe(cfg.privacy, cfg.train, ds.n_train)
    hp = effective_train(cfg.train, float(cfg.privacy.epsilon))
    mode = grad_sample_mode(cfg.model)
    log.info(
        "%s training %s on %s (N=%d) %s -> %s", label, cfg.model.name, ds.info.name, ds.n_train,
        f"with DP-SGD sigma={recipe.noise_multiplier:.4g} q={recipe.sample_rate:.4g} T={recipe.steps} C={recipe.max_grad_norm:g} ({recipe.accountant})"
        if recipe.private else f"without DP (T={recipe.steps})",
        sweep_dir / "runs" / run_id,
    )
    if recipe.accountant_note:
        log.info("%s %s", label, recipe.accountant_note)

    writer = store.RunWriter(sweep_dir, run_id)
    try:
        x_train = torch.from_numpy(ds.train_x)
        y_train = torch.from_numpy(ds.train_y)
        model = build_model(cfg.model, in_channels=ds.info.n_channels, n_classes=ds.info.n_classes, image_size=ds.info.image_size[-1])
        with epoch_bar(cfg.progress, f"{label} epochs") as bar:
            result = train(
                model, x_train, y_train, recipe=recipe, hp=hp, grad_sample_mode=mode,
                seed=int(cfg.seed), device=device, progress=bar,
            )
        test_logits = predict_logits(result.model, torch.from_numpy(ds.test_x), device=device)
        train_logits = predict_logits(result.model, x_train, device=device)
        utility = {
            "test": utility_metrics(test_logits, ds.test_y, ds.info.n_classes),
            "train": utility_metrics(train_logits, ds.train_y, ds.info.n_classes),
            "test_per_class_accuracy": per_class_accuracy(test_logits, ds.test_y, ds.info.class_names),
        }
        record = {
            "schema": store.SCHEMA_VERSION,
            "run_id": run_id,
            "config_hash": store.config_hash(run_config),
            "seed": int(cfg.seed),
            "dataset": {**ds.info.to_record(), "n_train": ds.n_train, "n_test": len(ds.test_y),
                        "n_val": 0 if ds.val_y is None else len(ds.val_y)},
            "model": {"name": cfg.model.name, "parameters": int(sum(p.numel() for p in result.model.parameters())),
                      "grad_sample_mode": mode if recipe.private else None},
            "privacy": {**recipe.to_record(), "epsilon_spent": result.epsilon_spent},
            "train": {**hp, "steps_taken": result.steps_taken, "wall_time_s": result.wall_time_s,
                      "samples_per_s": result.samples_per_s, "loss_history": result.loss_history},
            "utility": utility,
            "environment": {**versions(), "device": str(device), "threads": torch.get_num_threads(),
                            "hostname": platform.node(), "pid": os.getpid()},
        }
        record["wall_time_s"] = time.perf_counter() - started
        record["summary"] = summarise(record, cfg)
        writer.write_text("config.yaml", OmegaConf.to_yaml(OmegaConf.create(run_config)))
        writer.save_state_dict("model.safetensors", result.model)
        writer.write_json(store.METRICS, record)
        run_dir = writer.publish({"config_hash": record["config_hash"]})
    except BaseException:
        writer.discard()
        raise
    s = record["summary"]
    log.info(
        "%s done in %.1fs: test accuracy %.3f, AUROC %.3f, eps spent %s -> %s",
        label, record["wall_time_s"], s["test_accuracy"], s["test_auroc"], _fmt(s["epsilon_spent"]), run_dir,
    )
    return RunOutcome(run_dir, sweep_dir, skipped=False)


def _fmt(x: float) -> str:
    return "inf" if math.isinf(x) else f"{x:.4g}"


def summarise(record: dict, cfg: DictConfig) -> dict:
    """The flat row of the sweep table."""
    p, u, t = record["privacy"], record["utility"], record["train"]
    row = {
        "dataset": record["dataset"]["name"],
        "model": record["model"]["name"],
        "seed": record["seed"],
        "epsilon": p["epsilon_target"],
        "epsilon_spent": p["epsilon_spent"],
        "delta": p["delta"],
        "sigma": p["noise_multiplier"],
        "sample_rate": p["sample_rate"],
        "steps": t["steps_taken"],
        "epochs": t["epochs"],
        "batch_size": t["batch_size"],
        "max_grad_norm": p["max_grad_norm"],
        "accountant": p["accountant"],
        "n_train": record["dataset"]["n_train"],
        "n_test": record["dataset"]["n_test"],
    }
    for split in ("test", "train"):
        for k, v in u[split].items():
            row[f"{split}_{k}"] = v
    row["generalization_gap"] = u["train"]["accuracy"] - u["test"]["accuracy"]
    row["train_wall_s"] = t["wall_time_s"]
    row["samples_per_s"] = t["samples_per_s"]
    row["run_wall_s"] = record["wall_time_s"]
    row["config_hash"] = record["config_hash"]
    return row

"""One experiment, one point of a sweep: data → DP training → evaluation → attacks → run record.

``run_experiment(cfg)`` is what every Hydra job calls. It returns at once when the run's folder
already holds a complete record (resume), and otherwise publishes the new run atomically
(benchmark/store.py), so an interrupted job leaves nothing that could be counted. The ε = ∞ point
of a sweep is one run per non-private reference (``privacy.references``: ``same_recipe``, the DP
recipe without clipping and noise, and ``tuned``, the non-private recipe), each published on its own.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from medprivbench.datasets import ImageDataset, load_dataset

from . import registry, store, tasks, tracking
from .config import is_private
from .errors import ConfigError
from .models import build_model, grad_sample_mode, split_frozen
from .progress import epoch_bar
from .reconstruction_run import rero_bounds
from .summary import summarise
from .recipe import DPRecipe, effective_train, make_recipe
from .streams import Streams
from .training import Instrument, compute_features, predict_logits, train
from .validate import safe_name

log = logging.getLogger("medprivbench")


@dataclass(frozen=True)
class RunOutcome:
    run_dir: Path
    sweep_dir: Path
    skipped: bool


def run_config_dict(cfg: DictConfig) -> dict:
    """The resolved run configuration without Hydra's own section.

    ``privacy.references`` (which references an ε = ∞ point trains) is left out: each run records
    the one it is (``privacy.reference``), so a DP run's id does not depend on that choice.
    """
    container = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    container.pop("hydra", None)
    container.get("privacy", {}).pop("references", None)
    return container


def with_reference(cfg: DictConfig, reference: str | None) -> DictConfig:
    """A copy of ``cfg`` for one run: ``privacy.reference`` set (None for a DP run)."""
    one = copy.deepcopy(cfg)
    one.privacy.reference = reference
    return one


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
    """Versions of what computed the run (read from the installed distributions: importing MONAI takes seconds)."""
    from importlib.metadata import PackageNotFoundError, version

    def installed(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "unknown"

    return {
        "medprivbench": installed("medprivbench"),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "opacus": installed("opacus"),
        "monai": installed("monai"),
        "numpy": np.__version__,
        "platform": platform.platform(),
    }


@dataclass(frozen=True)
class ModelBuilder:
    """Builds the run's architecture, its initial weights drawn from a model's ``init`` stream."""

    model: dict  # the model settings (cfg.model as plain data)
    in_channels: int
    n_classes: int
    image_size: int
    spatial_dims: int

    def __call__(self, streams: Streams) -> torch.nn.Module:
        torch.manual_seed(streams.seed_for("init"))
        return build_model(OmegaConf.create(self.model), in_channels=self.in_channels, n_classes=self.n_classes,
                           image_size=self.image_size, spatial_dims=self.spatial_dims)


@dataclass
class Context:
    """What the stages of one experiment share."""

    cfg: DictConfig
    ds: ImageDataset
    recipe: DPRecipe
    hp: dict
    grad_sample_mode: str
    device: torch.device
    label: str
    writer: store.RunWriter
    settings: dict = field(default_factory=dict)  # the selected attacks' typed settings, in registry order
    target: torch.nn.Module | None = None  # the trained target model, once trained
    checkpoints: list = field(default_factory=list)  # model states along the target's training
    _train_features: torch.Tensor | None = None
    _frozen: object = None  # the fixed feature extractor, False when the model has none, None: unknown
    _shared: dict = field(default_factory=dict)  # protocols several attacks share (the membership pool)
    instruments: dict[str, Instrument] = field(default_factory=dict)  # attack name → what it puts into the target's training

    def shared(self, key: str, factory):
        """The run's ``key`` protocol, built by ``factory(ctx)`` the first time an attack asks for it.
        Its ``finish()`` result is recorded under ``record["protocols"][key]`` after the attacks."""
        if key not in self._shared:
            self._shared[key] = factory(self)
        return self._shared[key]

    @property
    def bound_alpha(self) -> float:
        """The level of each ε lower bound of the run: α divided by their number (benchmark/record.py)."""
        return self.alpha / max(1, registry.lower_bound_count(self.settings))

    @property
    def epsilon_text(self) -> str:
        return f"ε = {store.format_epsilon(float(self.cfg.privacy.epsilon))}"

    @property
    def alpha(self) -> float:
        """Family-wise level of the run's statistics (intervals, and all ε lower bounds together)."""
        return float(self.cfg.statistics.alpha)

    @property
    def streams(self) -> Streams:
        """The target model's random streams; ``.of(role, index)`` gives every other model's."""
        return Streams(int(self.cfg.seed))

    def build_model(self, streams: Streams) -> torch.nn.Module:
        """A freshly initialised model; the initial weights depend only on the ``init`` stream.

        Seeding here (not relying on the global RNG's state) keeps every model identical whether
        a sweep runs whole, resumes after a crash, or runs its jobs in another order or process.
        """
        return self.model_builder(streams)

    @property
    def model_builder(self) -> "ModelBuilder":
        """:meth:`build_model` as a small picklable object (what worker processes receive)."""
        info = self.ds.info
        return ModelBuilder(OmegaConf.to_container(self.cfg.model, resolve=True), info.n_channels, info.n_classes,
                            info.image_size[-1], info.spatial_dims)

    @property
    def task(self) -> tasks.Task:
        """What the run learns (benchmark/tasks.py): classification or segmentation."""
        return tasks.of_config(self.cfg)

    @property
    def x_train(self) -> torch.Tensor:
        return torch.from_numpy(self.ds.train_x)

    def feature_fn(self):
        """For models with fixed features: the function computing them; else None."""
        if self._frozen is None:
            self._frozen = split_frozen(self.build_model(self.streams.of("features")))[0] or False
        if self._frozen is False:
            return None
        return lambda x: compute_features(self._frozen, x, self.device)

    @property
    def train_features(self) -> torch.Tensor | None:
        """Fixed features of the training images, computed once per run (None for other models)."""
        fn = self.feature_fn()
        if self._train_features is None and fn is not None:
            self._train_features = fn(self.x_train)
        return self._train_features

    @property
    def y_train(self) -> torch.Tensor:
        return torch.from_numpy(self.ds.train_y)


def run_experiment(cfg: DictConfig) -> RunOutcome:
    """Run one validated sweep point (the command line validates every point of a sweep first,
    benchmark/preflight.py) and publish its record; returns at once if it is already complete.

    A DP point is one run; ε = ∞ is one run per ``privacy.references`` entry, in that order (the
    outcome returned is the last one's, ``skipped`` only if every one was already complete).
    """
    if is_private(float(cfg.privacy.epsilon)):
        return _run_one(with_reference(cfg, None))
    outcomes = [_run_one(with_reference(cfg, str(reference))) for reference in cfg.privacy.references]
    return RunOutcome(outcomes[-1].run_dir, outcomes[-1].sweep_dir, skipped=all(o.skipped for o in outcomes))


def _run_one(cfg: DictConfig) -> RunOutcome:
    """One run (one reference at ε = ∞): skipped when its folder holds a complete record, else
    trained, attacked and published atomically (a failure leaves nothing behind)."""
    run_config = run_config_dict(cfg)
    sweep_dir = sweep_dir_for(cfg)
    run_id = store.run_id_for(run_config)
    reference = f" {cfg.privacy.reference}" if cfg.privacy.reference else ""
    label = f"[{cfg.dataset.name} {cfg.model.name} eps={store.format_epsilon(float(cfg.privacy.epsilon))}{reference} seed={cfg.seed}]"

    existing = store.find_complete_run(sweep_dir, run_id)
    if existing is not None:
        log.info("%s already complete in %s: skipped", label, existing)
        return RunOutcome(existing, sweep_dir, skipped=True)

    started = time.perf_counter()
    ctx = _prepare(cfg, label, sweep_dir, run_id)
    writer = ctx.writer
    try:
        record = _run_record(ctx, run_id, run_config, started)
        writer.write_text("config.yaml", OmegaConf.to_yaml(OmegaConf.create(run_config)))
        writer.write_json(store.METRICS, record)
        run_dir = writer.publish({"config_hash": record["config_hash"]})
    except BaseException:
        writer.discard()
        raise
    tracking.log_run(cfg, record, run_dir)
    s = record["summary"]
    task = tasks.get(record["utility"]["task"])
    log.info(
        "%s done in %.1fs: %s %.3f, %s %.3f, eps spent %s%s -> %s",
        label, record["wall_time_s"], task.headline_label, s[f"test_{task.headline}"], task.second_label,
        s[f"test_{task.second}"], _fmt(s["epsilon_spent"]),
        f", best membership AUC {s['mia_best_auc']:.3f}" if "mia_best_auc" in s else "", run_dir,
    )
    return RunOutcome(run_dir, sweep_dir, skipped=False)


def _prepare(cfg: DictConfig, label: str, sweep_dir: Path, run_id: str) -> Context:
    """The run's device, threads, data and DP recipe, announced in the log, and its context (with
    the writer of its new folder)."""
    device = resolve_device(str(cfg.device))
    if cfg.num_threads is not None:
        torch.set_num_threads(int(cfg.num_threads))
    ds = load_dataset(cfg.dataset)
    recipe = make_recipe(cfg.privacy, cfg.train, ds.n_train)
    log.info(
        "%s training %s on %s (N=%d) %s -> %s", label, cfg.model.name, ds.info.name, ds.n_train,
        f"with DP-SGD sigma={recipe.noise_multiplier:.4g} q={recipe.sample_rate:.4g} T={recipe.steps} C={recipe.max_grad_norm:g} ({recipe.accountant})"
        if recipe.private else f"without DP (T={recipe.steps})",
        sweep_dir / "runs" / run_id,
    )
    if recipe.accountant_note:
        log.info("%s %s", label, recipe.accountant_note)

    writer = store.RunWriter(sweep_dir, run_id)
    return Context(cfg=cfg, ds=ds, recipe=recipe, hp=effective_train(cfg.train, float(cfg.privacy.epsilon), cfg.privacy.reference),
                   grad_sample_mode=grad_sample_mode(cfg.model), device=device, label=label, writer=writer,
                   settings=registry.selected_settings(cfg))


def _run_record(ctx: Context, run_id: str, run_config: dict, started: float) -> dict:
    """The run's record: what ran where, the target's training and utility, every attack, the summary."""
    cfg, ds = ctx.cfg, ctx.ds
    record = {
        "schema": store.SCHEMA_VERSION,
        "run_id": run_id,
        "config_hash": store.config_hash(run_config),
        "seed": int(cfg.seed),
        "dataset": {**ds.info.to_record(), "n_train": ds.n_train, "n_test": len(ds.test_y),
                    "n_val": 0 if ds.val_y is None else len(ds.val_y)},
        "environment": {**versions(), "device": str(ctx.device), "threads": torch.get_num_threads(),
                        "hostname": platform.node(), "pid": os.getpid()},
    }
    n_states = max([registry.ATTACKS[name].checkpoints(s) for name, s in ctx.settings.items()], default=0)
    ctx.instruments = {name: registry.ATTACKS[name].instrument(ctx, s) for name, s in ctx.settings.items()
                       if registry.ATTACKS[name].instrument is not None}
    timings = {"setup": time.perf_counter() - started}  # data, recipe, instruments: before the target trains
    mark = time.perf_counter()
    record.update(train_target(ctx, n_checkpoints=n_states))
    timings["target"] = time.perf_counter() - mark
    record.update(run_attacks(ctx, timings))
    record["timings_s"] = timings
    record["wall_time_s"] = time.perf_counter() - started
    record["summary"] = summarise(record)
    return record


def train_target(ctx: Context, n_checkpoints: int = 0) -> dict:
    """Train the target model (the one whose utility is reported) and evaluate it."""
    ds = ctx.ds
    with epoch_bar(ctx.cfg.progress, f"{ctx.label} epochs") as bar:
        result = train(
            ctx.build_model(ctx.streams), ctx.x_train, ctx.y_train, recipe=ctx.recipe, hp=ctx.hp,
            grad_sample_mode=ctx.grad_sample_mode, streams=ctx.streams, device=ctx.device, progress=bar,
            n_checkpoints=n_checkpoints, features=ctx.train_features,
            instruments=list(ctx.instruments.values()), task=ctx.task.name,
        )
    ctx.target = result.model
    ctx.checkpoints = result.checkpoints
    test_logits = predict_logits(result.model, torch.from_numpy(ds.test_x), device=ctx.device)
    train_logits = predict_logits(result.model, ctx.x_train, device=ctx.device)
    ctx.writer.save_state_dict("model.safetensors", result.model)
    return {
        "model": {"name": ctx.cfg.model.name, "parameters": int(sum(p.numel() for p in result.model.parameters())),
                  "grad_sample_mode": ctx.grad_sample_mode if ctx.recipe.private else None},
        "privacy": {**ctx.recipe.to_record(), "epsilon_spent": result.epsilon_spent,
                    "reference": ctx.cfg.privacy.reference},
        "train": {**ctx.hp, "steps_taken": result.steps_taken, "empty_batches": result.empty_batches,
                  "wall_time_s": result.wall_time_s,
                  "samples_per_s": result.samples_per_s, "loss_history": result.loss_history},
        "utility": {
            "task": ctx.task.name, "headline": ctx.task.headline,
            "test": ctx.task.utility(test_logits, ds.test_y, ds.info.class_names),
            "train": ctx.task.utility(train_logits, ds.train_y, ds.info.class_names),
            f"test_per_class_{ctx.task.headline}": ctx.task.per_class(test_logits, ds.test_y, ds.info.class_names),
        },
    }


def run_attacks(ctx: Context, timings: dict | None = None) -> dict:
    """Every selected attack, in run order, then what the shared protocols recorded.

    Returns the record's ``attacks`` (one result per attack, each with its threat model),
    ``protocols`` and ``bounds`` (the ReRo bounds, which need no attack), and ``statistics``.
    ``timings`` (stage → seconds) gains each attack's wall time (the first membership attack's
    includes training the shared pool, recorded apart as ``membership_pool`` by its protocol) and
    the protocols' ``finish`` (writing the per-sample scores).
    """
    timings = {} if timings is None else timings
    attacks = {}
    for name, settings in ctx.settings.items():
        mark = time.perf_counter()
        attacks[name] = registry.ATTACKS[name].run(ctx, settings)
        timings[f"attack:{name}"] = time.perf_counter() - mark
    mark = time.perf_counter()
    protocols = {key: protocol.finish() for key, protocol in ctx._shared.items()}
    timings["protocols"] = time.perf_counter() - mark
    if "membership" in protocols:
        timings["membership_pool"] = protocols["membership"]["pool_wall_time_s"]
    return {
        "attacks": attacks,
        "protocols": protocols,
        "bounds": rero_bounds(ctx.recipe, ctx.ds.n_train, ctx.settings),
        "statistics": {"alpha": ctx.alpha, "lower_bounds": registry.lower_bound_count(ctx.settings),
                       "alpha_per_bound": ctx.bound_alpha},
    }


def _fmt(x: float) -> str:
    return "inf" if math.isinf(x) else f"{x:.4g}"

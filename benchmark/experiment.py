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
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from medprivbench.datasets import ImageDataset, load_dataset

from . import store
from .config import is_private
from .errors import ConfigError
from .metrics import per_class_accuracy, utility_metrics
from .models import build_model, grad_sample_mode, split_frozen
from .config import PriorAwareAttackConfig
from .progress import count_bar, epoch_bar
from .reconstruction_run import gradient_inversion_stage, imprint_stage, prior_aware_stage, rero_bounds
from .membership_run import (
    EVALUATION_TARGET,
    THREAT_MODELS,
    audit_summary,
    canary_score,
    membership_metrics,
    score_pool,
    scores_table,
    selected_membership_attacks,
)
from .streams import Streams
from .shadow import make_canaries, train_audit_run, train_pool
from .training import DPRecipe, compute_features, effective_train, make_recipe, predict_logits, train
from .validate import RECONSTRUCTION_ATTACKS, attack_settings, safe_name, validate_config, validate_with_data

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
    target: torch.nn.Module | None = None  # the trained target model, once trained
    checkpoints: list = field(default_factory=list)  # model states along the target's training
    _train_features: torch.Tensor | None = None
    _frozen: object = None  # the fixed feature extractor, False when the model has none, None: unknown

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
        torch.manual_seed(streams.seed_for("init"))
        info = self.ds.info
        return build_model(self.cfg.model, in_channels=info.n_channels, n_classes=info.n_classes, image_size=info.image_size[-1])

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
    validate_config(cfg)
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
    validate_with_data(cfg, ds.n_train)
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
    ctx = Context(cfg=cfg, ds=ds, recipe=recipe, hp=effective_train(cfg.train, float(cfg.privacy.epsilon)),
                  grad_sample_mode=grad_sample_mode(cfg.model), device=device, label=label, writer=writer)
    try:
        record = {
            "schema": store.SCHEMA_VERSION,
            "run_id": run_id,
            "config_hash": store.config_hash(run_config),
            "seed": int(cfg.seed),
            "dataset": {**ds.info.to_record(), "n_train": ds.n_train, "n_test": len(ds.test_y),
                        "n_val": 0 if ds.val_y is None else len(ds.val_y)},
            "environment": {**versions(), "device": str(device), "threads": torch.get_num_threads(),
                            "hostname": platform.node(), "pid": os.getpid()},
        }
        settings = {name: attack_settings(cfg, name) for name in cfg.attack}
        n_states = settings["prior_aware"].n_states if "prior_aware" in settings else 0
        record.update(train_target(ctx, n_checkpoints=n_states))
        record["attacks"] = run_attacks(ctx, settings)
        record["wall_time_s"] = time.perf_counter() - started
        record["summary"] = summarise(record)
        writer.write_text("config.yaml", OmegaConf.to_yaml(OmegaConf.create(run_config)))
        writer.write_json(store.METRICS, record)
        run_dir = writer.publish({"config_hash": record["config_hash"]})
    except BaseException:
        writer.discard()
        raise
    s = record["summary"]
    log.info(
        "%s done in %.1fs: test accuracy %.3f, AUROC %.3f, eps spent %s%s -> %s",
        label, record["wall_time_s"], s["test_accuracy"], s["test_auroc"], _fmt(s["epsilon_spent"]),
        f", best membership AUC {s['mia_best_auc']:.3f}" if "mia_best_auc" in s else "", run_dir,
    )
    return RunOutcome(run_dir, sweep_dir, skipped=False)


def train_target(ctx: Context, n_checkpoints: int = 0) -> dict:
    """Train the target model (the one whose utility is reported) and evaluate it."""
    ds = ctx.ds
    with epoch_bar(ctx.cfg.progress, f"{ctx.label} epochs") as bar:
        result = train(
            ctx.build_model(ctx.streams), ctx.x_train, ctx.y_train, recipe=ctx.recipe, hp=ctx.hp,
            grad_sample_mode=ctx.grad_sample_mode, streams=ctx.streams, device=ctx.device, progress=bar,
            n_checkpoints=n_checkpoints, features=ctx.train_features,
        )
    ctx.target = result.model
    ctx.checkpoints = result.checkpoints
    test_logits = predict_logits(result.model, torch.from_numpy(ds.test_x), device=ctx.device)
    train_logits = predict_logits(result.model, ctx.x_train, device=ctx.device)
    ctx.writer.save_state_dict("model.safetensors", result.model)
    return {
        "model": {"name": ctx.cfg.model.name, "parameters": int(sum(p.numel() for p in result.model.parameters())),
                  "grad_sample_mode": ctx.grad_sample_mode if ctx.recipe.private else None},
        "privacy": {**ctx.recipe.to_record(), "epsilon_spent": result.epsilon_spent},
        "train": {**ctx.hp, "steps_taken": result.steps_taken, "empty_batches": result.empty_batches,
                  "wall_time_s": result.wall_time_s,
                  "samples_per_s": result.samples_per_s, "loss_history": result.loss_history},
        "utility": {
            "test": utility_metrics(test_logits, ds.test_y, ds.info.n_classes),
            "train": utility_metrics(train_logits, ds.train_y, ds.info.n_classes),
            "test_per_class_accuracy": per_class_accuracy(test_logits, ds.test_y, ds.info.class_names),
        },
    }


def run_attacks(ctx: Context, settings: dict) -> dict:
    """Every selected attack; each stage records its threat model beside its results."""
    out: dict = {}
    mia = selected_membership_attacks(settings)
    bound_alpha = ctx.alpha / max(1, lower_bound_count(settings))
    if mia:
        out["membership"] = membership_stage(ctx, mia, bound_alpha)
    if "audit" in settings:
        out["audit"] = audit_stage(ctx, settings["audit"], bound_alpha)
    n_prior = settings["prior_aware"].n_candidates if "prior_aware" in settings else PriorAwareAttackConfig.n_candidates
    recon: dict = {"bounds": rero_bounds(ctx.recipe, ctx.ds.n_train, n_prior)}
    if "prior_aware" in settings:
        recon["prior_aware"] = prior_aware_stage(ctx, settings["prior_aware"], ctx.checkpoints)
    inversion = {name: gradient_inversion_stage(ctx, name, settings[name])
                 for name in ("gradient_inversion", "dlg") if name in settings}
    if "imprint" in settings:
        inversion["imprint"] = imprint_stage(ctx, settings["imprint"])
    if inversion:
        first = next(iter(inversion.values()))
        sigma, clip = (ctx.recipe.noise_multiplier, ctx.recipe.max_grad_norm) if ctx.recipe.private else (0.0, math.inf)
        recon["setting"] = {"model_state": first["model_state"], "batch_size": first["batch_size"],
                            "n_images": first["n_images"], "noise_multiplier": sigma, "max_grad_norm": clip,
                            "images": "training images (members), the client's DP-SGD update of one batch"}
        recon["attacks"] = inversion
    out["reconstruction"] = recon
    return out


def lower_bound_count(settings: dict) -> int:
    """How many empirical ε lower bounds a run computes: the run's α is divided among them, so that
    the largest (the report's check against the accountant) holds at level α in total."""
    return len(selected_membership_attacks(settings)) + ("audit" in settings)


def membership_stage(ctx: Context, attacks: dict, bound_alpha: float) -> dict:
    cfg = ctx.cfg
    queries = list(cfg.membership.queries)
    m = int(cfg.membership.num_models)
    ds = ctx.ds
    # RMIA's population: a held-out split that no model trains on (validation, else test)
    pop_x, pop_y, pop_split = (ds.val_x, ds.val_y, "validation") if ds.val_y is not None and len(ds.val_y) >= 2 else (ds.test_x, ds.test_y, "test")
    log.info("%s membership: training %d models on random halves of the training set with the target's recipe", ctx.label, m)
    with count_bar(cfg.progress, f"{ctx.label} shadow models", total=m, unit="model") as bar:
        pool = train_pool(
            build=ctx.build_model, x=ctx.x_train, y=ctx.y_train, x_test=torch.from_numpy(ds.test_x),
            y_test=ds.test_y, x_population=torch.from_numpy(pop_x), y_population=pop_y, recipe=ctx.recipe, hp=ctx.hp,
            grad_sample_mode=ctx.grad_sample_mode, num_models=m, queries=queries, streams=ctx.streams, device=ctx.device,
            progress=bar, features=ctx.train_features,
        )
    scores = score_pool(pool, attacks, ctx.streams)
    selection = score_pool(pool, attacks, ctx.streams, exclude=EVALUATION_TARGET)
    metrics = membership_metrics(pool, scores, selection, float(cfg.privacy.delta), alpha=ctx.alpha, bound_alpha=bound_alpha,
                                 streams=ctx.streams.of("membership"))
    ctx.writer.write_parquet("membership_scores.parquet", scores_table(pool, scores))
    return {
        "protocol": {"num_models": m, "queries": queries, "pool": "training set", "population": f"{pop_split} split ({len(pop_y)} images)",
                     "evaluation_target": EVALUATION_TARGET, "bootstrap": "two-way cluster (model × image)",
                     "members_per_model_mean": float(pool.member.sum(1).mean()),
                     "pool_test_accuracy_mean": float(np.mean(pool.test_accuracy)),
                     "pool_wall_time_s": pool.wall_time_s},
        "threat_models": {name: THREAT_MODELS[spec["attack"].split("_")[0]] for name, spec in attacks.items()},
        "attacks": metrics,
    }


def audit_stage(ctx: Context, settings, bound_alpha: float) -> dict:
    ds = ctx.ds
    held_x = np.concatenate([a for a in (ds.val_x, ds.test_x) if a is not None and len(a)])
    held_y = np.concatenate([a for a in (ds.val_y, ds.test_y) if a is not None and len(a)])
    streams = ctx.streams.of("audit")
    cx, cy = make_canaries(settings.canary, held_x, held_y, int(settings.n_canaries), ds.info.n_classes, streams.numpy("canaries"))
    log.info("%s one-run audit: training once with %d %s canaries, each included with probability 1/2", ctx.label, len(cy), settings.canary)
    result = train_audit_run(
        build=ctx.build_model, x=ctx.x_train, y=ctx.y_train, canary_x=cx, canary_y=cy, recipe=ctx.recipe, hp=ctx.hp,
        grad_sample_mode=ctx.grad_sample_mode, streams=streams, device=ctx.device, score=canary_score,
        feature_fn=ctx.feature_fn(), features=ctx.train_features,
    )
    out = audit_summary(result, float(ctx.cfg.privacy.delta), guess_fraction=settings.guess_fraction, alpha=bound_alpha)
    out["canary"] = settings.canary
    out["threat_model"] = THREAT_MODELS["audit"]
    return out


def _fmt(x: float) -> str:
    return "inf" if math.isinf(x) else f"{x:.4g}"


def summarise(record: dict) -> dict:
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
    row.update(attack_summary(record.get("attacks", {})))
    row["train_wall_s"] = t["wall_time_s"]
    row["samples_per_s"] = t["samples_per_s"]
    row["run_wall_s"] = record["wall_time_s"]
    row["config_hash"] = record["config_hash"]
    return row


def attack_summary(attacks: dict) -> dict:
    """Flat columns of the attack results: per attack, and the best over attacks."""
    row: dict = {}
    mia = attacks.get("membership", {}).get("attacks", {})
    for name, m in mia.items():
        row[f"mia_{name}_auc"] = m["auc"]
        row[f"mia_{name}_tpr_at_0.1%fpr"] = m["tpr_at_fpr"][0]
        row[f"mia_{name}_tpr_at_1%fpr"] = m["tpr_at_fpr"][1]
        row[f"mia_{name}_epsilon_lb"] = m["empirical_epsilon"]["epsilon_lb"]
    if mia:
        row["mia_best_auc"] = max(m["auc"] for m in mia.values())
        row["mia_best_tpr_at_0.1%fpr"] = max(m["tpr_at_fpr"][0] for m in mia.values())
        row["empirical_epsilon_lb"] = max(m["empirical_epsilon"]["epsilon_lb"] for m in mia.values())
    if "audit" in attacks:
        row["audit_epsilon_lb"] = attacks["audit"]["epsilon_lb"]
    recon = attacks.get("reconstruction", {})
    if "bounds" in recon:
        row["rero_bound_prior"] = recon["bounds"]["rero_prior"]["gamma"]
        row["rero_bound_train"] = recon["bounds"]["rero_train"]["gamma"]
        row["rero_bound_step"] = recon["bounds"]["rero_step"]["gamma"]
    if "prior_aware" in recon:
        row["prior_aware_success"] = recon["prior_aware"]["success_rate"]
        row["prior_aware_ci_high"] = recon["prior_aware"]["ci_high"]
    for name, r in recon.get("attacks", {}).items():
        row[f"recon_{name}_psnr_mean"] = r["psnr_mean"]
        row[f"recon_{name}_ssim_mean"] = r["ssim_mean"]
        row[f"recon_{name}_rero_psnr"] = r["rero"]["psnr"]
    if recon.get("attacks"):
        row["recon_best_rero"] = max(r["rero"]["psnr"] for r in recon["attacks"].values())
    return row

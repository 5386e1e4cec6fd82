"""Membership inference on a trained run: the shared LiRA protocol, the loss, LiRA and RMIA entries, and the
privacy tail (the share of images whose own membership risk is high, on the same pool).

Glue between the models trained by benchmark/shadow.py and the pure scoring and statistics in
``medprivbench.attacks``. The attacks see logits (and, for the shadow-based ones, the shadow
models' logits and membership, and the population images' logits); the ground-truth membership of
the target enters only the metric functions.

The pool of M models (the LiRA evaluation protocol, Carlini et al. 2022) is trained once per run,
the first time a membership attack asks for it (:class:`MembershipProtocol`, shared through the
run's context), and serves every membership attack of the run.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import torch

from medprivbench.attacks import auditing, lira, membership, mia_metrics, privacy_tail

from . import tasks
from .errors import ConfigError
from .families import family
from .families.membership import MembershipResult, VariantMetrics
from .families.tail import TailResult, TailShare
from .progress import count_bar
from .registry import ATTACKS, Attack, register_attack
from .shadow import QUERIES, PoolResult, pool_workers, train_pool
from .tasks import LOGITS

log = logging.getLogger("medprivbench")

FPR_LEVELS = (0.001, 0.01)
N_BOOTSTRAP = 1000  # enough resamples for the tails of Bonferroni-corrected (≈99.6%) intervals
EVALUATION_TARGET = 0  # the pool model held out for the empirical ε (fixed before any score is seen)


class MembershipProtocol:
    """The run's pool of M models on random halves of the training set, each in turn the target.

    ``evaluate`` scores one attack's variants against every target, with interval confidence
    1 − α/(k·(1 + #FPR levels)) for the run's k membership variants (Bonferroni) and the
    empirical ε of :func:`medprivbench.attacks.auditing.held_out_target_epsilon` at the run's
    per-bound level. ``finish`` writes the per-sample scores and returns the protocol's record.
    """

    def __init__(self, ctx):
        cfg, ds = ctx.cfg, ctx.ds
        self.ctx = ctx
        self.m = int(cfg.membership.num_models)
        self.queries = list(cfg.membership.queries)
        # RMIA's population: a held-out split that no model trains on (validation, else test)
        if ds.val_y is not None and len(ds.val_y) >= 2:
            pop_x, pop_y, self.population = ds.val_x, ds.val_y, "validation"
        else:
            pop_x, pop_y, self.population = ds.test_x, ds.test_y, "test"
        log.info("%s membership: training %d models on random halves of the training set with the target's recipe",
                 ctx.label, self.m)
        with count_bar(cfg.progress, f"{ctx.label} shadow models", total=self.m, unit="model") as bar:
            self.pool: PoolResult = train_pool(
                build=ctx.model_builder, x=ctx.x_train, y=ctx.y_train, x_test=torch.from_numpy(ds.test_x), y_test=ds.test_y,
                x_population=torch.from_numpy(pop_x), y_population=pop_y, recipe=ctx.recipe, hp=ctx.hp,
                grad_sample_mode=ctx.grad_sample_mode, num_models=self.m, queries=self.queries, streams=ctx.streams,
                device=ctx.device, progress=bar, features=ctx.train_features,
                workers=pool_workers(int(cfg.shadow_workers), self.m, ctx.device), task=ctx.task.name,
            )
        n_variants = sum(len(ATTACKS[name].variant_labels(s)) for name, s in ctx.settings.items()
                         if ATTACKS[name].family is MembershipAttack.family)
        self.confidence = 1.0 - ctx.alpha / (max(1, n_variants) * (1 + len(FPR_LEVELS)))
        self.scores: dict[str, np.ndarray] = {}

    def _score(self, variant: str, attack: str, options: dict, exclude: int | None, signal: str) -> np.ndarray:
        pool = self.pool
        logits, population = pool.signal(signal)
        return membership.score_all_targets(
            attack, logits, pool.labels, pool.member,
            population_logits=population, population_labels=pool.population_labels,
            exclude=exclude, seed=self.ctx.streams.of(variant).seed_for("attack"), **options,
        )

    def evaluate(self, variants: dict[str, tuple]) -> dict[str, dict]:
        """Metrics of each variant (key → (scoring function of ``membership.SCORERS``, its options[,
        the pool's signal it reads: the first without one]))."""
        member = self.pool.member
        m, n = member.shape
        clusters = (np.repeat(np.arange(m), n), np.tile(np.arange(n), m))
        others = np.arange(m) != EVALUATION_TARGET
        out = {}
        for variant, (attack, options, *signal) in variants.items():
            signal = signal[0] if signal else None
            scores = self._score(variant, attack, options, None, signal)
            selection = self._score(variant, attack, options, EVALUATION_TARGET, signal)
            metrics = mia_metrics.roc_metrics(scores.ravel(), member.ravel(), fpr_levels=FPR_LEVELS, confidence=self.confidence,
                                              n_bootstrap=N_BOOTSTRAP, clusters=clusters,
                                              seed=self.ctx.streams.of(variant).seed_for("statistics"))
            metrics["empirical_epsilon"] = auditing.held_out_target_epsilon(
                selection[others], member[others], scores[EVALUATION_TARGET], member[EVALUATION_TARGET],
                float(self.ctx.cfg.privacy.delta), alpha=self.ctx.bound_alpha)
            self.scores[variant] = scores
            out[variant] = metrics
        return out

    def finish(self) -> dict:
        self.ctx.writer.write_parquet("membership_scores.parquet", scores_table(self.pool, self.scores, self.ctx.ds.train_groups))
        pool = self.pool
        return {"num_models": self.m, "queries": self.queries, "pool": "training set",
                "population": f"{self.population} split ({len(pool.population_labels)} images)",
                "evaluation_target": EVALUATION_TARGET, "bootstrap": "two-way cluster (model × image)",
                "members_per_model_mean": float(pool.member.sum(1).mean()),
                f"pool_test_{self.ctx.task.headline}_mean": float(np.mean(pool.test_accuracy)), "pool_wall_time_s": pool.wall_time_s}


def scores_table(pool: PoolResult, scores: dict[str, np.ndarray], groups: np.ndarray | None = None) -> pd.DataFrame:
    """Per-sample scores, one row per (target model, sample): saved as Parquet with the run
    (with each image's subgroup, e.g. "rare finding", where the dataset names one)."""
    m, n = pool.member.shape
    df = pd.DataFrame({
        "target_model": np.repeat(np.arange(m), n),
        "sample": np.tile(np.arange(n), m),
        "label": np.tile(pool.labels, m),
        "member": pool.member.ravel(),
    })
    if groups is not None:
        df["group"] = np.tile(np.asarray(groups, dtype=str), m)
    for name, s in scores.items():
        df[f"score_{name}"] = s.ravel().astype(np.float64)
    return df


# ----------------------------------------------------------------------------- the entries
class MembershipAttack(Attack):
    """A membership attack: its variants scored on the run's shared pool (:class:`MembershipProtocol`)."""

    family = family("membership")
    threat = "black_box"
    shadows: bool = True  # whether it needs shadow/reference models (one more pool model)

    def scorers(self, ctx, settings) -> dict[str, tuple[str, dict]]:
        """Each base variant's scoring function (a key of ``medprivbench.attacks.membership.SCORERS``) and its options."""
        raise NotImplementedError

    def base_variants(self, settings) -> dict[str, str]:
        """The variants on one signal, key → label (LiRA: online and offline)."""
        return {self.name: self.label}

    def variants(self, settings) -> dict[str, str]:
        """Each base variant on each signal of ``settings.signals``: a classifier's logits and a
        segmenter's loss keep the base key; a segmenter's Dice adds ``_dice`` (``lira_online_dice``)."""
        return {signal_key(key, s): text if s == LOGITS else f"{text} ({SIGNAL_NAMES[s]})"
                for key, text in self.base_variants(settings).items() for s in signals_of(settings)}

    def every_variant(self) -> dict[str, str]:
        from dataclasses import replace

        every: dict[str, str] = {}
        if not hasattr(self.schema(), "signals"):
            return self.variants(self.schema())
        for s in membership.SIGNALS:  # a key shared by two signals (logits, loss) keeps the first's label
            for key, text in self.variants(replace(self.schema(), signals=[s])).items():
                every.setdefault(key, text)
        return every

    def run(self, ctx, settings) -> MembershipResult:
        protocol = ctx.shared("membership", MembershipProtocol)
        metrics = protocol.evaluate({signal_key(key, s): (scorer, options, s)
                                     for key, (scorer, options) in self.scorers(ctx, settings).items()
                                     for s in signals_of(settings)})
        return MembershipResult(threat_model=self.threat_model,
                                variants={k: VariantMetrics.from_record(m) for k, m in metrics.items()})

    def lower_bounds(self, settings) -> int:
        return len(self.variants(settings))  # one empirical ε per variant

    def check(self, settings, cfg) -> None:
        check_queries(cfg)
        check_pool(cfg, shadows=self.shadows, name=self.name)
        check_signals(signals_of(settings), cfg, self.name)


SIGNAL_NAMES = {"loss": "per-image loss", "dice": "per-image Dice"}


def signals_of(settings) -> list[str]:
    """The per-image signals an attack's settings ask for (a classifier's logits for schemas without ``signals``)."""
    return list(getattr(settings, "signals", None) or [LOGITS])


def signal_key(key: str, signal: str) -> str:
    """A variant's key on one signal: the base key, or ``<key>_<signal>`` for a segmenter's Dice."""
    return key if signal in (LOGITS, "loss") else f"{key}_{signal}"


def check_signals(signals: list, cfg, name: str) -> None:
    """The signals must be the task's: a classifier's logits, or a segmenter's loss and/or Dice."""
    task = tasks.of_config(cfg)
    offered = task.signals
    if not signals or len(set(signals)) != len(signals) or any(s not in offered for s in signals):
        raise ConfigError(f"attack.{name}.signals={list(signals)} is not valid for task={task.name}; choose a non-empty "
                          f"list without repeats from {', '.join(offered)}")


def check_queries(cfg) -> None:
    queries = list(cfg.membership.queries)
    if not queries or any(q not in QUERIES for q in queries):
        raise ConfigError(f"membership.queries={queries} is not valid; choose a non-empty list from {', '.join(QUERIES)}")


def check_pool(cfg, *, shadows: bool, name: str) -> None:
    """Membership attacks need a pool: at least 2 models, 3 when the attack uses shadows (one held out)."""
    m = int(cfg.membership.num_models)
    if m < 2:
        raise ConfigError(f"membership.num_models={m} is too small; membership attacks need at least 2 models "
                          "(one held out for the empirical ε)")
    if shadows and m < 3:
        raise ConfigError(f"membership.num_models={m} is too small for attack {name!r}, which needs shadow models; "
                          "use at least 3 (1 target, 1 shadow, 1 held out for the empirical ε)")


@register_attack
class Loss(MembershipAttack):
    name, label, schema, shadows = "loss", "loss threshold", membership.LossConfig, False
    threat_model = "black box: the target model's loss on the candidate image and its label; no shadow models"

    def scorers(self, ctx, settings) -> dict[str, tuple[str, dict]]:
        return {"loss": ("loss", {})}


@register_attack
class LiRA(MembershipAttack):
    name, label, schema = "lira", "LiRA", membership.LiRAConfig
    threat_model = ("black box: the target model's logits on the candidate (and its horizontal flip), plus shadow models "
                    "the attacker trained with the same recipe on data from the same population, knowing which shadows "
                    "saw the candidate (online) or using only those that did not (offline)")

    def base_variants(self, settings) -> dict[str, str]:
        return {f"lira_{mode}": f"LiRA {mode}" for mode in ("online", "offline") if getattr(settings, mode)}

    def scorers(self, ctx, settings) -> dict[str, tuple[str, dict]]:
        n_shadows = int(ctx.cfg.membership.num_models) - 1
        # the fixed-variance variant for few shadows (Carlini et al.)
        fixed = lira.fixed_variance_for(settings.variance, n_shadows)
        return {key: (key, {"fixed_variance": fixed}) for key in self.base_variants(settings)}

    def check(self, settings, cfg) -> None:
        super().check(settings, cfg)
        m = int(cfg.membership.num_models)
        if settings.online and m < 5:
            raise ConfigError(f"membership.num_models={m} is too small for online LiRA, which fits IN and OUT Gaussians from "
                              "the shadow models; use at least 5 (16 or more recommended) or attack.lira.online=false")


@register_attack
class RMIA(MembershipAttack):
    name, label, schema = "rmia", "RMIA", membership.RMIAConfig
    threat_model = ("black box: the target model's logits on the candidate and on population images none of the models "
                    "trained on, plus a few reference models trained with the same recipe")

    def scorers(self, ctx, settings) -> dict[str, tuple[str, dict]]:
        options = {"online": settings.online, "gamma": settings.gamma, "n_references": settings.n_references}
        if not settings.online:
            options["offline_a"] = settings.offline_a
        return {"rmia": ("rmia", options)}

    def check(self, settings, cfg) -> None:
        super().check(settings, cfg)
        m = int(cfg.membership.num_models)
        need = 2 * settings.n_references if settings.online else settings.n_references
        # one model is held out for the empirical ε, and each target needs its references among the rest
        if m - 2 < need:
            raise ConfigError(
                f"membership.num_models={m} leaves {m - 2} reference models (one target, one held out), too few for "
                f"attack.rmia.n_references={settings.n_references}{' (online needs twice as many)' if settings.online else ''}; "
                f"use num_models ≥ {need + 2}")


# ----------------------------------------------------------------------------- the privacy tail
TAIL_FILE = "tail_records.parquet"  # per-image values of the tail (report/tail_risk.py reads it back)
TAIL_MIN_MODELS = 4


@register_attack
class PrivacyTailAttack(Attack):
    """The share of images whose per-record risk over the pool is high, against membership permuted
    across the pool's models (attacks/privacy_tail.py)."""

    name, label, schema = "tail", "privacy tail (per-record risk)", privacy_tail.PrivacyTailConfig
    family, threat = family("tail"), "black_box"
    threat_model = ("black box, per image: the scaled confidence of each pool model on the image (and its flip), "
                    "knowing which models trained on it; the share of images whose in and out scores separate, "
                    "against chance given by permuting that membership across the models")

    def run(self, ctx, settings) -> TailResult:
        pool = ctx.shared("membership", MembershipProtocol).pool
        result, table = pool_tail(pool.logits, pool.labels, pool.member, settings, alpha=ctx.alpha,
                                  seed=ctx.streams.of(self.name).seed_for("statistics"), threat_model=self.threat_model)
        ctx.writer.write_parquet(TAIL_FILE, table)
        return result

    def check(self, settings, cfg) -> None:
        check_queries(cfg)
        m = int(cfg.membership.num_models)
        # with 3 models an image is in 1 or 2 of them: its AUC is 0, ½ or 1 (1 by chance with probability 1/3)
        # and one of its Gaussians rests on a single model; from 4 an image can have two models on each side
        if m < TAIL_MIN_MODELS:
            raise ConfigError(f"membership.num_models={m} is too small for attack 'tail', which measures each image's risk "
                              f"over the pool's models; use at least {TAIL_MIN_MODELS} (16 or more for per-record AUCs "
                              "that chance rarely reaches)")


def pool_tail(logits: np.ndarray, labels: np.ndarray, member: np.ndarray, settings, *, alpha: float, seed: int,
              threat_model: str) -> tuple[TailResult, pd.DataFrame]:
    """The privacy tail of a pool of models (M, N logits, their M × N membership): its typed result
    and its per-record table. The sweep's pool and the audit's reference models both go through here."""
    m = member.shape[0]
    shares = 2  # one per criterion: their intervals share α (Bonferroni)
    analysis = privacy_tail.privacy_tail(
        privacy_tail.record_scores(logits, labels), member, auc_threshold=settings.auc_threshold,
        tpr_threshold=settings.tpr_threshold, fpr=settings.fpr, permutations=settings.permutations,
        fixed_variance=lira.fixed_variance_for(settings.variance, m), confidence=1.0 - alpha / shares, seed=seed)
    risk = analysis.observed
    exposed = [{"record": int(j), "label": int(labels[j]), "auc": float(risk.auc[j]), "tpr": float(risk.tpr[j])}
               for j in analysis.most_exposed(settings.most_exposed)]
    result = TailResult(
        threat_model=threat_model, n_models=m, fpr=analysis.fpr, confidence=analysis.confidence,
        null_quantile=analysis.null_quantile, permutations=settings.permutations,
        variance="fixed" if analysis.fixed_variance else "per_record",
        n_records=next(iter(analysis.shares.values())).n_records,
        mean_auc=float(np.nanmean(risk.auc)), mean_tpr=float(np.nanmean(risk.tpr)), most_exposed=exposed,
        records_file=TAIL_FILE,
        shares={key: TailShare(criterion=s.criterion, threshold=s.threshold, share=s.share, ci=s.ci, count=s.count,
                               null_mean=s.null_mean, null_upper=s.null_upper, details={"null_shares": s.null_shares})
                for key, s in analysis.shares.items()})
    return result, tail_table(analysis, labels)


def tail_table(analysis: privacy_tail.TailAnalysis, labels: np.ndarray) -> pd.DataFrame:
    """Per image and membership assignment (observed, then each permutation): per-record AUC and TPR."""
    parts = []
    for index, risk in enumerate([analysis.observed, *analysis.null]):
        parts.append(pd.DataFrame({
            "membership": "observed" if index == 0 else "permuted", "permutation": index - 1,
            "record": np.arange(risk.auc.size), "label": labels, "n_in": risk.n_in, "auc": risk.auc, "tpr": risk.tpr}))
    return pd.concat(parts, ignore_index=True)

"""Membership inference and auditing for one run: attack scores, metrics, empirical ε.

Glue between the models trained by benchmark/shadow.py and the pure scoring and statistics in
``medprivbench.attacks``. The attacks see logits (and, for the shadow-based ones, the shadow
models' logits and membership); the ground-truth membership of the target enters only the metric
functions.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from medprivbench.attacks import auditing, membership, mia_metrics

from .shadow import AuditRunResult, PoolResult
from .streams import Streams

log = logging.getLogger("medprivbench")

FPR_LEVELS = (0.001, 0.01)
N_BOOTSTRAP = 1000  # enough resamples for the tails of Bonferroni-corrected (≈99.6%) intervals

# What each attacker sees, in plain words (printed with the results: breaching's lesson).
THREAT_MODELS = {
    "loss": "black box: the target model's loss on the candidate image and its label; no shadow models",
    "lira": "black box: the target model's logits on the candidate (and its horizontal flip), plus shadow models "
            "the attacker trained with the same recipe on data from the same population, knowing which shadows "
            "saw the candidate (online) or using only those that did not (offline)",
    "rmia": "black box: the target model's logits on the candidate and on population images, plus a few reference "
            "models trained with the same recipe",
    "audit": "auditor who inserts canaries (held-out images with a wrong label), each with probability 1/2, into one "
             "training run and sees only the final model's outputs on them",
}


def selected_membership_attacks(settings: dict) -> dict[str, dict]:
    """Scoring functions to run, by display name, with their options (from the attack configs)."""
    out: dict[str, dict] = {}
    if "loss" in settings:
        out["loss"] = {"attack": "loss", "options": {}}
    if "lira" in settings:
        lira = settings["lira"]
        for mode in ("online", "offline"):
            if getattr(lira, mode):
                out[f"lira_{mode}"] = {"attack": f"lira_{mode}", "options": {"variance": lira.variance}}
    if "rmia" in settings:
        rmia = settings["rmia"]
        options = {"online": rmia.online, "gamma": rmia.gamma}
        if not rmia.online:
            options["offline_a"] = rmia.offline_a
        out["rmia"] = {"attack": "rmia", "options": options, "n_references": rmia.n_references}
    return out


EVALUATION_TARGET = 0  # the pool model held out for the empirical ε (fixed before any score is seen)


def score_pool(pool: PoolResult, attacks: dict[str, dict], streams: Streams, exclude: int | None = None) -> dict[str, np.ndarray]:
    """(M, N) scores of every selected attack, every pool model in turn the target.

    ``exclude``: a model left out as target and as reference (its row is NaN), see
    :func:`medprivbench.attacks.membership.score_all_targets`.
    """
    scores = {}
    n_shadows = pool.num_models - 1 - (exclude is not None)
    for name, spec in attacks.items():
        options = dict(spec["options"])
        variance = options.pop("variance", None)
        if variance is not None:  # LiRA: the fixed-variance variant for few shadows (Carlini et al.)
            options["fixed_variance"] = variance == "fixed" or (variance == "auto" and n_shadows < 64)
        scores[name] = membership.score_all_targets(
            spec["attack"], pool.logits, pool.labels, pool.member,
            population_logits=pool.population_logits, population_labels=pool.population_labels,
            n_references=spec.get("n_references"), exclude=exclude, seed=streams.of(name).seed_for("attack"), **options,
        )
    return scores


def membership_metrics(pool: PoolResult, scores: dict[str, np.ndarray], selection: dict[str, np.ndarray], delta: float, *,
                       alpha: float, bound_alpha: float, streams: Streams) -> dict:
    """ROC metrics with cluster-bootstrap intervals and an empirical ε lower bound per attack.

    Simultaneous inference (Bonferroni): with k attacks, each AUC and TPR@FPR interval has
    confidence 1 − α·k⁻¹/(1 + #FPR levels), so that "some attack beats chance" is still a statement
    at level α, not the luckiest of many 95% intervals. ``bound_alpha`` is the level of each
    empirical ε bound (the run divides its family-wise α among all its bounds, benchmark/experiment.py).
    Intervals resample models and images as crossed clusters (``mia_metrics._cluster_bootstrap``);
    the ε bound counts guesses on one held-out target (``auditing.held_out_target_epsilon``), with
    ``selection`` the scores computed without that target.
    """
    member = pool.member
    m, n = member.shape
    clusters = (np.repeat(np.arange(m), n), np.tile(np.arange(n), m))
    k = max(1, len(scores))
    confidence = 1.0 - alpha / (k * (1 + len(FPR_LEVELS)))
    others = np.arange(m) != EVALUATION_TARGET
    out = {}
    for name, s in scores.items():
        metrics = mia_metrics.roc_metrics(s.ravel(), member.ravel(), fpr_levels=FPR_LEVELS, confidence=confidence,
                                          n_bootstrap=N_BOOTSTRAP, clusters=clusters,
                                          seed=streams.of(name).seed_for("statistics"))
        metrics["empirical_epsilon"] = auditing.held_out_target_epsilon(
            selection[name][others], member[others], s[EVALUATION_TARGET], member[EVALUATION_TARGET], delta, alpha=bound_alpha)
        out[name] = metrics
    return out


def scores_table(pool: PoolResult, scores: dict[str, np.ndarray]) -> pd.DataFrame:
    """Per-sample scores, one row per (target model, sample): saved as Parquet with the run."""
    m, n = pool.member.shape
    df = pd.DataFrame({
        "target_model": np.repeat(np.arange(m), n),
        "sample": np.tile(np.arange(n), m),
        "label": np.tile(pool.labels, m),
        "member": pool.member.ravel(),
    })
    for name, s in scores.items():
        df[f"score_{name}"] = s.ravel().astype(np.float64)
    return df


def audit_summary(result: AuditRunResult, delta: float, *, guess_fraction: float, alpha: float) -> dict:
    m = len(result.scores)
    k = max(1, int(round(guess_fraction * m)))
    out = auditing.one_run_audit(result.scores, result.included, delta, k_plus=k, k_minus=k, alpha=alpha)
    out["n_included"] = int(result.included.sum())
    out["wall_time_s"] = result.wall_time_s
    return out


def canary_score(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Black-box canary score: the scaled confidence φ of the canary's (wrong) label."""
    return membership.logit_confidence(logits, labels)

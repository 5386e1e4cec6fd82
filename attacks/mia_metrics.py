"""Membership inference metrics: ROC, AUC, balanced accuracy, TPR at low FPR, bootstrap intervals,
and the per-sample AUC of each training image.

The metrics of the benchmark's design ("Membership metrics"): the ROC curve (kept on a log-spaced
FPR grid for log-log plots), AUC, the best balanced accuracy over thresholds, and TPR at FPR 0.1%
and 1% as recommended by Carlini et al., "Membership Inference Attacks From First Principles"
(IEEE S&P 2022). Everything returned is JSON-friendly (Python floats, ints and lists).

Scores follow the convention of :mod:`medprivbench.attacks.membership`: higher = more likely a
member. This module is where ground truth (``is_member``) meets the attack's scores.

:func:`per_record_auc` (arrays) and :func:`per_sample_auc` (a saved scores table) are the per-image risk of
the report: the AUC of one image's scores over the models of the LiRA protocol (each image in about half
of their training sets).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.special import comb
from scipy.stats import rankdata
from sklearn.metrics import roc_auc_score, roc_curve


def _validate(scores: np.ndarray, is_member: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64)
    is_member = np.asarray(is_member)
    if scores.ndim != 1:
        raise ValueError(f"scores has shape {scores.shape}; expected a 1-D array (flatten (M, N) scores first)")
    if is_member.shape != scores.shape:
        raise ValueError(f"is_member has shape {is_member.shape}; expected {scores.shape} like scores")
    if is_member.dtype != np.bool_:
        raise ValueError(f"is_member has dtype {is_member.dtype}; expected bool")
    if not np.all(np.isfinite(scores)):
        raise ValueError("scores contain NaN or infinite values; expected finite scores")
    n_members = int(is_member.sum())
    if n_members == 0 or n_members == is_member.size:
        raise ValueError(
            f"is_member holds {n_members} members and {is_member.size - n_members} non-members; both must be present"
        )
    return scores, is_member


def tpr_at_fpr(fpr: np.ndarray, tpr: np.ndarray, level: float) -> float:
    """The largest TPR among ROC points whose FPR ≤ level (0 when only the origin qualifies).

    ``fpr``/``tpr`` are a full ROC curve (e.g. sklearn ``roc_curve(..., drop_intermediate=False)``,
    which starts at the origin), FPR sorted ascending.
    """
    return float(tpr[np.searchsorted(fpr, level, side="right") - 1])


def _ranked_blocks(scores: np.ndarray, is_member: np.ndarray) -> tuple[np.ndarray, int]:
    """Block index of each sample, blocks ordered by descending score.

    A block is one distinct score value, except that consecutive distinct scores held only by
    members (or only by non-members) are merged: inside such a run the ROC curve is a straight
    vertical (horizontal) segment, so AUC and the largest TPR at FPR ≤ level depend only on its
    ends. This halves the work of each bootstrap replicate and changes no result.
    """
    distinct, inverse = np.unique(scores, return_inverse=True)
    n_distinct = distinct.size
    group = n_distinct - 1 - inverse
    has_member = np.bincount(group[is_member], minlength=n_distinct) > 0
    has_nonmember = np.bincount(group[~is_member], minlength=n_distinct) > 0
    kind = has_member.astype(np.int8) + 2 * has_nonmember.astype(np.int8)  # 1 members, 2 non-members, 3 both
    starts_block = np.ones(n_distinct, dtype=bool)
    starts_block[1:] = (kind[1:] != kind[:-1]) | (kind[1:] == 3)
    block_of_group = np.cumsum(starts_block) - 1
    return block_of_group[group], int(block_of_group[-1]) + 1


def _weighted_roc_summary(
    positive_weight: np.ndarray, negative_weight: np.ndarray, fpr_levels: np.ndarray
) -> tuple[float, np.ndarray]:
    """AUC and TPR@FPR levels from per-block weights of members/non-members (blocks of
    :func:`_ranked_blocks`, in descending score order).

    Written by hand for the bootstrap: a resample of the scores is the original sorted scores with
    integer multiplicities, so each replicate needs two cumulative sums instead of sklearn's sort
    of 80,000 scores, which would take seconds for 200 replicates. With unit weights it reproduces
    ``roc_auc_score`` (ties count ½) and :func:`tpr_at_fpr` on sklearn's curve exactly; the tests check this.
    """
    true_positives = np.cumsum(positive_weight)
    false_positives = np.cumsum(negative_weight)
    total_positive, total_negative = true_positives[-1], false_positives[-1]
    # Each non-member ranks below the members of higher blocks and ties with half of its own block
    # (a block holding both classes is a single score value).
    # (An elementwise product and sum, not np.dot: BLAS threading makes dot slower on a busy machine.)
    auc = float((negative_weight * (true_positives - 0.5 * positive_weight)).sum() / (total_positive * total_negative))
    # Number of ROC points after the origin whose FPR <= level; 0 leaves only the origin (TPR 0).
    n_within = np.searchsorted(false_positives / total_negative, fpr_levels, side="right")
    tpr = np.where(n_within > 0, true_positives[np.maximum(n_within - 1, 0)] / total_positive, 0.0)
    return auc, tpr


def _bootstrap(
    scores: np.ndarray, is_member: np.ndarray, fpr_levels: np.ndarray, n_bootstrap: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Stratified bootstrap: members and non-members resampled separately (their counts stay fixed).

    Returns AUCs (B,) and TPRs (B, len(fpr_levels)).
    """
    block, n_blocks = _ranked_blocks(scores, is_member)
    member_blocks, nonmember_blocks = block[is_member], block[~is_member]
    n_members, n_nonmembers = member_blocks.size, nonmember_blocks.size
    rng = np.random.default_rng(seed)
    aucs = np.empty(n_bootstrap)
    tprs = np.empty((n_bootstrap, fpr_levels.size))
    for replicate in range(n_bootstrap):
        positive_weight = np.bincount(member_blocks[rng.integers(0, n_members, n_members)], minlength=n_blocks)
        negative_weight = np.bincount(nonmember_blocks[rng.integers(0, n_nonmembers, n_nonmembers)], minlength=n_blocks)
        aucs[replicate], tprs[replicate] = _weighted_roc_summary(positive_weight, negative_weight, fpr_levels)
    return aucs, tprs


def _cluster_bootstrap(
    scores: np.ndarray, is_member: np.ndarray, clusters: tuple[np.ndarray, np.ndarray], fpr_levels: np.ndarray,
    n_bootstrap: int, seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Two-way cluster bootstrap over the crossed factors (model, image): Owen's pigeonhole bootstrap.

    In the LiRA protocol every score belongs to one target model and one image, and both carry
    effects shared by all their scores (an atypical image is easy to spot against every model; one
    model may overfit more than another). Resampling the M·N pairs as if independent ignores that
    and gives intervals that are too narrow. Here each replicate draws the M models and the N
    images with replacement, independently, and weights pair (m, i) by (times m drawn) × (times i
    drawn) (Owen, "The pigeonhole bootstrap", Ann. Appl. Stat. 2007). Its variance estimate is
    mildly conservative for crossed random effects; tests/attacks/test_mia_metrics.py measures the
    coverage.

    Returns AUCs (B,) and TPRs (B, len(fpr_levels)); a replicate that draws no member or no
    non-member (possible only with very few pairs) is NaN and ignored by the quantiles.
    """
    model_of, image_of = (np.asarray(c) for c in clusters)
    model_ids, model_of = np.unique(model_of, return_inverse=True)
    image_ids, image_of = np.unique(image_of, return_inverse=True)
    n_models, n_images = model_ids.size, image_ids.size
    block, n_blocks = _ranked_blocks(scores, is_member)
    rng = np.random.default_rng(seed)
    aucs = np.full(n_bootstrap, np.nan)
    tprs = np.full((n_bootstrap, fpr_levels.size), np.nan)
    for replicate in range(n_bootstrap):
        model_weight = np.bincount(rng.integers(0, n_models, n_models), minlength=n_models)
        image_weight = np.bincount(rng.integers(0, n_images, n_images), minlength=n_images)
        weight = (model_weight[model_of] * image_weight[image_of]).astype(np.float64)
        positive = np.bincount(block[is_member], weights=weight[is_member], minlength=n_blocks)
        negative = np.bincount(block[~is_member], weights=weight[~is_member], minlength=n_blocks)
        if positive.sum() > 0 and negative.sum() > 0:
            aucs[replicate], tprs[replicate] = _weighted_roc_summary(positive, negative, fpr_levels)
    return aucs, tprs


def downsample_roc(fpr: np.ndarray, tpr: np.ndarray, n_points: int, min_fpr: float) -> tuple[np.ndarray, np.ndarray]:
    """At most about ``n_points`` + 2 points of a full ROC curve for log-log plots.

    For each FPR on a log-spaced grid from ``min_fpr`` to 1, keeps the ROC point with the largest
    TPR at FPR ≤ grid value (a point of the curve, not an interpolation), plus the origin and (1, 1).
    """
    grid = np.logspace(np.log10(min_fpr), 0.0, n_points)
    index = np.unique(np.concatenate(([0, fpr.size - 1], np.searchsorted(fpr, grid, side="right") - 1)))
    return fpr[index], tpr[index]


def _validate_options(
    shape: tuple[int, ...], fpr_levels: Sequence[float], confidence: float, n_bootstrap: int, n_roc_points: int,
    clusters: tuple[np.ndarray, np.ndarray] | None,
) -> np.ndarray:
    """Check :func:`roc_metrics`' options (one error naming the bad value); returns the FPR levels as an array."""
    levels = np.asarray(fpr_levels, dtype=np.float64)
    if levels.ndim != 1 or levels.size == 0 or np.any((levels <= 0) | (levels >= 1)):
        raise ValueError(f"fpr_levels={list(fpr_levels)}; expected a non-empty sequence of values in (0, 1)")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence={confidence}; expected a value in (0, 1)")
    if not (isinstance(n_bootstrap, int | np.integer) and n_bootstrap >= 0):
        raise ValueError(f"n_bootstrap={n_bootstrap}; expected a non-negative integer")
    if not (isinstance(n_roc_points, int | np.integer) and n_roc_points >= 2):
        raise ValueError(f"n_roc_points={n_roc_points}; expected an integer >= 2")
    if clusters is not None and (len(clusters) != 2 or any(np.shape(c) != shape for c in clusters)):
        raise ValueError(f"clusters must be two arrays of shape {shape} (model and image of each score)")
    return levels


def _bootstrap_intervals(
    scores: np.ndarray, is_member: np.ndarray, levels: np.ndarray, n_bootstrap: int, seed: int, confidence: float,
    clusters: tuple[np.ndarray, np.ndarray] | None,
) -> tuple[list[float], list[list[float]]]:
    """Percentile intervals at ``confidence`` of the AUC and of the TPR at each FPR level: the
    two-way cluster bootstrap with ``clusters``, the stratified independent one without."""
    if clusters is None:
        boot_aucs, boot_tprs = _bootstrap(scores, is_member, levels, n_bootstrap, seed)
    else:
        boot_aucs, boot_tprs = _cluster_bootstrap(scores, is_member, clusters, levels, n_bootstrap, seed)
    quantiles = [(1.0 - confidence) / 2.0, (1.0 + confidence) / 2.0]
    auc_ci = [float(q) for q in np.nanquantile(boot_aucs, quantiles)]
    tpr_ci = [[float(q) for q in np.nanquantile(boot_tprs[:, k], quantiles)] for k in range(levels.size)]
    return auc_ci, tpr_ci


def roc_metrics(
    scores: np.ndarray, is_member: np.ndarray, *, fpr_levels: Sequence[float] = (0.001, 0.01), n_bootstrap: int = 200,
    seed: int = 0, confidence: float = 0.95, n_roc_points: int = 300, clusters: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict:
    """ROC metrics of a membership inference attack, with bootstrap confidence intervals.

    - ``auc``: area under the ROC curve (sklearn ``roc_auc_score``; ties count ½).
    - ``best_balanced_accuracy``: max over thresholds of (TPR + TNR)/2 on the ROC curve; an
      optimistic figure, since the threshold is chosen with the ground truth.
    - ``tpr_at_fpr``: for each level, the largest TPR whose FPR ≤ level (sklearn ``roc_curve``
      with all thresholds kept; dropping "intermediate" points could lower it).
    - ``auc_ci``, ``tpr_at_fpr_ci``: percentile bootstrap intervals at ``confidence``
      (``n_bootstrap`` replicates, ``seed``); None when ``n_bootstrap`` is 0. With ``clusters``
      (the model and the image of each score) the two-way cluster bootstrap of
      :func:`_cluster_bootstrap`; without, members and non-members resampled separately as
      independent scores (right only when they are). Where FPR level × non-members < 1, TPR@FPR is the TPR at FPR 0 and its
      interval mostly reflects that too few non-members were scored to resolve the level.
    - ``roc_curve``: {"fpr": [...], "tpr": [...]} downsampled on a log-spaced FPR grid from
      1/n_nonmembers to 1, so the low-FPR region survives on log-log axes.

    Args:
        scores: (n,) finite scores, higher = more likely a member.
        is_member: (n,) bool ground truth; both classes must be present.
        fpr_levels: FPR levels in (0, 1).
        n_bootstrap: number of bootstrap replicates (0 skips the intervals).
        seed: seed of the bootstrap.
        confidence: two-sided level of the intervals, in (0, 1).
        n_roc_points: size of the log-spaced FPR grid of the downsampled curve (≥ 2).
        clusters: (model ids, image ids), two (n,) arrays naming the model and the image of each
            score, or None for independent scores.

    Returns:
        dict with n_members, n_nonmembers, auc, auc_ci, best_balanced_accuracy, fpr_levels,
        tpr_at_fpr, tpr_at_fpr_ci, confidence, n_bootstrap, bootstrap ("cluster" or "independent"),
        roc_curve.
    """
    scores, is_member = _validate(scores, is_member)
    levels = _validate_options(scores.shape, fpr_levels, confidence, n_bootstrap, n_roc_points, clusters)
    n_members = int(is_member.sum())
    n_nonmembers = int(is_member.size - n_members)
    point = _point_metrics(scores, is_member, levels, n_roc_points, min_fpr=1.0 / n_nonmembers)
    auc_ci = tpr_ci = None
    if n_bootstrap > 0:
        auc_ci, tpr_ci = _bootstrap_intervals(scores, is_member, levels, n_bootstrap, seed, confidence, clusters)
    return {
        "n_members": n_members,
        "n_nonmembers": n_nonmembers,
        "auc": point["auc"],
        "auc_ci": auc_ci,
        "best_balanced_accuracy": point["best_balanced_accuracy"],
        "fpr_levels": [float(level) for level in levels],
        "tpr_at_fpr": point["tpr_at_fpr"],
        "tpr_at_fpr_ci": tpr_ci,
        "confidence": float(confidence),
        "n_bootstrap": int(n_bootstrap),
        "bootstrap": "independent" if clusters is None else "cluster",
        "roc_curve": point["roc_curve"],
    }


def _point_metrics(scores: np.ndarray, is_member: np.ndarray, levels: np.ndarray, n_roc_points: int,
                   min_fpr: float) -> dict:
    """The metrics of :func:`roc_metrics` read off the full ROC curve (every threshold kept): auc,
    best_balanced_accuracy, tpr_at_fpr at each level, and the curve itself downsampled (roc_curve)."""
    fpr, tpr, _ = roc_curve(is_member, scores, drop_intermediate=False)
    curve_fpr, curve_tpr = downsample_roc(fpr, tpr, n_roc_points, min_fpr=min_fpr)
    return {
        "auc": float(roc_auc_score(is_member, scores)),
        "best_balanced_accuracy": float(np.max((tpr + 1.0 - fpr) / 2.0)),
        "tpr_at_fpr": [tpr_at_fpr(fpr, tpr, level) for level in levels],
        "roc_curve": {"fpr": curve_fpr.tolist(), "tpr": curve_tpr.tolist()},
    }


def per_record_auc(values: np.ndarray, member: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per record (column) j of (M, N) scores: how well its scores tell the models that trained on it apart.

    In the LiRA protocol each record j is in the training set of about half of the M models. With
    s_m the score of record j against model m, and I (O) the n_in (n_out) models that had (had not)
    the record in their training set,

        AUC_j = 1/(n_in·n_out) · Σ_{m ∈ I} Σ_{m' ∈ O} (1{s_m > s_m'} + ½·1{s_m = s_m'}),

    the Mann–Whitney statistic, computed from average ranks as (R_in − n_in(n_in + 1)/2)/(n_in·n_out)
    with R_in the sum of the in-scores' ranks among the record's M scores. 0.5 = no signal; 1 = every
    'in' score above every 'out' score. Without leakage all orderings of the M scores are equally
    likely (no ties), so AUC_j = 1 happens by chance with probability 1/C(n_in + n_out, n_in).

    Args:
        values: (M, N) finite scores, higher = more likely a member.
        member: (M, N) bool, True where record j was in model m's training set.

    Returns:
        (auc, n_in, n_out), each (N,); auc is NaN for a record never in or never out.
    """
    values = np.asarray(values, dtype=np.float64)
    member = np.asarray(member, dtype=bool)
    if values.ndim != 2 or member.shape != values.shape:
        raise ValueError(f"values has shape {values.shape} and member {member.shape}; expected two equal (models, records) shapes")
    ranks = rankdata(values, axis=0)
    n_in = member.sum(0)
    n_out = member.shape[0] - n_in
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = ((ranks * member).sum(0) - n_in * (n_in + 1) / 2) / (n_in * n_out)
    return auc, n_in, n_out


def per_sample_auc(scores: pd.DataFrame, column: str) -> pd.DataFrame:
    """Per training image: :func:`per_record_auc` of the scores of ``column`` over the models of the protocol.

    Without leakage AUC_j = 1 happens by chance with probability p_perfect = 1/C(n_in + n_out, n_in).

    Args:
        scores: one row per (target model, image), as saved with a run (``membership_scores.parquet``):
            columns ``target_model``, ``sample`` (image index in the training split), ``label``,
            ``member`` (ground truth: the image was in that model's training set) and ``column``.
        column: the score column, higher = more likely a member.

    Returns:
        One row per image (sorted by ``sample``): sample, label, auc, gap (mean 'in' score − mean
        'out' score), n_in, n_out, p_perfect. auc and gap are NaN for an image never in or never out.
    """
    if column not in scores:
        raise ValueError(f"scores have no column {column!r}; expected one of {', '.join(map(str, scores.columns))}")
    value = scores.pivot(index="target_model", columns="sample", values=column)
    member = scores.pivot(index="target_model", columns="sample", values="member").astype(bool).to_numpy()
    auc, n_in, n_out = per_record_auc(value.to_numpy(float), member)
    with np.errstate(invalid="ignore", divide="ignore"):
        gap = (np.where(member, value, 0).sum(0) / n_in) - (np.where(~member, value, 0).sum(0) / n_out)
    labels = scores.groupby("sample")["label"].first().reindex(value.columns)
    return pd.DataFrame({"sample": value.columns.to_numpy(), "label": labels.to_numpy(), "auc": auc, "gap": gap,
                         "n_in": n_in, "n_out": n_out, "p_perfect": 1.0 / comb(n_in + n_out, n_in)})

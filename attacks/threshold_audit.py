"""An empirical lower bound on ε from one membership test at a threshold chosen on held-out data.

For an (ε, δ)-DP mechanism every membership test has TPR ≤ e^ε·FPR + δ and, applied to the
complementary test, TNR ≤ e^ε·FNR + δ. :func:`clopper_pearson_epsilon` turns one test's confusion
matrix into the largest ε those inequalities still force at confidence 1 − α, bounding the error
rates with Clopper–Pearson intervals. :func:`empirical_epsilon` chooses the test (a threshold on
the attack's scores, and its direction) on a selection split and counts it on a disjoint
evaluation split: a threshold chosen on the scores it is counted on would be the best of many
tests, not one, and void the confidence level. :func:`epsilon_ceiling` is the largest bound a
sample of a given size can show.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import beta

_DIRECTIONS = ("greater_equal", "less_equal")


# ----------------------------------------------------------------------------------------------
# Clopper–Pearson bound from a confusion matrix
# ----------------------------------------------------------------------------------------------


def validate_delta_alpha(delta: float, alpha: float) -> None:
    if not 0.0 <= delta < 1.0:
        raise ValueError(f"delta={delta}; expected a value in [0, 1)")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha={alpha}; expected a value in (0, 1)")


def _cp_lower(successes: np.ndarray, failures: np.ndarray, level: float) -> np.ndarray:
    """One-sided Clopper–Pearson lower bound at level (probability of exceeding the truth ≤ level)."""
    with np.errstate(invalid="ignore"):
        bound = beta.ppf(level, successes, failures + 1)
    return np.where(successes > 0, bound, 0.0)


def _cp_upper(successes: np.ndarray, failures: np.ndarray, level: float) -> np.ndarray:
    """One-sided Clopper–Pearson upper bound at level; always > 0, so ratios stay finite."""
    with np.errstate(invalid="ignore"):
        bound = beta.ppf(1.0 - level, successes + 1, failures)
    return np.where(failures > 0, bound, 1.0)


def _cp_epsilon(tp, fn, fp, tn, delta: float, alpha: float) -> np.ndarray:  # noqa: ANN001
    """Vectorised body of :func:`clopper_pearson_epsilon` (inputs trusted, broadcastable)."""
    tp, fn, fp, tn = (np.asarray(count, dtype=np.float64) for count in (tp, fn, fp, tn))
    tpr_low = _cp_lower(tp, fn, alpha / 2.0)
    fpr_high = _cp_upper(fp, tn, alpha / 2.0)
    tnr_low = _cp_lower(tn, fp, alpha / 2.0)
    fnr_high = _cp_upper(fn, tp, alpha / 2.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        from_positives = np.log(np.maximum(tpr_low - delta, 0.0) / fpr_high)
        from_negatives = np.log(np.maximum(tnr_low - delta, 0.0) / fnr_high)
    return np.maximum(np.maximum(from_positives, from_negatives), 0.0)


def clopper_pearson_epsilon(tp: int, fn: int, fp: int, tn: int, delta: float, alpha: float = 0.05) -> float:
    """Lower bound on ε from one membership test's confusion matrix, at confidence 1 − α.

    ε_lb = max(ln((TPR_lo − δ)/FPR_hi), ln((TNR_lo − δ)/FNR_hi), 0), where TPR_lo, TNR_lo are
    one-sided Clopper–Pearson lower bounds and FPR_hi, FNR_hi one-sided upper bounds, each at
    level α/2 (``scipy.stats.beta.ppf``). Clopper–Pearson intervals are symmetric under swapping
    successes and failures, so TNR_lo = 1 − FPR_hi and FNR_hi = 1 − TPR_lo: the four bounds hold
    together whenever the two events "TPR ≥ TPR_lo" and "FPR ≤ FPR_hi" do, which fails with
    probability ≤ α, so the maximum over both directions keeps confidence 1 − α.

    Zero counts: a bound from 0 successes is 0 (lower) and from 0 failures is 1 (upper), so
    FPR_hi, FNR_hi > 0 and ε_lb stays finite (at most :func:`epsilon_ceiling`).

    Args:
        tp, fn: members predicted member / non-member (tp + fn ≥ 1).
        fp, tn: non-members predicted member / non-member (fp + tn ≥ 1).
        delta: δ in [0, 1).
        alpha: 1 − confidence, in (0, 1).
    """
    counts = {"tp": tp, "fn": fn, "fp": fp, "tn": tn}
    for name, count in counts.items():
        if not (float(count).is_integer() and count >= 0):
            raise ValueError(f"{name}={count}; expected a non-negative integer count")
    if tp + fn == 0 or fp + tn == 0:
        raise ValueError(f"tp+fn={tp + fn} members and fp+tn={fp + tn} non-members; both must be at least 1")
    validate_delta_alpha(delta, alpha)
    return float(_cp_epsilon(tp, fn, fp, tn, delta, alpha))


def epsilon_ceiling(n_members: int, n_nonmembers: int, delta: float, alpha: float = 0.05) -> float:
    """The largest ε_lb that :func:`clopper_pearson_epsilon` can give for these sample sizes.

    The bound grows with tp and tn and shrinks with fp and fn, so its maximum is at perfect
    separation (tp = n_members, tn = n_nonmembers). With n members and n non-members and δ = 0
    this is ln((α/2)^{1/n} / (1 − (α/2)^{1/n})) ≈ ln(n / ln(2/α)): 3.28 for 100 + 100 samples,
    5.60 for 1000 + 1000 (α = 0.05).
    """
    if n_members < 1 or n_nonmembers < 1:
        raise ValueError(f"n_members={n_members}, n_nonmembers={n_nonmembers}; both must be at least 1")
    return clopper_pearson_epsilon(n_members, 0, 0, n_nonmembers, delta, alpha)


# ----------------------------------------------------------------------------------------------
# Empirical ε with a held-out threshold
# ----------------------------------------------------------------------------------------------


def _stratified_selection_mask(is_member: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """True for the selection split: ``round(fraction · count)`` of the members and of the non-members."""
    selection = np.zeros(is_member.size, dtype=bool)
    for group in (np.flatnonzero(is_member), np.flatnonzero(~is_member)):
        chosen = rng.permutation(group)[: int(round(fraction * group.size))]
        selection[chosen] = True
    return selection


def _confusion_at(scores: np.ndarray, is_member: np.ndarray, threshold: float, direction: str) -> tuple[int, int, int, int]:
    predicted_member = scores >= threshold if direction == "greater_equal" else scores <= threshold
    tp = int(np.sum(predicted_member & is_member))
    fp = int(np.sum(predicted_member & ~is_member))
    return tp, int(is_member.sum()) - tp, fp, int((~is_member).sum()) - fp


def _best_threshold(scores: np.ndarray, is_member: np.ndarray, delta: float, alpha: float) -> tuple[float, str, float]:
    """Threshold and direction maximising the Clopper–Pearson bound on these scores.

    Candidates are every distinct score, with the rule "member if score ≥ t" (``greater_equal``)
    and "member if score ≤ t" (``less_equal``); counts for all of them come from one sort.
    """
    n_members = int(is_member.sum())
    n_nonmembers = is_member.size - n_members
    members, nonmembers = np.sort(scores[is_member]), np.sort(scores[~is_member])
    candidates = np.unique(scores)
    best = (float(candidates[0]), _DIRECTIONS[0], -np.inf)
    for direction in _DIRECTIONS:
        if direction == "greater_equal":
            tp = n_members - np.searchsorted(members, candidates, side="left")
            fp = n_nonmembers - np.searchsorted(nonmembers, candidates, side="left")
        else:
            tp = np.searchsorted(members, candidates, side="right")
            fp = np.searchsorted(nonmembers, candidates, side="right")
        bounds = _cp_epsilon(tp, n_members - tp, fp, n_nonmembers - fp, delta, alpha)
        index = int(np.argmax(bounds))
        if bounds[index] > best[2]:
            best = (float(candidates[index]), direction, float(bounds[index]))
    return best


def checked_scores(scores, flags, name: str = "is_member") -> tuple[np.ndarray, np.ndarray]:
    """``scores`` as float64 and ``flags`` (membership or inclusion, called ``name`` in the messages)
    as given, checked: two 1-D arrays of one length, bool flags, finite scores."""
    scores = np.asarray(scores, dtype=np.float64)
    flags = np.asarray(flags)
    if scores.ndim != 1 or flags.shape != scores.shape:
        raise ValueError(f"scores {scores.shape} and {name} {flags.shape}; expected two 1-D arrays of one length")
    if flags.dtype != np.bool_:
        raise ValueError(f"{name} has dtype {flags.dtype}; expected bool")
    if not np.all(np.isfinite(scores)):
        raise ValueError("scores contain NaN or infinite values; expected finite scores")
    return scores, flags


def _selection_split(is_member: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """The selection mask of :func:`_stratified_selection_mask` drawn from ``seed``; both splits must hold both classes."""
    selection = _stratified_selection_mask(is_member, fraction, np.random.default_rng(seed))
    for split_name, split in (("selection", selection), ("evaluation", ~selection)):
        n_in, n_out = int(np.sum(is_member[split])), int(np.sum(~is_member[split]))
        if n_in == 0 or n_out == 0:
            raise ValueError(
                f"the {split_name} split holds {n_in} members and {n_out} non-members; "
                "each split needs both (more samples or another selection_fraction)"
            )
    return selection


def empirical_epsilon(
    scores: np.ndarray,
    is_member: np.ndarray,
    delta: float,
    *,
    alpha: float = 0.05,
    selection_fraction: float = 0.5,
    seed: int = 0,
) -> dict:
    """Empirical lower bound on ε from membership scores, threshold chosen on held-out data.

    The samples are split at random (stratified by membership, ``seed``) into a selection split
    (``selection_fraction`` of the members and of the non-members) and a disjoint evaluation
    split. The threshold and direction that maximise :func:`clopper_pearson_epsilon` on the
    selection split are then fixed, and the bound is computed from the evaluation split's
    confusion matrix at that threshold. Choosing the threshold on the scores it is evaluated on
    would void the confidence level (a maximum over many tests is not one test).

    Args:
        scores: (n,) finite scores, higher = more likely a member (the selection may also pick
            "member if score ≤ t").
        is_member: (n,) bool ground truth.
        delta: δ in [0, 1).
        alpha: 1 − confidence, in (0, 1).
        selection_fraction: share of each class used to choose the threshold, in (0, 1); each
            split must keep at least one member and one non-member.
        seed: seed of the split.

    Returns:
        dict with epsilon_lb; threshold and direction ("greater_equal": member if score ≥
        threshold; "less_equal": member if score ≤ threshold); tp, fn, fp, tn on the evaluation
        split; n_selection, n_evaluation; epsilon_ceiling (the largest ε_lb the evaluation split
        could show, :func:`epsilon_ceiling`); delta; alpha.
    """
    scores, is_member = checked_scores(scores, is_member)
    if not 0.0 < selection_fraction < 1.0:
        raise ValueError(f"selection_fraction={selection_fraction}; expected a value in (0, 1)")
    validate_delta_alpha(delta, alpha)
    selection = _selection_split(is_member, selection_fraction, seed)

    threshold, direction, _ = _best_threshold(scores[selection], is_member[selection], delta, alpha)
    evaluation_scores, evaluation_member = scores[~selection], is_member[~selection]
    tp, fn, fp, tn = _confusion_at(evaluation_scores, evaluation_member, threshold, direction)
    return {
        "epsilon_lb": clopper_pearson_epsilon(tp, fn, fp, tn, delta, alpha),
        "threshold": threshold,
        "direction": direction,
        "tp": tp,
        "fn": fn,
        "fp": fp,
        "tn": tn,
        "n_selection": int(selection.sum()),
        "n_evaluation": int((~selection).sum()),
        "epsilon_ceiling": epsilon_ceiling(tp + fn, fp + tn, delta, alpha),
        "delta": float(delta),
        "alpha": float(alpha),
    }

"""DP auditing: empirical lower bounds on ε from membership attack outcomes.

Two audits, both honest lower bounds at confidence 1 − α that the accountant's ε must never
undercut (if it does, something in training or accounting is wrong):

- :func:`empirical_epsilon`: one membership test at a fixed threshold, its error rates bounded
  with Clopper–Pearson intervals (:func:`clopper_pearson_epsilon`); the threshold is chosen on a
  selection split and evaluated on a disjoint evaluation split.
- :func:`one_run_audit`: Steinke, Nasr, Jagielski, "Privacy Auditing with One (1) Training Run"
  (NeurIPS 2023): m canaries each included with probability ½ in a single training run; the
  auditor guesses the inclusion of the highest- and lowest-scoring canaries.

Definitions (an (ε, δ)-DP mechanism, any membership test): TPR ≤ e^ε·FPR + δ and, applied to
the complementary test, TNR ≤ e^ε·FNR + δ.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import expit
from scipy.stats import beta, binom

from .settings import Validated, choice, integer, real

_DIRECTIONS = ("greater_equal", "less_equal")
CANARY_KINDS = ("mislabelled", "ood")


@dataclass
class CanaryAuditConfig(Validated):
    """One-run audit (Steinke, Nasr, Jagielski 2023) with image canaries: ``n_canaries`` held-out
    images, each in one training run with probability ½; mislabelled (label flipped) or ood
    (inverted intensities, random label). The auditor guesses k₊ = k₋ = ``guess_fraction``·m,
    fixed before scoring."""

    n_canaries: int = integer(256, 1)
    canary: str = choice("mislabelled", CANARY_KINDS)
    guess_fraction: float = real(0.25, 0.0, 0.5, low_open=True)


# ----------------------------------------------------------------------------------------------
# Clopper–Pearson bound from a confusion matrix
# ----------------------------------------------------------------------------------------------


def _validate_delta_alpha(delta: float, alpha: float) -> None:
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
    _validate_delta_alpha(delta, alpha)
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
    scores = np.asarray(scores, dtype=np.float64)
    is_member = np.asarray(is_member)
    if scores.ndim != 1 or is_member.shape != scores.shape:
        raise ValueError(f"scores {scores.shape} and is_member {is_member.shape}; expected two 1-D arrays of one length")
    if is_member.dtype != np.bool_:
        raise ValueError(f"is_member has dtype {is_member.dtype}; expected bool")
    if not np.all(np.isfinite(scores)):
        raise ValueError("scores contain NaN or infinite values; expected finite scores")
    if not 0.0 < selection_fraction < 1.0:
        raise ValueError(f"selection_fraction={selection_fraction}; expected a value in (0, 1)")
    _validate_delta_alpha(delta, alpha)

    selection = _stratified_selection_mask(is_member, selection_fraction, np.random.default_rng(seed))
    for split_name, split in (("selection", selection), ("evaluation", ~selection)):
        n_in, n_out = int(np.sum(is_member[split])), int(np.sum(~is_member[split]))
        if n_in == 0 or n_out == 0:
            raise ValueError(
                f"the {split_name} split holds {n_in} members and {n_out} non-members; "
                "each split needs both (more samples or another selection_fraction)"
            )

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


# ----------------------------------------------------------------------------------------------
# One-run audit (Steinke, Nasr, Jagielski 2023)
# ----------------------------------------------------------------------------------------------


def _validate_guess_counts(r: int, v: int, m: int) -> None:
    for name, value in (("r", r), ("v", v), ("m", m)):
        if not (float(value).is_integer() and value >= 0):
            raise ValueError(f"{name}={value}; expected a non-negative integer")
    if not 0 <= v <= r <= m:
        raise ValueError(f"v={v}, r={r}, m={m}; expected 0 <= v <= r <= m (correct <= guesses <= canaries)")


def _one_run_p_value(r: int, v: int, epsilon: float, delta: float, m: int) -> float:
    """Body of :func:`one_run_p_value` (inputs trusted)."""
    q = expit(epsilon)  # e^ε / (1 + e^ε), the accuracy of ε-DP randomised response
    tail = binom.sf(v - 1, r, q)  # P[Binom(r, q) ≥ v]
    if delta == 0.0 or v == 0:
        return float(min(1.0, tail))
    shortfall = np.arange(1, v + 1)  # i = 1..v; for i > v the partial sums stop growing
    partial_sums = np.cumsum(binom.pmf(v - shortfall, r, q))  # Σ_{j=1..i} P[Binom(r, q) = v − j]
    delta_term = 2.0 * m * delta * float(np.max(partial_sums / shortfall))
    return float(min(1.0, tail + delta_term))


def one_run_p_value(r: int, v: int, epsilon: float, delta: float, m: int) -> float:
    """p-value of "the training run is (ε, δ)-DP" after v correct of r inclusion guesses.

    Steinke, Nasr, Jagielski, "Privacy Auditing with One (1) Training Run" (NeurIPS 2023): the
    p-value of their (ε, δ) analysis, as computed by the paper's own p-value/ε-bound code:

        p = min(1, P[Binom(r, q') ≥ v] + 2mδ · max_{i=1..v} (1/i) Σ_{j=1..i} P[Binom(r, q') = v − j]),
        q' = e^ε / (1 + e^ε).

    The δ term is the paper's: m canaries (all of them, guessed or not), the factor 2, and the
    maximum over i from 1 to v. Taking i up to r as written in some statements gives the same
    value: for i > v the partial sum no longer grows (Binom(r, q') = v − j < 0 has probability 0)
    while 1/i shrinks. With v = 0 the tail alone is 1.

    Args:
        r: number of guesses (k₊ + k₋), r ≤ m.
        v: number of correct guesses, v ≤ r.
        epsilon: ε ≥ 0 of the null hypothesis.
        delta: δ in [0, 1].
        m: number of canaries.
    """
    _validate_guess_counts(r, v, m)
    if not epsilon >= 0:
        raise ValueError(f"epsilon={epsilon}; expected a value >= 0")
    if not 0.0 <= delta <= 1.0:
        raise ValueError(f"delta={delta}; expected a value in [0, 1]")
    return _one_run_p_value(int(r), int(v), float(epsilon), float(delta), int(m))


def one_run_epsilon(r: int, v: int, m: int, delta: float, alpha: float = 0.05, *, tolerance: float = 1e-9) -> float:
    """Lower bound on ε from a one-run audit: the largest ε with :func:`one_run_p_value` < α.

    Bisection as in the paper's code (which keeps p(ε_low) < α ≤ p(ε_high)); the bracket's upper
    end doubles from 1 until p ≥ α, which always happens: as ε → ∞, q' → 1 and the tail → 1.
    Returns 0 when even ε = 0 is not rejected (p(0) ≥ α). Without δ the bound has the closed form
    logit(B⁻¹(α; v, r − v + 1)), the one-sided Clopper–Pearson lower bound on the accuracy at
    level α mapped through q' = e^ε/(1 + e^ε); with v = r, logit(α^{1/r}).

    Args:
        r, v, m: guesses, correct guesses, canaries (0 ≤ v ≤ r ≤ m).
        delta: δ in [0, 1].
        alpha: significance level in (0, 1).
        tolerance: width of the final bisection bracket.
    """
    _validate_guess_counts(r, v, m)
    if not 0.0 <= delta <= 1.0:
        raise ValueError(f"delta={delta}; expected a value in [0, 1]")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha={alpha}; expected a value in (0, 1)")
    r, v, m = int(r), int(v), int(m)

    def p_value(epsilon: float) -> float:
        return _one_run_p_value(r, v, epsilon, float(delta), m)

    if p_value(0.0) >= alpha:
        return 0.0
    low, high = 0.0, 1.0
    while p_value(high) < alpha:
        low, high = high, 2.0 * high
    while high - low > tolerance:
        middle = (low + high) / 2.0
        if p_value(middle) < alpha:
            low = middle
        else:
            high = middle
    return low


def one_run_audit(
    scores: np.ndarray,
    included: np.ndarray,
    delta: float,
    *,
    k_plus: int,
    k_minus: int,
    alpha: float = 0.05,
) -> dict:
    """One-run audit of a single training run from canary scores (Steinke, Nasr, Jagielski 2023).

    Each of the m canaries was included independently with probability ½ (``included``). The
    auditor guesses "in" for the ``k_plus`` highest scores and "out" for the ``k_minus`` lowest,
    abstaining on the rest; the numbers must be fixed before looking at the scores. Ties are
    broken by canary index (stable sort), which is independent of the random inclusion.
    r = k₊ + k₋ guesses, v of them correct, and the bound is :func:`one_run_epsilon`.

    Args:
        scores: (m,) finite canary scores, higher = more likely included.
        included: (m,) bool, whether each canary was in the training run.
        delta: δ of the claimed guarantee, in [0, 1].
        k_plus, k_minus: numbers of "in" and "out" guesses, k₊ + k₋ ≤ m, k₊ + k₋ ≥ 1.
        alpha: significance level in (0, 1).

    Returns:
        dict with epsilon_lb, r, v, m, k_plus, k_minus, accuracy (v/r), delta, alpha.
    """
    scores = np.asarray(scores, dtype=np.float64)
    included = np.asarray(included)
    if scores.ndim != 1 or included.shape != scores.shape:
        raise ValueError(f"scores {scores.shape} and included {included.shape}; expected two 1-D arrays of one length")
    if included.dtype != np.bool_:
        raise ValueError(f"included has dtype {included.dtype}; expected bool")
    if not np.all(np.isfinite(scores)):
        raise ValueError("scores contain NaN or infinite values; expected finite scores")
    m = scores.size
    if k_plus < 0 or k_minus < 0 or not 1 <= k_plus + k_minus <= m:
        raise ValueError(f"k_plus={k_plus}, k_minus={k_minus}; expected non-negative numbers with 1 <= k_plus + k_minus <= {m}")

    order = np.argsort(-scores, kind="stable")
    guessed_in, guessed_out = order[:k_plus], order[m - k_minus :]
    v = int(included[guessed_in].sum() + (~included[guessed_out]).sum())
    r = k_plus + k_minus
    return {
        "epsilon_lb": one_run_epsilon(r, v, m, delta, alpha),
        "r": r,
        "v": v,
        "m": m,
        "k_plus": int(k_plus),
        "k_minus": int(k_minus),
        "accuracy": v / r,
        "delta": float(delta),
        "alpha": float(alpha),
    }


# ----------------------------------------------------------------------------------------------
# Membership pool: one-run counting on a held-out target
# ----------------------------------------------------------------------------------------------

# Candidate guess counts, as shares of the N images: k₊ "member" guesses on the highest scores and
# k₋ "non-member" guesses on the lowest (0 allowed on one side). Low-FPR attacks win with few,
# confident "member" guesses; a weak attack with many guesses on both sides.
GUESS_SHARES = (0.0, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.35, 0.5)


def _guess_counts(n: int) -> list[tuple[int, int]]:
    ks = sorted({int(round(share * n)) for share in GUESS_SHARES})
    return [(kp, km) for kp in ks for km in ks if 1 <= kp + km <= n]


def held_out_target_epsilon(
    selection_scores: np.ndarray,
    selection_member: np.ndarray,
    evaluation_scores: np.ndarray,
    evaluation_member: np.ndarray,
    delta: float,
    *,
    alpha: float = 0.05,
) -> dict:
    """Empirical lower bound on ε from a membership pool, with trials independent by construction.

    The LiRA protocol trains M models on random halves of N images. Pooling its (model, image)
    pairs and thresholding them as if they were independent Bernoulli trials is not honest: the
    same images and models sit on both sides of any split, and the models that score one target
    are targets themselves. Here instead:

    * one model is the **evaluation target**; it is held out of everything else. Its scores
      (``evaluation_scores``) come from the other models as shadows, which are trained on
      membership drawn independently of its own, so the scores are a function of its output and of
      randomness independent of which images it trained on.
    * the **guess counts** k₊, k₋ are chosen on the other targets (``selection_scores``), scored
      with shadows that exclude the evaluation target: the choice is independent of the evaluation
      target's training and membership.
    * on the evaluation target, its N images are the canaries of the one-run audit of Steinke,
      Nasr, Jagielski (NeurIPS 2023): each is in its training set independently with probability ½
      (the pool's membership draw), the auditor guesses "member" for the k₊ highest scores and
      "non-member" for the k₋ lowest, and :func:`one_run_epsilon` bounds ε from the v correct of
      r = k₊ + k₋ guesses with m = N. That analysis needs no independence between the images'
      outcomes: it holds for any (ε, δ)-DP training of the evaluation target, which is what makes
      the bound a statement about DP rather than about a sampling model.

    Args:
        selection_scores: (S, N) scores of S ≥ 1 selection targets (scored without the evaluation
            target), higher = more likely a member.
        selection_member: (S, N) bool membership of the selection targets.
        evaluation_scores: (N,) scores of the evaluation target.
        evaluation_member: (N,) bool membership of the evaluation target (enters only the count).
        delta: δ of the claimed guarantee, in [0, 1).
        alpha: significance level in (0, 1).

    Returns:
        dict with epsilon_lb, the evaluation audit's r, v, m, k_plus, k_minus, accuracy,
        selection_epsilon (the mean bound the chosen counts gave on the selection targets, without
        the δ term), epsilon_ceiling (the bound if every guess were right), protocol (in words),
        delta, alpha.
    """
    selection_scores, selection_member, evaluation_scores, evaluation_member = _pool_arrays(
        selection_scores, selection_member, evaluation_scores, evaluation_member
    )
    _validate_delta_alpha(delta, alpha)
    n = evaluation_scores.size
    best, best_value = _select_guess_counts(selection_scores, selection_member, alpha)
    result = one_run_audit(evaluation_scores, evaluation_member, delta, k_plus=best[0], k_minus=best[1], alpha=alpha)
    result["selection_epsilon"] = best_value
    # the largest bound these counts could give: every guess correct
    result["epsilon_ceiling"] = one_run_epsilon(result["r"], result["r"], n, delta, alpha)
    result["protocol"] = ("one-run counting (Steinke et al. 2023) on a held-out evaluation target whose images are "
                          "canaries included with probability 1/2; guess counts chosen on the other targets, scored "
                          "without it")
    return result


def _pool_arrays(selection_scores, selection_member, evaluation_scores, evaluation_member) -> tuple[np.ndarray, ...]:
    """The four arrays of :func:`held_out_target_epsilon`, checked: (S, N) and (N,) scores and bool membership."""
    selection_scores = np.atleast_2d(np.asarray(selection_scores, dtype=np.float64))
    selection_member = np.atleast_2d(np.asarray(selection_member))
    evaluation_scores = np.asarray(evaluation_scores, dtype=np.float64)
    evaluation_member = np.asarray(evaluation_member)
    n = evaluation_scores.size
    if evaluation_scores.ndim != 1 or evaluation_member.shape != (n,):
        raise ValueError(f"evaluation scores {evaluation_scores.shape} and membership {evaluation_member.shape}; expected two (N,) arrays")
    if selection_scores.shape[1:] != (n,) or selection_member.shape != selection_scores.shape:
        raise ValueError(f"selection scores {selection_scores.shape} and membership {selection_member.shape}; expected (S, {n}) each")
    if selection_member.dtype != np.bool_ or evaluation_member.dtype != np.bool_:
        raise ValueError("membership arrays must be bool")
    if not (np.all(np.isfinite(selection_scores)) and np.all(np.isfinite(evaluation_scores))):
        raise ValueError("scores contain NaN or infinite values; expected finite scores")
    return selection_scores, selection_member, evaluation_scores, evaluation_member


def _select_guess_counts(selection_scores: np.ndarray, selection_member: np.ndarray, alpha: float) -> tuple[tuple[int, int], float]:
    """The (k₊, k₋) of :func:`_guess_counts` with the largest mean bound over the selection targets, and that bound.

    Each candidate is scored by its bound without the δ term, which has the closed form
    logit(B⁻¹(α; v, r − v + 1)) (see one_run_epsilon) and so is cheap to vectorise.
    """
    candidates = np.array(_guess_counts(selection_scores.shape[1]))
    k_plus, k_minus = candidates[:, 0], candidates[:, 1]
    values = np.zeros(len(candidates))
    for row, truth in zip(selection_scores, selection_member):
        ranked = truth[np.argsort(-row, kind="stable")]
        hits_top = np.concatenate(([0], np.cumsum(ranked)))  # members among the j highest
        misses_bottom = np.concatenate(([0], np.cumsum(~ranked[::-1])))  # non-members among the j lowest
        v = hits_top[k_plus] + misses_bottom[k_minus]
        r = k_plus + k_minus
        accuracy_low = np.where(v > 0, beta.ppf(alpha, np.maximum(v, 1), r - v + 1), 0.0)
        with np.errstate(divide="ignore"):
            values += np.maximum(np.log(accuracy_low) - np.log1p(-accuracy_low), 0.0)
    values /= len(selection_scores)
    index = int(np.argmax(values))
    return (int(k_plus[index]), int(k_minus[index])), float(values[index])

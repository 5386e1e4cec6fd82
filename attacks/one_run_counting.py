"""The one-run audit: counting correct inclusion guesses on canaries of a single training run.

Steinke, Nasr, Jagielski, "Privacy Auditing with One (1) Training Run" (NeurIPS 2023). m canaries
are each included in the run independently with probability ½; the auditor, with guess counts
fixed before scoring, guesses "included" for the k₊ highest scores and "excluded" for the k₋
lowest. Under (ε, δ)-DP the probability of v or more correct guesses out of r = k₊ + k₋ is at
most the binomial tail at success probability e^ε/(1 + e^ε) plus a term in δ, which gives a
p-value for each claimed ε (:func:`one_run_p_value`) and a lower bound on ε at confidence 1 − α
(:func:`one_run_epsilon`). The analysis needs no independence between the canaries' outcomes,
only the independent inclusion draws, so it bounds ε of the training itself.

:func:`one_run_audit` runs it on canary scores; :func:`held_out_target_epsilon` on a membership
pool, with one held-out model as the run and its images as the canaries. The f-DP analyses of the
same guessing game are in :mod:`medprivbench.attacks.one_run_analysis`.
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit
from scipy.stats import beta, binom

from .threshold_audit import checked_scores, validate_delta_alpha


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
    scores, included = checked_scores(scores, included, "included")
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
    validate_delta_alpha(delta, alpha)
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

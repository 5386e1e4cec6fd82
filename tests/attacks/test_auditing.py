"""Tests of the DP auditing bounds against closed forms, scipy and brute force."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import logit
from scipy.stats import beta, binomtest

from medprivbench.attacks.auditing import (
    clopper_pearson_epsilon,
    empirical_epsilon,
    epsilon_ceiling,
    one_run_audit,
    one_run_epsilon,
    one_run_p_value,
)
from medprivbench.attacks.threshold_audit import _best_threshold

ALPHA = 0.05

# ----------------------------------------------------------------------------------------------
# Clopper–Pearson ε bound
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("tp", "fn", "fp", "tn", "delta"), [(8, 2, 1, 9, 0.0), (8, 2, 1, 9, 0.01), (3, 17, 0, 20, 0.0), (40, 10, 25, 25, 1e-3)])
def test_clopper_pearson_epsilon_matches_beta_quantiles(tp, fn, fp, tn, delta):
    tpr_low = beta.ppf(ALPHA / 2, tp, fn + 1)
    fpr_high = beta.ppf(1 - ALPHA / 2, fp + 1, tn) if tn > 0 else 1.0
    tnr_low = beta.ppf(ALPHA / 2, tn, fp + 1)
    fnr_high = beta.ppf(1 - ALPHA / 2, fn + 1, tp)
    candidates = [0.0]
    if tpr_low > delta:
        candidates.append(math.log((tpr_low - delta) / fpr_high))
    if tnr_low > delta:
        candidates.append(math.log((tnr_low - delta) / fnr_high))
    assert clopper_pearson_epsilon(tp, fn, fp, tn, delta, ALPHA) == pytest.approx(max(candidates), rel=1e-10, abs=1e-12)


def test_one_sided_bounds_equal_the_exact_two_sided_interval_of_scipy_binomtest():
    # The two-sided exact interval at 1 − α puts α/2 in each tail: its ends are the one-sided bounds.
    tp, fn, fp, tn = 45, 5, 10, 40
    tpr_interval = binomtest(tp, tp + fn).proportion_ci(confidence_level=1 - ALPHA, method="exact")
    fpr_interval = binomtest(fp, fp + tn).proportion_ci(confidence_level=1 - ALPHA, method="exact")
    tnr_interval = binomtest(tn, fp + tn).proportion_ci(confidence_level=1 - ALPHA, method="exact")
    fnr_interval = binomtest(fn, tp + fn).proportion_ci(confidence_level=1 - ALPHA, method="exact")
    # Symmetry that lets the maximum over both directions keep confidence 1 − α.
    assert tnr_interval.low == pytest.approx(1 - fpr_interval.high, abs=1e-12)
    assert fnr_interval.high == pytest.approx(1 - tpr_interval.low, abs=1e-12)
    expected = max(0.0, math.log(tpr_interval.low / fpr_interval.high), math.log(tnr_interval.low / fnr_interval.high))
    assert clopper_pearson_epsilon(tp, fn, fp, tn, 0.0) == pytest.approx(expected, rel=1e-9)


def test_zero_counts_give_finite_bounds():
    assert clopper_pearson_epsilon(0, 10, 0, 10, 0.0) == 0.0  # nothing detected
    assert clopper_pearson_epsilon(10, 0, 10, 0, 0.0) == 0.0  # everything called a member
    assert clopper_pearson_epsilon(10, 0, 0, 10, 0.0) == pytest.approx(epsilon_ceiling(10, 10, 0.0))
    partial = clopper_pearson_epsilon(9, 1, 0, 10, 0.0)
    assert 0.0 < partial < epsilon_ceiling(10, 10, 0.0) and math.isfinite(partial)


@pytest.mark.parametrize(("n", "expected"), [(100, 3.2813), (1000, 5.6006)])
def test_sample_size_ceiling_closed_form(n, expected):
    # Perfect separation: TPR_lo = (α/2)^{1/n}, FPR_hi = 1 − (α/2)^{1/n}.
    root = (ALPHA / 2) ** (1 / n)
    assert epsilon_ceiling(n, n, 0.0) == pytest.approx(math.log(root / (1 - root)), rel=1e-10)
    assert epsilon_ceiling(n, n, 0.0) == pytest.approx(expected, abs=1e-4)
    # The design's rule of thumb ln(n / ln(2/α)): ≈3.3 and ≈5.6.
    assert epsilon_ceiling(n, n, 0.0) == pytest.approx(math.log(n / math.log(2 / ALPHA)), abs=0.05)


@pytest.mark.parametrize(("n_members", "n_nonmembers", "delta"), [(20, 20, 0.0), (12, 30, 0.01)])
def test_no_confusion_matrix_exceeds_the_ceiling(n_members, n_nonmembers, delta):
    ceiling = epsilon_ceiling(n_members, n_nonmembers, delta)
    largest = max(
        clopper_pearson_epsilon(tp, n_members - tp, fp, n_nonmembers - fp, delta)
        for tp in range(n_members + 1)
        for fp in range(n_nonmembers + 1)
    )
    assert largest == pytest.approx(ceiling, rel=1e-12)


def test_clopper_pearson_rejects_invalid_counts():
    with pytest.raises(ValueError, match="tp"):
        clopper_pearson_epsilon(-1, 3, 2, 2, 0.0)
    with pytest.raises(ValueError, match="non-members"):
        clopper_pearson_epsilon(3, 3, 0, 0, 0.0)
    with pytest.raises(ValueError, match="delta"):
        clopper_pearson_epsilon(3, 3, 3, 3, 1.0)


# ----------------------------------------------------------------------------------------------
# Empirical ε with a held-out threshold
# ----------------------------------------------------------------------------------------------


def test_random_scores_rarely_give_a_positive_bound():
    rng = np.random.default_rng(0)
    repetitions, n = 200, 400
    positive_honest = positive_same_split = 0
    for repetition in range(repetitions):
        scores = rng.normal(size=n)
        is_member = rng.random(n) < 0.5
        positive_honest += empirical_epsilon(scores, is_member, 0.0, seed=repetition)["epsilon_lb"] > 0
        # Choosing the threshold on the very scores it is judged on: not a valid bound.
        positive_same_split += _best_threshold(scores, is_member, 0.0, ALPHA)[2] > 0
    assert positive_honest / repetitions <= 0.08  # at most α = 0.05 in expectation
    assert positive_same_split / repetitions > ALPHA  # why the split is needed (about 0.11 here)


def test_separated_scores_approach_the_ceiling_of_the_evaluation_split():
    rng = np.random.default_rng(1)
    is_member = rng.random(2000) < 0.5
    scores = np.where(is_member, rng.uniform(1, 2, 2000), rng.uniform(-2, -1, 2000))
    result = empirical_epsilon(scores, is_member, 1e-5)
    assert result["direction"] == "greater_equal"
    assert 0.9 * result["epsilon_ceiling"] < result["epsilon_lb"] <= result["epsilon_ceiling"]
    # Reversed scores: the selection finds the "member if score ≤ t" rule.
    reversed_result = empirical_epsilon(-scores, is_member, 1e-5)
    assert reversed_result["direction"] == "less_equal"
    assert reversed_result["epsilon_lb"] == pytest.approx(result["epsilon_lb"], rel=0.1)


def test_splits_are_disjoint_stratified_and_counted():
    rng = np.random.default_rng(2)
    is_member = rng.random(1001) < 0.3
    scores = rng.normal(size=1001) + is_member
    result = empirical_epsilon(scores, is_member, 1e-5, selection_fraction=0.4, seed=3)
    n_members = int(is_member.sum())
    evaluation_members = n_members - round(0.4 * n_members)
    evaluation_nonmembers = (1001 - n_members) - round(0.4 * (1001 - n_members))
    assert result["tp"] + result["fn"] == evaluation_members
    assert result["fp"] + result["tn"] == evaluation_nonmembers
    assert result["n_selection"] + result["n_evaluation"] == 1001
    assert result["n_evaluation"] == evaluation_members + evaluation_nonmembers
    assert result["epsilon_ceiling"] == pytest.approx(epsilon_ceiling(evaluation_members, evaluation_nonmembers, 1e-5))
    assert 0 < result["epsilon_lb"] < result["epsilon_ceiling"]


def test_empirical_epsilon_rejects_splits_without_both_classes():
    with pytest.raises(ValueError, match="split"):
        empirical_epsilon(np.arange(3.0), np.array([True, False, False]), 0.0)
    with pytest.raises(ValueError, match="selection_fraction"):
        empirical_epsilon(np.arange(4.0), np.array([True, False, True, False]), 0.0, selection_fraction=1.0)


# ----------------------------------------------------------------------------------------------
# One-run audit
# ----------------------------------------------------------------------------------------------


def test_perfect_guesses_without_delta_match_the_closed_form():
    # p = q'^r < α  ⇔  q' < α^{1/r}:  ε = logit(α^{1/r}) = ln(q / (1 − q)), q = 0.05^{1/1000}.
    q = 0.05 ** (1 / 1000)
    expected = math.log(q / (1 - q))
    assert expected == pytest.approx(5.8091, abs=1e-4)
    assert one_run_epsilon(1000, 1000, 1000, 0.0) == pytest.approx(expected, abs=1e-7)


def test_bound_without_delta_is_the_clopper_pearson_accuracy_bound():
    # P[Binom(r, q) ≥ v] = I_q(v, r − v + 1) < α  ⇔  q < B⁻¹(α; v, r − v + 1).
    r, v = 500, 400
    assert one_run_epsilon(r, v, 2000, 0.0) == pytest.approx(logit(beta.ppf(ALPHA, v, r - v + 1)), abs=1e-7)


def brute_force_p_value(r, v, epsilon, delta, m):  # noqa: ANN001, ANN201
    """The p-value formula with exact binomial terms and i running over 1..r."""
    q = math.exp(epsilon) / (1 + math.exp(epsilon))

    def pmf(k):  # noqa: ANN001, ANN202
        return math.comb(r, k) * q**k * (1 - q) ** (r - k) if 0 <= k <= r else 0.0

    tail = sum(pmf(k) for k in range(v, r + 1))
    delta_term = max(sum(pmf(v - j) for j in range(1, i + 1)) / i for i in range(1, r + 1))
    return min(1.0, tail + 2 * m * delta * delta_term)


@pytest.mark.parametrize(("r", "v", "epsilon", "delta", "m"), [(30, 25, 1.0, 1e-3, 100), (40, 40, 2.5, 1e-4, 40), (20, 3, 0.2, 1e-2, 50), (25, 20, 0.0, 1e-3, 60)])
def test_p_value_matches_brute_force(r, v, epsilon, delta, m):
    assert one_run_p_value(r, v, epsilon, delta, m) == pytest.approx(brute_force_p_value(r, v, epsilon, delta, m), rel=1e-10, abs=1e-15)


def test_bound_is_where_the_p_value_crosses_alpha():
    r, v, m, delta = 400, 330, 1000, 1e-5
    epsilon = one_run_epsilon(r, v, m, delta)
    assert one_run_p_value(r, v, epsilon - 1e-6, delta, m) < ALPHA <= one_run_p_value(r, v, epsilon + 1e-6, delta, m)
    assert epsilon < one_run_epsilon(r, v, m, 0.0)  # δ > 0 can only weaken the bound
    assert one_run_epsilon(r, r // 2, m, delta) == 0.0  # chance accuracy proves nothing


def test_one_run_audit_counts_guesses_and_is_honest_on_random_scores():
    rng = np.random.default_rng(3)
    included = rng.random(1000) < 0.5
    perfect = one_run_audit(included.astype(float), included, 1e-5, k_plus=100, k_minus=150)
    assert (perfect["r"], perfect["v"], perfect["m"]) == (250, 250, 1000)
    assert perfect["epsilon_lb"] == pytest.approx(one_run_epsilon(250, 250, 1000, 1e-5))
    only_in = one_run_audit(included.astype(float), included, 1e-5, k_plus=50, k_minus=0)
    assert (only_in["r"], only_in["v"]) == (50, 50)
    positives = 0
    for _ in range(200):
        guesses = one_run_audit(rng.normal(size=1000), rng.random(1000) < 0.5, 1e-5, k_plus=100, k_minus=100)
        positives += guesses["epsilon_lb"] > 0
    assert positives / 200 <= 0.08  # at most α = 0.05 in expectation


def test_one_run_inputs_are_validated():
    with pytest.raises(ValueError, match="v="):
        one_run_p_value(10, 11, 1.0, 0.0, 20)
    with pytest.raises(ValueError, match="k_plus"):
        one_run_audit(np.zeros(10), np.zeros(10, dtype=bool), 0.0, k_plus=6, k_minus=5)
    with pytest.raises(ValueError, match="alpha"):
        one_run_epsilon(10, 10, 10, 0.0, alpha=0.0)


# ----------------------------------------------------------------------------------------------
# Membership pool: one-run counting on a held-out target
# ----------------------------------------------------------------------------------------------


def randomised_response_pool(seed: int, epsilon: float, n_models: int = 4, n: int = 2000):
    """Each model reveals each image's membership by randomised response at ε: (ε, 0)-DP per image."""
    rng = np.random.default_rng(seed)
    member = rng.random((n_models, n)) < 0.5
    truthful = rng.random((n_models, n)) < math.exp(epsilon) / (1 + math.exp(epsilon))
    said = np.where(truthful, member, ~member)
    return said + 0.01 * rng.random((n_models, n)), member  # tiny jitter: the order inside a tie is random


def test_held_out_target_bound_is_honest_on_a_mechanism_of_known_epsilon():
    from medprivbench.attacks.auditing import held_out_target_epsilon

    bounds = []
    for seed in range(20):
        scores, member = randomised_response_pool(seed, 2.0)
        bounds.append(held_out_target_epsilon(scores[1:], member[1:], scores[0], member[0], 0.0)["epsilon_lb"])
    bounds = np.array(bounds)
    assert np.mean(bounds > 2.0) <= 0.1  # a lower bound at α = 0.05 errs rarely
    assert bounds.mean() > 1.5  # and randomised response at ε = 2 is nearly tight for it


def test_held_out_target_bound_is_zero_without_signal_and_chooses_counts_on_selection_only():
    from medprivbench.attacks.auditing import held_out_target_epsilon

    rng = np.random.default_rng(4)
    member = rng.random((5, 1000)) < 0.5
    noise = rng.normal(size=(5, 1000))
    assert held_out_target_epsilon(noise[1:], member[1:], noise[0], member[0], 1e-5)["epsilon_lb"] == 0.0
    # selection that finds signal only in the top 1% picks few "member" guesses; the evaluation
    # target's count follows that choice, whatever its own scores look like
    signal = noise + 5.0 * (member & (rng.random((5, 1000)) < 0.02))
    result = held_out_target_epsilon(signal[1:], member[1:], noise[0], member[0], 1e-5)
    assert result["k_plus"] <= 20 and result["selection_epsilon"] > 0
    assert result["epsilon_lb"] == 0.0  # the evaluation target itself leaks nothing
    with pytest.raises(ValueError, match="selection"):
        held_out_target_epsilon(noise[1:, :10], member[1:], noise[0], member[0], 1e-5)

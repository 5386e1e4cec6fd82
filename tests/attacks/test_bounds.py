"""The ReRo bound against closed forms, Monte Carlo and its limits; the membership ROC bound."""

import math
import time

import mpmath
import numpy as np
import pytest
from scipy.stats import norm

from medprivbench.attacks.bounds import (
    membership_tpr_bound,
    per_step_log_ratio,
    rero_bound,
    rero_bound_closed_form,
    rero_bound_monte_carlo,
    rero_bound_numerical,
)


def one_step_bound(kappa, sigma, q):
    """T = 1 for any q: ℓ is increasing in x, so the optimal test rejects x > c with Pr_P = κ."""
    c = sigma * norm.isf(kappa)
    return (1 - q) * kappa + q * norm.sf((c - 1) / sigma)


# ---- reference values (DESIGN.md) ---------------------------------------------------------------
def test_reference_values():
    assert rero_bound(0.1, 10.0, 1.0, 100) == pytest.approx(0.389, abs=5e-4)
    assert rero_bound(0.01, 5.0, 1.0, 25) == pytest.approx(0.092, abs=5e-4)
    assert rero_bound(0.1, 1.0, 0.01, 1000) == pytest.approx(0.195, abs=2e-3)


def test_closed_form_is_gaussian_dp_tradeoff():
    # Φ(Φ⁻¹(κ) + √T/σ): at κ = 1/2 and √T/σ = 1 it is Φ(1)
    assert rero_bound_closed_form(0.5, 2.0, 4) == pytest.approx(norm.cdf(1.0), rel=1e-12)
    assert rero_bound(0.5, 2.0, 1.0, 4, method="closed_form") == rero_bound_closed_form(0.5, 2.0, 4)


# ---- numerical method against independent computations ------------------------------------------
@pytest.mark.parametrize("kappa", [0.1, 1e-2, 1e-5])
@pytest.mark.parametrize("sigma,steps", [(10.0, 100), (1.0, 1), (3.0, 50), (0.8, 10)])
def test_numerical_matches_closed_form_at_full_batch(kappa, sigma, steps):
    exact = rero_bound_closed_form(kappa, sigma, steps)
    numerical = rero_bound_numerical(kappa, sigma, 1.0, steps)
    assert numerical >= exact - 1e-12  # the discretisation dominates: an upper bound
    assert numerical - exact <= 1e-3


@pytest.mark.parametrize("kappa", [0.3, 1e-2, 1e-6])
@pytest.mark.parametrize("sigma,q", [(1.0, 0.01), (0.5, 0.1), (2.0, 0.5), (0.3, 0.002)])
def test_numerical_matches_single_step_exact(kappa, sigma, q):
    exact = one_step_bound(kappa, sigma, q)
    numerical = rero_bound_numerical(kappa, sigma, q, 1)
    assert numerical >= exact - 1e-12
    assert numerical - exact <= 1e-3 * max(1.0, 10 * exact)


@pytest.mark.parametrize("kappa", [0.1, 0.01])
@pytest.mark.parametrize("sigma,q,steps", [(1.0, 0.01, 200), (2.0, 0.1, 100), (0.5, 0.02, 100), (0.3, 0.005, 100)])
def test_numerical_agrees_with_monte_carlo(kappa, sigma, q, steps):
    estimate, stderr = rero_bound_monte_carlo(kappa, sigma, q, steps, n_samples=20_000, seed=1)
    numerical = rero_bound_numerical(kappa, sigma, q, steps)
    # the standard error leaves out the error of the estimated threshold, hence the extra 0.003
    assert abs(numerical - estimate) <= 4 * stderr + 3e-3


def test_monte_carlo_matches_closed_form():
    estimate, stderr = rero_bound_monte_carlo(0.1, 2.0, 1.0, 16, n_samples=50_000, seed=3)
    assert stderr < 0.01
    assert abs(estimate - rero_bound_closed_form(0.1, 2.0, 16)) <= 4 * stderr + 2e-3


def test_auto_uses_the_numerical_method_below_full_batch():
    assert rero_bound(1e-3, 1.5, 0.05, 500) == rero_bound_numerical(1e-3, 1.5, 0.05, 500)
    assert rero_bound(1e-3, 1.5, 1.0, 500) == rero_bound_closed_form(1e-3, 1.5, 500)


# ---- monotonicity and limits --------------------------------------------------------------------
def test_increases_with_steps_and_sample_rate_decreases_with_sigma():
    kappa = 1 / 500
    by_steps = [rero_bound(kappa, 1.5, 0.05, t) for t in (1, 10, 100, 1000, 5000)]
    by_rate = [rero_bound(kappa, 1.5, q, 500) for q in (1e-3, 0.01, 0.05, 0.2, 1.0)]
    by_sigma = [rero_bound(kappa, s, 0.05, 500) for s in (0.4, 0.7, 1.0, 2.0, 5.0, 20.0)]
    assert np.all(np.diff(by_steps) > 0)
    assert np.all(np.diff(by_rate) > 0)
    assert np.all(np.diff(by_sigma) < 0)
    assert min(by_steps + by_rate + by_sigma) >= kappa


@pytest.mark.parametrize("kappa", [0.5, 0.1, 1e-3, 1 / 5000, 1e-6])
def test_at_least_the_base_rate_and_increasing_in_it(kappa):
    for sigma, q, steps in [(1.0, 0.01, 1000), (5.0, 0.1, 100), (0.6, 0.05, 2000)]:
        value = rero_bound(kappa, sigma, q, steps)
        assert kappa <= value <= 1.0
        assert rero_bound(kappa * 0.5, sigma, q, steps) < value


@pytest.mark.parametrize("q,steps", [(0.01, 1000), (0.1, 100), (1.0, 10)])
def test_large_noise_learns_nothing(q, steps):
    for kappa in (0.1, 1e-4):
        assert rero_bound(kappa, 1e5, q, steps) == pytest.approx(kappa, rel=1e-3)
        assert rero_bound(kappa, math.inf, q, steps) == kappa


@pytest.mark.parametrize("sigma", [1e-8, 1e-4, 0.01, 0.05])
def test_tiny_noise_reveals_every_sampled_step_quickly(sigma):
    start = time.perf_counter()
    # q·T ≫ 1: the target is sampled at least once, so γ ≈ 1
    assert rero_bound(1 / 5000, sigma, 0.05, 10_000) == pytest.approx(1.0, abs=1e-9)
    # q·T = 0.1: only the steps that sample the target leak, γ = 1 − (1 − q)^T·(1 − κ)
    kappa, q, steps = 0.01, 1e-3, 100
    assert rero_bound(kappa, sigma, q, steps) == pytest.approx(1 - (1 - q) ** steps * (1 - kappa), abs=1e-6)
    assert time.perf_counter() - start < 0.5


def test_no_noise_is_certain_reconstruction():
    for method in ("auto", "numerical", "monte_carlo"):
        assert rero_bound(0.01, 0.0, 0.1, 10, method=method) == 1.0
    assert rero_bound_closed_form(0.01, 0.0, 10) == 1.0


def test_benchmark_regime_is_fast():
    """κ = 1/N_train, T up to 10⁴ and q of a few percent: a few seconds at most per call."""
    start = time.perf_counter()
    for sigma, q in [(0.3, 0.1), (0.8, 0.01), (2.0, 0.05)]:
        assert 1 / 5000 <= rero_bound(1 / 5000, sigma, q, 10_000) <= 1.0
    assert time.perf_counter() - start < 10.0


def test_log_ratio_is_stable_at_extreme_arguments():
    u = np.array([-1e300, -1e3, -1.0, -1e-12, 0.0, 1e-12, 50.0, 1e3, 1e300])
    for q in (1e-6, 0.3, 1.0):
        values = per_step_log_ratio(u, q)
        assert np.all(np.isfinite(values))
        assert np.all(np.diff(values) >= 0)  # ℓ is increasing
        with mpmath.workdps(60):
            qm = mpmath.mpf(q)
            exact = [float(mpmath.log(1 - qm + qm * mpmath.exp(mpmath.mpf(x)))) for x in u[np.abs(u) <= 1e3]]
        np.testing.assert_allclose(values[np.abs(u) <= 1e3], exact, rtol=1e-12)
    assert per_step_log_ratio(1e300, 0.3) == pytest.approx(1e300 + math.log(0.3), rel=1e-15)


# ---- input validation ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "args,name",
    [
        ((0.0, 1.0, 0.1, 10), "kappa"),
        ((1.0, 1.0, 0.1, 10), "kappa"),
        ((0.1, -1.0, 0.1, 10), "sigma"),
        ((0.1, math.nan, 0.1, 10), "sigma"),
        ((0.1, 1.0, 0.0, 10), "sample_rate"),
        ((0.1, 1.0, 1.5, 10), "sample_rate"),
        ((0.1, 1.0, 0.1, 0), "steps"),
        ((0.1, 1.0, 0.1, 2.5), "steps"),
    ],
)
def test_invalid_inputs_name_the_value(args, name):
    with pytest.raises(ValueError, match=name):
        rero_bound(*args)


def test_invalid_method_and_closed_form_below_full_batch():
    with pytest.raises(ValueError, match="method"):
        rero_bound(0.1, 1.0, 0.1, 10, method="edgeworth")
    with pytest.raises(ValueError, match="sample_rate=1"):
        rero_bound(0.1, 1.0, 0.1, 10, method="closed_form")


# ---- membership ROC bound -----------------------------------------------------------------------
def test_membership_tpr_bound():
    fpr = np.array([0.0, 1e-3, 0.01, 0.5, 1.0])
    np.testing.assert_allclose(membership_tpr_bound(fpr, 1.0, 1e-5), np.minimum(1, math.e * fpr + 1e-5))
    np.testing.assert_allclose(membership_tpr_bound(fpr, 0.0, 0.0), fpr)  # ε = 0: no test beats chance
    np.testing.assert_array_equal(membership_tpr_bound(fpr, math.inf, 0.0), np.ones(5))
    np.testing.assert_array_equal(membership_tpr_bound([0.0, 1e-300], 1e6, 0.0), [0.0, 1.0])  # no overflow
    with pytest.raises(ValueError, match="fpr"):
        membership_tpr_bound([1.2], 1.0, 0.0)
    with pytest.raises(ValueError, match="epsilon"):
        membership_tpr_bound([0.1], -1.0, 0.0)
    with pytest.raises(ValueError, match="delta"):
        membership_tpr_bound([0.1], 1.0, 2.0)

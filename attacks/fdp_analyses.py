"""The f-DP analyses of a one-run audit: the least private claim of a family that the audit rejects.

Mahloujifar, Melis, Chaudhuri, "Auditing f-Differential Privacy in One Run" (ICML 2025, arXiv
2410.22235) bound the guessing game with abstentions (a recursion over the number of correct
guesses; the test is :func:`medprivbench.attacks.fdp.fdp_rejects`). Each analysis here applies it
to one family of trade-off curves, μ-GDP (``fdp_gdp``), the Poisson-subsampled Gaussian composed T
times indexed by σ' (``fdp_dpsgd``) and (ε, δ)-DP (``fdp_approx_dp``), searches the family for the
boundary between rejected and accepted claims, and reports the ε of the least private claim the
observation (r guesses, v correct, m canaries) rejects at level α. The curves themselves are in
:mod:`medprivbench.attacks.fdp`; :func:`medprivbench.attacks.one_run_analysis.one_run_bounds` runs
every analysis registered here (``FDP_ANALYSES``, one decorated function each, one calling shape)
beside Steinke's.

What each family's ε means:

* ``fdp_dpsgd`` tests claims "this training is DP-SGD at the run's (q, T) with noise multiplier
  σ'". As a test of the claimed σ it is valid for any mechanism: a training that satisfies the
  trade-off curve of DP-SGD at (σ, q, T) is rejected with probability at most α, whatever it is.
  The ε it reports, ε(δ) of the least private rejected σ', is a lower bound on the training's ε
  only if the training is DP-SGD at the claimed q and T (at some noise level): a mechanism of
  another shape can fail that curve and still have a smaller ε(δ). Within that family the test
  is conservative: the trade-off curve of Poisson-subsampled Gaussian DP-SGD at
  the run's (q, T) is symmetrised (the lower convex envelope of min(f, f⁻¹), add and remove) and
  discretised so that it lies *below* the true curve (the dominating pair of
  :mod:`medprivbench.attacks.privacy_loss`), so each test is conservative. A larger σ' is a
  post-processing of a smaller one, so a true σ is never rejected except with probability α and
  neither is any σ' ≤ σ. The ε reported is ε(δ) of a σ' one grid step (0.5 %) more private than
  the least private rejected one: that claim is rejected too, and the step moves ε(δ) by more
  than the numerical error of computing it (about 1e-3), so the number stays at most the true
  ε(δ) of a run that is DP-SGD at (q, T).
* ``fdp_approx_dp`` rejects (ε, δ)-DP claims directly: a lower bound on ε at δ for any mechanism,
  the f-DP counterpart of Steinke's analysis.
* ``fdp_gdp`` rejects μ-GDP claims and converts the least private rejected μ to ε at δ with
  δ(ε) = Φ(−ε/μ + μ/2) − e^ε·Φ(−ε/μ − μ/2) (Dong, Roth, Su 2022). This is what Mahloujifar et al.
  report for DP-SGD, and a lower bound on ε(δ) when the mechanism is Gaussian (q = 1). Subsampled
  DP-SGD is only approximately Gaussian (central limit theorem; Bu, Dong, Long, Su 2020): its
  effective μ, Φ⁻¹(1 − x) − Φ⁻¹(f(x)), grows as the type I error x falls, so it is μ-GDP for no
  finite μ and the number is the ε of a Gaussian approximation, not a guaranteed bound. At the
  PneumoniaMNIST recipe (q = 1/37, T = 740, δ = 1e-5) the largest effective μ over x ≥ 1e-4
  converts to ε = 1.97 at a true ε(δ) of 1.98, and to 7.2 at 7.99; over x ≥ 1e-6 to 2.00 (above
  the truth) and 7.6. The test reads the curve from about x = f̄⁻¹(α·v/m) up (near 1e-3 at ε = 2
  with m = 5000). Report ``fdp_dpsgd`` as the bound and ``fdp_gdp`` beside it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from .fdp import DPSGDTradeoff, approx_dp_inverse_power, dpsgd_tradeoff, fdp_rejects, gdp_epsilon, gdp_inverse_power

# Parameter searches stop when the bracket is narrower than this (in μ, ε, or log σ').
SEARCH_TOLERANCE = 1e-4
# DP-SGD family: σ' searched on the grid σ' = exp(k·LOG_SIGMA_STEP) between these limits.
LOG_SIGMA_STEP = 0.005
DPSGD_SIGMA_RANGE = (0.1, 100.0)


# --------------------------------------------------------------------------------------------
# searches over a family of claims
def _largest_rejected(rejects: Callable[[float], bool], low: float, high: float, tolerance: float) -> float:
    """Bisection for the boundary of a claim family where rejects(low) is True and rejects(high) False.

    Returns a parameter that was itself tested and rejected (the lower end of the final bracket).
    """
    while high - low > tolerance:
        middle = (low + high) / 2.0
        if rejects(middle):
            low = middle
        else:
            high = middle
    return low


# --------------------------------------------------------------------------------------------
# the analyses: one registered function each, one calling shape
@dataclass(frozen=True)
class FdpAnalysis:
    name: str
    function: Callable[..., dict]
    needs_mechanism: bool  # needs the run's sample rate q and steps T


FDP_ANALYSES: dict[str, FdpAnalysis] = {}


def register_fdp_analysis(name: str, *, needs_mechanism: bool = False):
    """Register ``function(r, v, m, delta, alpha, sample_rate, steps) -> dict`` under ``name``."""

    def decorator(function):
        FDP_ANALYSES[name] = FdpAnalysis(name, function, needs_mechanism)
        return function

    return decorator


def _gdp_boundary(r: int, v: int, m: int, alpha: float) -> float:
    """The largest μ whose μ-GDP claim is rejected at level α (0 if none), by bisection on μ."""

    def rejects(mu: float) -> bool:
        return fdp_rejects(gdp_inverse_power(mu), r, v, m, alpha)

    if not rejects(SEARCH_TOLERANCE):
        return 0.0
    low, high = SEARCH_TOLERANCE, 1.0
    while rejects(high):
        low, high = high, 2.0 * high
    return _largest_rejected(rejects, low, high, SEARCH_TOLERANCE)


@register_fdp_analysis("fdp_gdp")
def fdp_gdp_audit(r: int, v: int, m: int, delta: float, alpha: float, sample_rate=None, steps=None) -> dict:
    """Least private μ-GDP claim rejected at level α, and its ε at δ (Mahloujifar et al. 2025).

    μ grows with leakage; claims μ ≤ μ_lb are rejected (bisection on μ), and
    ε_lb = :func:`gdp_epsilon` (μ_lb, δ). 0 when even μ → 0 is not rejected. See the module
    docstring for what this ε means for subsampled DP-SGD.

    Returns:
        dict with epsilon_lb, mu (the rejected μ, 0 if none), r, v, m.
    """
    mu = _gdp_boundary(r, v, m, alpha)
    return {"epsilon_lb": gdp_epsilon(mu, delta) if mu > 0 else 0.0, "mu": mu, "r": r, "v": v, "m": m}


@register_fdp_analysis("fdp_approx_dp")
def fdp_approx_dp_audit(r: int, v: int, m: int, delta: float, alpha: float, sample_rate=None, steps=None) -> dict:
    """Largest ε whose (ε, δ)-DP claim the f-DP test rejects at level α (Mahloujifar et al. 2025).

    A lower bound on ε at δ for any mechanism; with δ = 0 it is the f-DP counterpart of Steinke's
    ε-DP analysis (never above it: randomised response reaches Steinke's binomial tail).

    Returns:
        dict with epsilon_lb, r, v, m.
    """

    def rejects(epsilon: float) -> bool:
        return fdp_rejects(approx_dp_inverse_power(epsilon, delta), r, v, m, alpha)

    epsilon = 0.0
    if rejects(0.0):
        low, high = 0.0, 1.0
        while rejects(high):
            low, high = high, 2.0 * high
        epsilon = _largest_rejected(rejects, low, high, SEARCH_TOLERANCE)
    return {"epsilon_lb": epsilon, "r": r, "v": v, "m": m}


def _clt_sigma(mu: float, q: float, steps: int) -> float:
    """σ' whose DP-SGD is about μ-GDP by the central limit theorem, μ = q·√(T·(e^{1/σ'²} − 1)) (Bu et al. 2020)."""
    if mu <= 0.0:
        return math.inf
    return 1.0 / math.sqrt(math.log1p(mu**2 / (q**2 * steps)))


@register_fdp_analysis("fdp_dpsgd", needs_mechanism=True)
def fdp_dpsgd_audit(r: int, v: int, m: int, delta: float, alpha: float, sample_rate: float, steps: int) -> dict:
    """Least private DP-SGD claim "noise multiplier σ' at the run's (q, T)" rejected at level α.

    The family is :class:`DPSGDTradeoff`; σ' grows with privacy, and the test of a claim σ' is
    conservative (its curve lies below the true one). σ' lives on the grid exp(k·``LOG_SIGMA_STEP``)
    within ``DPSGD_SIGMA_RANGE``: the search starts at the σ' that the central limit theorem
    pairs with the rejected μ of :func:`fdp_gdp_audit`, brackets the boundary by doubling steps
    and bisects to the smallest rejected grid point σ_b (one below it is not rejected).

    The ε reported is ε(δ) of the grid point one step *more* private than σ_b. The exact test is
    monotone in the claim, so that claim is rejected as well, and the step (a 0.5 % change of σ')
    moves ε(δ) by far more than the discretisation error of :meth:`DPSGDTradeoff.epsilon` (checked
    in the tests): the number stays below the true ε(δ) of any run that is DP-SGD at (q, T) with
    a σ that is not rejected. The rejection of a claimed σ holds for any mechanism; the ε is a
    lower bound on ε only for a training that is DP-SGD at the claimed q and T (see the module
    docstring). Where that ε(δ) is too large for floating point (beyond about 700), more private
    grid points are taken until it is not. When even the least private σ' of the range is
    rejected, the search stops there (at_search_limit = True): still a valid bound, only not the
    largest one, so the number is a limit of the search, not a measurement of the training.

    Returns:
        dict with epsilon_lb, sigma (the σ' whose ε is reported, inf if nothing is rejected),
        sigma_rejected (σ_b), at_search_limit, r, v, m.
    """
    low_k = math.ceil(math.log(DPSGD_SIGMA_RANGE[0]) / LOG_SIGMA_STEP)
    high_k = math.floor(math.log(DPSGD_SIGMA_RANGE[1]) / LOG_SIGMA_STEP)

    def curve(k: int) -> DPSGDTradeoff:
        return dpsgd_tradeoff(math.exp(k * LOG_SIGMA_STEP), sample_rate, steps)

    def rejects(k: int) -> bool:
        return fdp_rejects(curve(k).inverse_power, r, v, m, alpha)

    result = {"r": r, "v": v, "m": m, "at_search_limit": False}
    if not rejects(high_k):
        return {"epsilon_lb": 0.0, "sigma": math.inf, "sigma_rejected": math.inf, **result}
    guess = _clt_sigma(_gdp_boundary(r, v, m, alpha), sample_rate, steps)
    start = high_k if math.isinf(guess) else min(high_k, max(low_k, round(math.log(guess) / LOG_SIGMA_STEP)))
    rejected, accepted = _bracket(rejects, start, low_k, high_k)
    if accepted is None:
        result["at_search_limit"] = True
    else:
        while rejected - accepted > 1:
            middle = (rejected + accepted) // 2
            if rejects(middle):
                rejected = middle
            else:
                accepted = middle
    # one step more private; further while ε(δ) overflows (a σ' so small that P's masses underflow)
    reported, step = rejected + 1, 1
    while not math.isfinite(epsilon := curve(reported).epsilon(delta)):
        reported, step = reported + step, 2 * step
    return {"epsilon_lb": epsilon, "sigma": curve(reported).sigma, "sigma_rejected": curve(rejected).sigma, **result}


def _bracket(rejects: Callable[[int], bool], start: int, low: int, high: int) -> tuple[int, int | None]:
    """Grid points (rejected, accepted) with accepted < rejected around the boundary, from ``start``.

    rejects(high) is known to be True. Steps of 10 grid points, doubled each time, go down from a
    rejected start or up from an accepted one. accepted is None when even ``low`` is rejected.
    """
    step = 10
    if rejects(start):
        rejected = start
        while rejected > low:
            candidate = max(low, rejected - step)
            if not rejects(candidate):
                return rejected, candidate
            rejected, step = candidate, 2 * step
        return low, None
    accepted = start
    while True:  # ends: rejects(high) is True
        candidate = min(high, accepted + step)
        if rejects(candidate):
            return candidate, accepted
        accepted, step = candidate, 2 * step

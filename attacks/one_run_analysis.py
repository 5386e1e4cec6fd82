"""One-run analyses of a white-box canary audit, and their ceiling on the idealised mechanism.

**The audit.** m "Dirac" gradient canaries (clip norm normalised to C = 1) are each included in a
single DP-SGD run independently with probability ½; an included canary is sampled by Poisson
sampling at rate q at each of the T steps, and every step adds N(0, σ²) noise (σ the noise
multiplier). The auditor fixes k₊ and k₋ before scoring, guesses "included" for the k₊ highest
scores and "excluded" for the k₋ lowest, abstains on the rest, and counts v correct guesses out
of r = k₊ + k₋. Each analysis below turns (r, v, m) into a lower bound on ε at the run's δ that
holds with confidence 1 − α.

**The idealised mechanism** (:func:`simulate_ideal_canaries`, DESIGN.md "Ideal white-box audit").
Per step the auditor sees o_t = b_t + N(0, σ²), b_t ~ Bernoulli(q) for an included canary and 0
otherwise. With all iterates the optimal score is the log-likelihood ratio Σ_t ℓ(o_t),
ℓ(o) = log(1 − q + q·exp((2o − 1)/(2σ²))) (:func:`medprivbench.attacks.bounds.per_step_log_ratio`).
The other observation (key ``final_model``) scores the sum of the updates Σ_t o_t: the last iterate
of a canary block trained by plain SGD at a constant learning rate. It is not the final model of
the recipe itself, whose momentum and learning-rate schedule weigh the steps differently. No
training is needed, so the analyses' bounds on it are the ceiling an empirical white-box audit with
the same (σ, q, T, m, k₊, k₋) is measured against (:func:`ideal_ceiling`).

**What the ceiling means.** With all iterates the score is already the Neyman–Pearson optimal test
of each canary, so no stronger attack on the same observation exists: a ceiling below the
accountant's ε is what one run with m canaries, k₊ + k₋ guesses and level α can show, a limit of
the one-run guessing game and its analysis, not a weakness of the attack. An empirical bound is
read against the ceiling (bound ÷ ceiling); bound ÷ accountant ε is bounded by ceiling ÷
accountant ε. The ceiling is an estimate: a mean over a few idealised runs (the spread is recorded
with it), for guess counts chosen as the best of several on those same runs, so it is biased
upward.

**Analyses** (:func:`one_run_bounds`, one entry each in ``FDP_ANALYSES`` besides Steinke's):

* ``steinke`` — Steinke, Nasr, Jagielski 2023, via :func:`medprivbench.attacks.auditing.one_run_audit`.
* ``fdp_gdp``, ``fdp_dpsgd``, ``fdp_approx_dp`` — Mahloujifar, Melis, Chaudhuri, "Auditing
  f-Differential Privacy in One Run" (ICML 2025, arXiv 2410.22235): their bound for the guessing
  game with abstentions (a recursion over the number of correct guesses), applied to one family
  of trade-off curves each: μ-GDP, the Poisson-subsampled Gaussian composed T times indexed by
  σ', and (ε, δ)-DP. The empirical ε is that of the least private claim of the family that the
  observation rejects at level α.

The f-DP test and the trade-off curves it is applied to (μ-GDP, (ε, δ)-DP, DP-SGD at (q, T) and σ')
are in :mod:`medprivbench.attacks.fdp`; this module runs the searches over each family's claims.

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
  :mod:`medprivbench.attacks.bounds`), so each test is conservative. A larger σ' is a
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

Agrawal et al. 2026 ("Let's Ask Gauss: Improved One-Run Privacy Auditing", arXiv 2606.12733) is not
implemented: only its abstract was available here, not the analysis itself.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from . import bounds
from .auditing import one_run_audit
from .fdp import (
    DPSGDTradeoff,
    approx_dp_inverse_power,
    check_integer,
    check_unit,
    dpsgd_tradeoff,
    fdp_rejects,
    gdp_epsilon,
    gdp_inverse_power,
)

OBSERVATIONS = ("all_iterates", "final_model")
# What each observation is, in words for readers (the keys above stay the record's keys).
OBSERVATION_LABELS = {
    "all_iterates": "all iterates",
    "final_model": "sum of updates (final model of plain constant-rate SGD)",
}
THREAT_MODEL = (
    "white-box canary audit: m gradient (Dirac) canaries, each included with probability 1/2 and sampled "
    "like any example; the auditor sees every step's noisy update (all_iterates) or only the sum of the "
    "updates (final_model: the final model of plain SGD at a constant learning rate, not of the recipe's "
    "momentum and schedule), fixes k+ 'included' and k- 'excluded' guesses before scoring, and is told how many are right"
)

# Draws per chunk of canaries when simulating all iterates: 2**21 float64 draws (16 MiB) per array.
SIMULATION_CHUNK_DRAWS = 1 << 21
# Parameter searches stop when the bracket is narrower than this (in μ, ε, or log σ').
SEARCH_TOLERANCE = 1e-4
# DP-SGD family: σ' searched on the grid σ' = exp(k·LOG_SIGMA_STEP) between these limits.
LOG_SIGMA_STEP = 0.005
DPSGD_SIGMA_RANGE = (0.1, 100.0)


# --------------------------------------------------------------------------------------------
# input validation (once, at the public boundary; the integer and unit-interval checks are fdp's)
def _check_sigma(sigma) -> float:
    s = float(sigma)
    if not (math.isfinite(s) and s >= 0.0):
        raise ValueError(f"sigma={sigma!r} is not valid; expected a finite noise multiplier >= 0 (0 = no noise)")
    return s


def _check_mechanism(sample_rate, steps) -> tuple[float, int]:
    return check_unit("sample_rate", sample_rate, low_open=True, high_open=False), check_integer("steps", steps, 1)


# --------------------------------------------------------------------------------------------
# the idealised mechanism
def simulate_ideal_canaries(
    m: int,
    sigma: float,
    sample_rate: float,
    steps: int,
    observation: str,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Scores of m Dirac canaries in the idealised white-box audit, and which were included.

    Each canary is included with probability ½. An included canary is sampled at each of the T
    steps with probability q (b_t ~ Bernoulli(q)); an excluded one never (b_t = 0). The auditor
    observes o_t = b_t + σ·z_t, z_t ~ N(0, 1), in units of the clip norm (C = 1), and scores

    * ``all_iterates``: Σ_t ℓ(o_t), ℓ(o) = log(1 − q + q·exp((2o − 1)/(2σ²))), the log-likelihood
      ratio of "included" against "excluded" (Neyman–Pearson optimal); drawn step by step, in
      chunks of canaries so that memory stays near 100 MB whatever m·T;
    * ``final_model``: the sum of the updates Σ_t o_t (the last iterate of plain SGD at a constant
      learning rate; momentum or a learning-rate schedule would weigh the steps differently),
      which is K + σ·√T·z with K ~ Binomial(T, q) (0 when excluded), drawn in that form: the
      same law as the sum of the T steps.

    σ = 0 (no noise) scores every canary by K, the number of steps that sampled it, under both
    observations: finite, and ranking included canaries above excluded ones up to ties at 0.

    Args:
        m: number of canaries, ≥ 1.
        sigma: noise multiplier σ ≥ 0 (finite).
        sample_rate: Poisson sampling rate q in (0, 1].
        steps: number of DP-SGD steps T ≥ 1.
        observation: ``all_iterates`` or ``final_model``.
        rng: the random generator (inclusions first, then the steps).

    Returns:
        (scores, included): (m,) float64 scores, higher = more likely included; (m,) bool.
    """
    m = check_integer("m", m, 1)
    sigma = _check_sigma(sigma)
    q, steps = _check_mechanism(sample_rate, steps)
    if observation not in OBSERVATIONS:
        raise ValueError(f"observation={observation!r} is not valid; choose one of {', '.join(OBSERVATIONS)}")
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng={rng!r} is not valid; expected a numpy.random.Generator")

    included = rng.random(m) < 0.5
    if sigma == 0.0 or observation == "final_model":
        sampled = np.where(included, rng.binomial(steps, q, size=m), 0).astype(np.float64)
        if sigma == 0.0:
            return sampled, included
        return sampled + sigma * math.sqrt(steps) * rng.standard_normal(m), included

    scores = np.empty(m)
    rows = max(1, SIMULATION_CHUNK_DRAWS // steps)
    for start in range(0, m, rows):
        stop = min(m, start + rows)
        observed = sigma * rng.standard_normal((stop - start, steps))
        members = np.flatnonzero(included[start:stop])
        observed[members] += rng.random((members.size, steps)) < q
        scores[start:stop] = bounds.per_step_log_ratio((2.0 * observed - 1.0) / (2.0 * sigma**2), q).sum(axis=1)
    return scores, included


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


# --------------------------------------------------------------------------------------------
# entry points for the engine
def one_run_bounds(
    scores: np.ndarray,
    included: np.ndarray,
    *,
    delta: float,
    k_plus: int,
    k_minus: int,
    alpha: float = 0.05,
    sample_rate: float | None = None,
    steps: int | None = None,
) -> dict[str, dict]:
    """Every one-run analysis of one audit: ε lower bounds at confidence 1 − α, each with its inputs.

    The guesses (k₊ highest scores "included", k₋ lowest "excluded", ties by canary index; k₊ and
    k₋ fixed before scoring) and the count v of correct ones come from
    :func:`medprivbench.attacks.auditing.one_run_audit`, which is also the ``steinke`` entry; each
    registered f-DP analysis (``FDP_ANALYSES``) is applied to the same (r, v, m). ``fdp_dpsgd``
    needs the run's sampling rate and number of steps and is left out without them.

    Args:
        scores: (m,) finite canary scores, higher = more likely included.
        included: (m,) bool ground truth (each canary included with probability ½).
        delta: δ of the run, in (0, 1).
        k_plus, k_minus: numbers of "included" / "excluded" guesses, k₊ + k₋ in [1, m].
        alpha: significance level in (0, 1).
        sample_rate, steps: Poisson sampling rate q in (0, 1] and number of steps T of the run;
            both or neither.

    Returns:
        {"steinke": one_run_audit's dict, "fdp_gdp": {...}, "fdp_approx_dp": {...},
        "fdp_dpsgd": {...}}; each dict has epsilon_lb, r, v, m and the rejected parameter.
    """
    delta = check_unit("delta", delta, low_open=True, high_open=True)
    alpha = check_unit("alpha", alpha, low_open=True, high_open=True)
    if (sample_rate is None) != (steps is None):
        raise ValueError(
            f"sample_rate={sample_rate!r}, steps={steps!r} are not valid; give both (for fdp_dpsgd) or neither"
        )
    if sample_rate is not None:
        sample_rate, steps = _check_mechanism(sample_rate, steps)
    steinke = one_run_audit(scores, included, delta, k_plus=k_plus, k_minus=k_minus, alpha=alpha)
    results = {"steinke": steinke}
    for name, analysis in FDP_ANALYSES.items():
        if analysis.needs_mechanism and sample_rate is None:
            continue
        results[name] = analysis.function(steinke["r"], steinke["v"], steinke["m"], delta, alpha, sample_rate, steps)
    return results


def analyse(scores: np.ndarray, included: np.ndarray, *, delta: float, alpha: float, k_plus: int, k_minus: int,
            sample_rate: float, steps: int, analyses) -> dict[str, dict]:
    """The chosen analyses of one audit (each an ε lower bound at confidence 1 − α)."""
    results = one_run_bounds(scores, included, delta=delta, k_plus=k_plus, k_minus=k_minus, alpha=alpha,
                             sample_rate=sample_rate, steps=steps)
    return {name: results[name] for name in analyses}


def at_limit(result: dict) -> bool:
    """Whether an analysis' bound is a limit of the analysis rather than a measurement.

    True when every guess was right (v = r: the largest bound r guesses over m canaries allow, the
    same whatever the training leaks beyond it) or when the σ' search of ``fdp_dpsgd`` stopped at
    the edge of its range (``at_search_limit``). Such a number is still a valid lower bound.
    """
    return bool(result.get("at_search_limit", False)) or int(result["v"]) == int(result["r"])


def spread(values) -> float:
    """Sample standard deviation (ddof = 1) of the values; NaN for fewer than two."""
    values = np.asarray(values, dtype=np.float64)
    return float(np.std(values, ddof=1)) if values.size >= 2 else math.nan


@dataclass
class IdealisedRuns:
    """Simulations of the idealised mechanism with a run's claimed σ, q, T and m (no training),
    drawn once (one generator seeded with ``seed``) and analysed for any guess counts."""

    sigma: float
    sample_rate: float
    steps: int
    m: int
    observation: str
    n_simulations: int
    seed: int
    runs: list = field(default_factory=list)

    def __post_init__(self) -> None:
        rng = np.random.default_rng(self.seed)
        self.runs = [simulate_ideal_canaries(self.m, self.sigma, self.sample_rate, self.steps, self.observation, rng)
                     for _ in range(self.n_simulations)]

    def results(self, k_plus: int, k_minus: int, *, delta: float, alpha: float, analyses) -> dict[str, list[dict]]:
        """Each analysis' full result (bound, r, v, search flags) on every simulated run."""
        out: dict[str, list[dict]] = {name: [] for name in analyses}
        for scores, included in self.runs:
            found = analyse(scores, included, delta=delta, alpha=alpha, k_plus=k_plus, k_minus=k_minus,
                            sample_rate=self.sample_rate, steps=self.steps, analyses=analyses)
            for name in analyses:
                out[name].append(found[name])
        return out

    def bounds(self, k_plus: int, k_minus: int, *, delta: float, alpha: float, analyses) -> dict[str, list[float]]:
        """Each analysis' ε lower bound on every simulated run."""
        found = self.results(k_plus, k_minus, delta=delta, alpha=alpha, analyses=analyses)
        return {name: [float(result["epsilon_lb"]) for result in results] for name, results in found.items()}


def ideal_ceiling(
    m: int,
    sigma: float,
    sample_rate: float,
    steps: int,
    delta: float,
    observation: str,
    k_plus: int,
    k_minus: int,
    alpha: float = 0.05,
    n_simulations: int = 3,
    seed: int = 0,
) -> dict[str, float]:
    """The analyses' ε lower bounds on the idealised mechanism: what one run with m canaries at level α can show.

    The :class:`IdealisedRuns` of (σ, q, T, m) analysed by every analysis of
    :func:`one_run_bounds` (with the run's q and T, so ``fdp_dpsgd`` included). With all iterates
    the score is the optimal test, so these are the most the one-run analyses show at these
    (m, k₊, k₋, α), not the bound of a stronger attack.

    Returns:
        {"<analysis>_mean", "<analysis>_min", "<analysis>_max", "<analysis>_sd" (sample standard
        deviation, NaN for one simulation), "<analysis>_at_limit" (share of the simulations whose
        bound is a limit of the analysis, :func:`at_limit`): ε lower bounds over the simulations,
        for steinke, fdp_gdp, fdp_approx_dp, fdp_dpsgd; "n_simulations"}.
    """
    n_simulations = check_integer("n_simulations", n_simulations, 1)
    seed = check_integer("seed", seed, 0)
    ideal = IdealisedRuns(sigma, sample_rate, steps, m, observation, n_simulations, seed)
    found = ideal.results(k_plus, k_minus, delta=delta, alpha=alpha, analyses=["steinke", *FDP_ANALYSES])
    summary: dict[str, float] = {"n_simulations": float(n_simulations)}
    for name, results in found.items():
        values = [float(result["epsilon_lb"]) for result in results]
        summary[f"{name}_mean"] = float(np.mean(values))
        summary[f"{name}_min"] = float(np.min(values))
        summary[f"{name}_max"] = float(np.max(values))
        summary[f"{name}_sd"] = spread(values)
        summary[f"{name}_at_limit"] = float(np.mean([at_limit(result) for result in results]))
    return summary

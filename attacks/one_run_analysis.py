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
ℓ(o) = log(1 − q + q·exp((2o − 1)/(2σ²))) (:func:`medprivbench.attacks.privacy_loss.per_step_log_ratio`).
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
are in :mod:`medprivbench.attacks.fdp`; the searches over each family's claims, and what each
family's ε means, in :mod:`medprivbench.attacks.fdp_analyses`. This module holds what the analyses
share: the entry points that run them on one audit and the idealised mechanism they are measured on.

Agrawal et al. 2026 ("Let's Ask Gauss: Improved One-Run Privacy Auditing", arXiv 2606.12733) is not
implemented: only its abstract was available here, not the analysis itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .one_run_counting import one_run_audit
from .fdp import check_integer, check_unit
from .fdp_analyses import FDP_ANALYSES
from .privacy_loss import per_step_log_ratio

# Re-exported: the analyses are run, and so looked up, from here.
from .fdp_analyses import (  # noqa: F401
    DPSGD_SIGMA_RANGE,
    LOG_SIGMA_STEP,
    SEARCH_TOLERANCE,
    FdpAnalysis,
    fdp_approx_dp_audit,
    fdp_dpsgd_audit,
    fdp_gdp_audit,
    register_fdp_analysis,
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
        scores[start:stop] = per_step_log_ratio((2.0 * observed - 1.0) / (2.0 * sigma**2), q).sum(axis=1)
    return scores, included


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

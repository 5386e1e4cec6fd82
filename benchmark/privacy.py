"""Privacy accounting for DP-SGD: solving the noise multiplier σ for a target (ε, δ).

DP-SGD (Abadi et al. 2016) with Poisson sampling at rate q, per-sample clipping to norm C and
Gaussian noise of standard deviation σ·C, run for T steps, is (ε, δ)-DP with ε given by an
accountant: PRV (Gopi, Lee, Wutschitz 2021; the default) or RDP (Mironov 2017). Both come from
Opacus; this module only searches σ.

Why not Opacus' ``get_noise_multiplier``: its bisection stops at an *absolute* ε tolerance (0.01),
which at ε = 10⁶ asks for eight significant digits and hundreds of accountant calls, and its PRV
accountant cannot resolve the privacy-loss distribution of a tiny σ (it returns ∞ beyond
ε ≈ 10³ for typical q, T). Here the tolerance is relative, and where PRV gives no finite ε the
solver falls back to RDP and says so in the run record (DESIGN.md: very large ε are first class).
"""

from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass

from .errors import ConfigError

ACCOUNTANTS = ("prv", "rdp")
RELATIVE_TOLERANCE = 1e-3  # the reached ε lies in [target·(1 − tol), target]
ABSOLUTE_TOLERANCE = 0.01
PRV_MAX_EPSILON = 50.0
# The noise multipliers the σ search considers: a budget that needs σ outside is refused.
SIGMA_RANGE = (1e-12, 1e6)


@dataclass(frozen=True)
class NoiseSolution:
    sigma: float  # noise multiplier: noise std = σ·C
    epsilon: float  # ε of the whole run at this σ, by ``accountant``
    accountant: str  # the accountant that produced ``epsilon``
    note: str = ""  # why another accountant than the requested one was used, if it was


@functools.lru_cache(maxsize=4096)
def epsilon_spent(sigma: float, sample_rate: float, steps: int, delta: float, accountant: str) -> float:
    """ε of ``steps`` DP-SGD steps at noise multiplier ``sigma`` and sampling rate ``sample_rate``.

    Cached: the σ search, the ε-spent record and every shadow model ask for the same values.
    """
    from opacus.accountants import create_accountant

    acc = create_accountant(accountant)
    acc.history = [(float(sigma), float(sample_rate), int(steps))]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if accountant == "prv":
            # PRV's grid resolution; a relative error keeps large ε affordable.
            try:
                eps = acc.get_epsilon(delta, eps_error=ABSOLUTE_TOLERANCE)
            except (RuntimeError, ValueError, OverflowError, FloatingPointError, MemoryError):
                return math.inf
            return float(eps) if math.isfinite(eps) else math.inf
        return float(acc.get_epsilon(delta))


def _solve(target: float, delta: float, q: float, steps: int, accountant: str, hi_guess: float | None = None,
           relative_tolerance: float = RELATIVE_TOLERANCE) -> NoiseSolution:
    """Bracket σ, then the Illinois variant of regula falsi on log ε(σ) − log target over log σ.

    ε(σ) is decreasing and close to a power law, so a few accountant calls suffice (PRV calls cost
    seconds each). Stops with ε(σ) ≤ target and within the tolerance of it.
    """

    def f(log_sigma: float) -> float:
        e = epsilon_spent(math.exp(log_sigma), q, steps, delta, accountant)
        return math.log(e) - math.log(target) if 0 < e < math.inf else math.inf

    tol = max(ABSOLUTE_TOLERANCE, relative_tolerance * target)
    log_min, log_max = (math.log(s) for s in SIGMA_RANGE)
    hi = math.log(hi_guess if hi_guess is not None else 1.0)
    f_hi = f(hi)
    while not f_hi <= 0:  # ε too large (or not finite): more noise, up to the largest σ considered
        if hi >= log_max:
            raise _unreachable(target, delta, q, steps)
        hi = min(hi + math.log(2.0), log_max)
        f_hi = f(hi)
    lo = hi - math.log(1.25 if hi_guess is not None else 2.0)
    f_lo = f(lo)
    while f_lo <= 0:  # ε already below target: less noise, down to the smallest σ considered
        hi, f_hi = lo, f_lo
        if lo <= log_min:
            raise _beyond_any_noise(target)
        lo = max(lo - math.log(2.0), log_min)
        f_lo = f(lo)
    g_lo, g_hi = f_lo, f_hi  # interpolation weights (Illinois halves the one that stays put)
    side = 0
    for _ in range(100):
        if target * (1.0 - math.exp(f_hi)) <= tol:
            break
        mid = hi - g_hi * (hi - lo) / (g_hi - g_lo) if math.isfinite(g_lo) else 0.5 * (lo + hi)
        if not lo < mid < hi:
            mid = 0.5 * (lo + hi)
        f_mid = f(mid)
        if f_mid <= 0:
            hi, f_hi, g_hi = mid, f_mid, f_mid
            if side == -1:
                g_lo /= 2.0
            side = -1
        else:
            lo, f_lo, g_lo = mid, f_mid, f_mid
            if side == 1:
                g_hi /= 2.0
            side = 1
    sigma = math.exp(hi)
    return NoiseSolution(sigma=sigma, epsilon=epsilon_spent(sigma, q, steps, delta, accountant), accountant=accountant)


def _unreachable(epsilon: float, delta: float, sample_rate: float, steps: int) -> ConfigError:
    return ConfigError(
        f"privacy.epsilon={epsilon:g} is not reachable with delta={delta:g} in {steps} steps at q={sample_rate:.4g}; "
        "use a larger epsilon or fewer steps"
    )


def _beyond_any_noise(epsilon: float) -> ConfigError:
    return ConfigError(f"privacy.epsilon={epsilon:g} needs σ below {SIGMA_RANGE[0]:g}; no finite noise resolves it; "
                       "use inf for a non-private run")


def check_reachable(*, epsilon: float, delta: float, sample_rate: float, steps: int) -> None:
    """Raise the solver's one-line error, before any job starts, when no σ in :data:`SIGMA_RANGE`
    gives ``epsilon``: two RDP calls at its ends (RDP's ε bounds PRV's from above), no search."""
    if epsilon_spent(SIGMA_RANGE[1], sample_rate, steps, delta, "rdp") > epsilon:
        raise _unreachable(epsilon, delta, sample_rate, steps)
    if epsilon_spent(SIGMA_RANGE[0], sample_rate, steps, delta, "rdp") <= epsilon:
        raise _beyond_any_noise(epsilon)


def solve_noise_multiplier(*, epsilon: float, delta: float, sample_rate: float, steps: int, accountant: str = "prv") -> NoiseSolution:
    """The smallest σ (within tolerance) whose ε after ``steps`` steps is at most ``epsilon``."""
    if accountant == "rdp":
        return _solve(epsilon, delta, sample_rate, steps, "rdp")
    # RDP's σ brackets PRV's from above; a rough one suffices to start the PRV search.
    rdp = _solve(epsilon, delta, sample_rate, steps, "rdp", relative_tolerance=0.05 if epsilon <= PRV_MAX_EPSILON else RELATIVE_TOLERANCE)
    # PRV is tighter than RDP, so its σ is at most RDP's: search from there. Beyond PRV_MAX_EPSILON
    # its privacy-loss grid grows until calls take minutes or give no finite ε.
    if epsilon > PRV_MAX_EPSILON:
        return NoiseSolution(
            sigma=rdp.sigma, epsilon=rdp.epsilon, accountant="rdp",
            note=f"PRV accountant is used up to epsilon={PRV_MAX_EPSILON:g}; RDP used for epsilon={epsilon:g}",
        )
    if not math.isfinite(epsilon_spent(rdp.sigma, sample_rate, steps, delta, "prv")):
        rdp = _solve(epsilon, delta, sample_rate, steps, "rdp", hi_guess=rdp.sigma)
        return NoiseSolution(
            sigma=rdp.sigma, epsilon=rdp.epsilon, accountant="rdp",
            note=f"PRV accountant cannot resolve ε={epsilon:g} (σ={rdp.sigma:.3g}); RDP used instead",
        )
    prv = _solve(epsilon, delta, sample_rate, steps, "prv", hi_guess=rdp.sigma)
    return prv

"""The privacy loss of one DP-SGD step on a lattice, composed over T steps by FFT.

One target example, clip norm normalised to 1, noise multiplier σ, Poisson sampling rate q: per
step the observation is drawn from

    P = N(0, σ²)                          (target absent)
    Q = (1 − q)·N(0, σ²) + q·N(1, σ²)     (target present),

and the privacy loss of an observation x is ℓ(x) = log(1 − q + q·exp((2x − 1)/(2σ²)))
(:func:`per_step_log_ratio`). Everything that needs the distribution of the T-step loss
L = Σ_t ℓ(x_t) under P and under Q reads it from here:

1. :func:`discretise_step` puts one step's pair on the lattice ε_i = log(1 − q) + i·h by
   "connect the dots" (Doroshenko, Ghazi, Kamath, Kumar & Manurangsi, PETS 2022): each cell's mass
   is split between its two end points so that the discrete pair *dominates* the true one (its
   trade-off curve lies below), and so does its T-fold product. :func:`choose_spacing` picks the
   coarsest spacing h whose split adds at most a given share of the per-step variance of ℓ.
2. :func:`composition_window` bounds, by Chernoff, the lattice indices of the T-fold sum outside
   which at most ``WINDOW_TAIL_MASS`` of either distribution falls; :func:`compose` raises the DFT
   to the power T on that window (Koskela, Jälkö & Honkela 2020), so the mass outside aliases.
3. :func:`np_test_power` reads the Neyman–Pearson test at level κ off the composed pair.

It is a module of its own because two bounds are read off the same dominating pair: the ReRo bound
of :func:`medprivbench.attacks.bounds.rero_bound_numerical` (steps 1–3) and the DP-SGD trade-off
curve of :class:`medprivbench.attacks.fdp.DPSGDTradeoff` (steps 1–2, then the whole curve). Inputs
are trusted: they are checked where they enter, at the public functions that use this module.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import fft as sp_fft
from scipy.special import log_ndtr, ndtr

# Per-step truncation of the Gaussians at this many standard deviations (tail mass ~ 1e-23 each).
TRUNCATION_Z = 10.0
# Mass allowed to fall outside the FFT window (Chernoff bound), i.e. to alias.
WINDOW_TAIL_MASS = 1e-14
# A composed support shorter than this is transformed whole, without looking for a window.
FULL_SUPPORT_LENGTH = 1 << 20
# The Chernoff window is computed on at most this many blocks of lattice cells.
CHERNOFF_BLOCKS = 1 << 14


# --------------------------------------------------------------------------------------------
# the per-step privacy loss
def per_step_log_ratio(u: np.ndarray, sample_rate: float) -> np.ndarray:
    """ℓ = log(1 − q + q·e^u) with u = (2x − 1)/(2σ²), accurate and without overflow for any u.

    Three forms, each where it keeps full relative precision: log1p(q·expm1(u)) for −1 < u ≤ 700
    (ℓ is tiny at large σ or small q); u + log(q + (1 − q)·e^{−u}) beyond (no overflow at tiny σ);
    logaddexp(log(1 − q), log q + u) for u ≤ −1 (1 − q may be tiny; q = 1 gives ℓ = u).
    """
    u = np.asarray(u, dtype=float)
    shape, u = u.shape, u.reshape(-1)
    q = sample_rate
    log_absent = math.log1p(-q) if q < 1 else -math.inf
    out = np.logaddexp(log_absent, math.log(q) + u)  # right for u ≤ −1, replaced below elsewhere
    huge = u > 700
    uh = u[huge]
    out[huge] = uh + np.log(q + (1.0 - q) * np.exp(-uh))
    middle = (u > -1) & ~huge
    out[middle] = np.log1p(q * np.expm1(u[middle]))
    return out.reshape(shape)


# --------------------------------------------------------------------------------------------
# one step on a lattice
def _loss_variances(sigma: float, q: float) -> tuple[float, float]:
    """Variances of ℓ(x) under P and under Q by quadrature on a fine grid (they only set the lattice)."""
    z = np.linspace(-TRUNCATION_Z, TRUNCATION_Z, 8001)
    w = np.exp(-0.5 * z**2)
    w /= w.sum()
    absent = per_step_log_ratio(z / sigma - 0.5 / sigma**2, q)  # x = σz
    present = per_step_log_ratio(z / sigma + 0.5 / sigma**2, q)  # x = 1 + σz
    mean_p = float(w @ absent)
    var_p = float(w @ (absent - mean_p) ** 2)
    mean_q = (1 - q) * mean_p + q * float(w @ present)
    var_q = (1 - q) * float(w @ (absent - mean_q) ** 2) + q * float(w @ (present - mean_q) ** 2)
    return max(var_p, 1e-300), max(var_q, 1e-300)


def choose_spacing(sigma: float, q: float, resolution: float) -> tuple[float, "StepPMF"]:
    """The coarsest lattice whose split variance is at most resolution²/4 of the per-step variance.

    Splitting a cell's mass between its end points adds at most h²/4 to the variance of ℓ, which
    bounds how much the discrete pair overstates distinguishability. With h = resolution·sd_P(ℓ)
    that criterion always holds; when q is small, ℓ is a narrow bulk at log(1 − q) (a lattice
    point) plus rare large values, and the actual split variance is far below h²/4, so a much
    coarser lattice meets it. Start coarse and halve (each try costs less than the final one).
    """
    var_p, var_q = _loss_variances(sigma, q)
    finest = resolution * math.sqrt(var_p)
    spacing = max(finest, resolution * math.sqrt(max(var_p, var_q)))
    allowed_p, allowed_q = resolution**2 / 4 * var_p, resolution**2 / 4 * var_q
    while True:
        pmf = discretise_step(sigma, q, spacing)
        if spacing <= finest or (pmf.split_var_p <= allowed_p and pmf.split_var_q <= allowed_q):
            return spacing, pmf
        spacing = max(finest, spacing / 2)


def _log_gauss_mass(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """log(Φ(b) − Φ(a)) for a ≤ b, accurate far into either tail.

    SciPy keeps such a function private (scipy.stats truncnorm), hence this one: mirror the
    interval to the left of 0 and subtract in log space there, where Φ has full relative precision.
    """
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    mirror = a > 0
    lo = np.where(mirror, -b, a)
    hi = np.where(mirror, -a, b)
    with np.errstate(divide="ignore", invalid="ignore"):
        left = log_ndtr(hi) + np.log(-np.expm1(log_ndtr(lo) - log_ndtr(hi)))
        straddle = np.log1p(-(ndtr(lo) + ndtr(-hi)))
    return np.where(hi <= 0, left, straddle)


class StepPMF:
    """One step's discrete dominating pair on the lattice ε_0 + i·h, i = 0 … len − 1."""

    def __init__(self, origin, spacing, p, q, q_at_infinity, split_var_p, split_var_q):
        self.origin = origin  # ε_0
        self.spacing = spacing  # h
        self.p = p  # P-masses at the lattice points (a −∞ atom holds the rest)
        self.q = q  # Q-masses at the lattice points
        self.q_at_infinity = q_at_infinity  # Q-mass of the +∞ atom (P has none there)
        self.split_var_p = split_var_p  # Σ_cells P_cell·w(1 − w)·h²: variance added by the split, under P
        self.split_var_q = split_var_q  # the same under Q


def _x_of_loss(index: np.ndarray, spacing: float, sigma: float, q: float) -> np.ndarray:
    """Inverse of ℓ at the lattice points ε_i = ε_a + i·h: x = σ²·log((e^ε − (1 − q))/q) + 1/2.

    The lattice is anchored at ε_a = log(1 − q), the infimum of ℓ (ε_a = 0 when q = 1), so that
    e^ε − (1 − q) = (1 − q)·expm1(i·h) is computed without the cancellation of the direct formula.
    """
    d = np.asarray(index, dtype=float) * spacing
    if q == 1.0:
        return sigma**2 * d + 0.5
    with np.errstate(divide="ignore"):
        log_expm1 = np.where(d > 30, d + np.log1p(-np.exp(-np.maximum(d, 30))), np.log(np.expm1(np.minimum(d, 30))))
    return sigma**2 * (math.log1p(-q) + log_expm1 - math.log(q)) + 0.5


def discretise_step(sigma: float, q: float, spacing: float) -> StepPMF:
    """Connect-the-dots discretisation of one step's (P, Q) on a lattice of the given spacing.

    Lattice points ε_a + i·h for i_lo ≤ i ≤ i_hi cover ℓ(x) for −10σ ≤ x ≤ 1 + 10σ; step 2 of
    :func:`medprivbench.attacks.bounds.rero_bound_numerical` says what happens to the mass outside.
    """
    h = spacing
    anchor = math.log1p(-q) if q < 1 else 0.0
    log_absent = math.log1p(-q) if q < 1 else -math.inf
    loss_bottom, loss_top = per_step_log_ratio(
        np.array([-2 * TRUNCATION_Z * sigma - 1, 2 * TRUNCATION_Z * sigma + 1]) / (2 * sigma**2), q
    )
    i_lo = max(0, math.floor((loss_bottom - anchor) / h)) if q < 1 else math.floor((loss_bottom - anchor) / h)
    i_hi = max(i_lo + 1, math.ceil((loss_top - anchor) / h))
    index = np.arange(i_lo, i_hi + 1)
    eps = anchor + index * h
    x = _x_of_loss(index, h, sigma, q)
    z_p, z_n = x / sigma, (x - 1.0) / sigma

    log_p = _log_gauss_mass(z_p[:-1], z_p[1:])
    log_q = np.logaddexp(log_absent + log_p, math.log(q) + _log_gauss_mass(z_n[:-1], z_n[1:]))
    # Q/P on a cell lies in [e^{ε_i}, e^{ε_i + h}]; ρ is where it sits, w the share of P-mass sent right
    with np.errstate(invalid="ignore"):
        log_rho = np.clip(log_q - log_p - eps[:-1], 0.0, h)
    log_rho = np.where(np.isfinite(log_p), log_rho, 0.0)
    w = np.expm1(log_rho) / math.expm1(h)
    with np.errstate(divide="ignore"):
        log_left = log_p + np.log1p(-w)
        log_right = log_p + np.log(w)
    p = np.zeros(index.size)
    qm = np.zeros(index.size)
    p[:-1] += np.exp(log_left)
    p[1:] += np.exp(log_right)
    qm[:-1] += np.exp(log_left + eps[:-1])
    qm[1:] += np.exp(log_right + eps[1:])

    # above the top point: the P-mass there stays at ε_top with Q/P = e^{ε_top}, the excess Q-mass goes to +∞
    log_p_top = float(log_ndtr(-z_p[-1]))
    log_q_top = float(np.logaddexp(log_absent + log_p_top, math.log(q) + log_ndtr(-z_n[-1])))
    p[-1] += math.exp(log_p_top)
    qm[-1] += math.exp(log_p_top + eps[-1])
    q_inf = max(0.0, math.exp(log_q_top) - math.exp(log_p_top + eps[-1]))
    # below the bottom point: its Q-mass goes to ε_bottom with P-mass e^{−ε_bottom}·Q, the rest of P to −∞
    with np.errstate(divide="ignore"):
        log_q_bottom = float(np.logaddexp(log_absent + log_ndtr(z_p[0]), math.log(q) + log_ndtr(z_n[0])))
    qm[0] += math.exp(log_q_bottom)
    p[0] += math.exp(log_q_bottom - eps[0])

    # variance added by the split: Bernoulli(w) times h² per cell, under P and under Q
    w_q = np.clip(w * math.exp(h) / np.exp(log_rho), 0.0, 1.0)  # share of the cell's Q-mass sent right
    split_var_p = float(np.exp(log_p) @ (w * (1 - w))) * h**2
    split_var_q = float(np.exp(log_q) @ (w_q * (1 - w_q))) * h**2
    return StepPMF(float(eps[0]), h, p, qm, q_inf, split_var_p, split_var_q)


# --------------------------------------------------------------------------------------------
# T steps: the window of the composition, the composition, the test read off it
def _log_mgf(log_mass: np.ndarray, values: np.ndarray, lam: float) -> float:
    """log Σ_i exp(log_mass_i + λ·value_i), shifted by the maximum (scipy's logsumexp is slower here)."""
    x = log_mass + lam * values
    top = x.max()
    return float(top + math.log(np.exp(x - top).sum()))


def chernoff_window(log_mass: np.ndarray, values: np.ndarray, steps: int) -> tuple[float, float]:
    """[a, b] holding all but WINDOW_TAIL_MASS of the T-fold sum of a discrete (sub-)distribution.

    Pr[S ≥ b] ≤ exp(T·K(λ) − λb) and Pr[S ≤ a] ≤ exp(T·K(−λ) + λa), K the cumulant generating
    function; minimised over a log-spaced grid of λ (any λ gives a valid bound).
    """
    mass = np.exp(log_mass)
    total = mass.sum()
    mean = float(mass @ values) / total
    std = math.sqrt(max(float(mass @ (values - mean) ** 2) / total, 1e-300))
    scale = 1.0 / (std * math.sqrt(steps))
    target = math.log(WINDOW_TAIL_MASS)
    shifted = values - mean  # centring keeps exp(λ·value) in range
    high, low = math.inf, -math.inf
    for lam in scale * np.logspace(-3, 3, 31):
        high = min(high, steps * mean + (steps * _log_mgf(log_mass, shifted, lam) - target) / lam)
        low = max(low, steps * mean - (steps * _log_mgf(log_mass, -shifted, lam) - target) / lam)
    return float(low), float(high)


def composition_window(pmf: StepPMF, steps: int) -> tuple[int, int]:
    """Lattice indices [j_lo, j_hi] of the T-fold sum that hold both composed distributions.

    The whole support when it is short (no aliasing at all), else the Chernoff window.
    """
    support_hi = steps * (pmf.p.size - 1)
    if support_hi < FULL_SUPPORT_LENGTH:
        return 0, support_hi
    # Chernoff on blocks of cells, each block's mass at its highest index for the upper end and
    # at its lowest for the lower end: still valid bounds, and cheap for long lattices
    block = max(1, math.ceil(pmf.p.size / CHERNOFF_BLOCKS))
    starts = np.arange(0, pmf.p.size, block)
    bounds = []
    for mass in (pmf.p, pmf.q):
        block_mass = np.add.reduceat(mass, starts)
        keep = block_mass > 0
        with np.errstate(divide="ignore"):
            log_mass = np.log(block_mass[keep])
        high = chernoff_window(log_mass, np.minimum(starts + block - 1, pmf.p.size - 1)[keep].astype(float), steps)[1]
        low = chernoff_window(log_mass, starts[keep].astype(float), steps)[0]
        bounds.append((low, high))
    j_lo = max(0, math.floor(min(b[0] for b in bounds)))
    j_hi = min(support_hi, math.ceil(max(b[1] for b in bounds)))
    return j_lo, j_hi


def lattice_within_grid(sigma: float, q: float, steps: int, resolution: float, max_grid: int) -> tuple[StepPMF, tuple[int, int]]:
    """One step's pair at the spacing of :func:`choose_spacing`, and the window of its T-fold composition.

    The spacing is doubled while the window would be longer than ``max_grid`` points: a coarser
    lattice still dominates the true pair, so what is read off it stays a bound, only a looser one.
    """
    spacing, step_pmf = choose_spacing(sigma, q, resolution)
    window = composition_window(step_pmf, steps)
    while window[1] - window[0] + 1 > max_grid:
        spacing *= 2.0
        step_pmf = discretise_step(sigma, q, spacing)
        window = composition_window(step_pmf, steps)
    return step_pmf, window

def compose(mass: np.ndarray, steps: int, window: tuple[int, int]) -> np.ndarray:
    """T-fold convolution of ``mass`` (indices 0 …), returned on the indices window[0] … window[1].

    Circular convolution of length N ≥ window length: mass outside the window (≤ 1e-14 by the
    Chernoff bound) aliases, everything inside is exact up to floating point.
    """
    j_lo, j_hi = window
    n = sp_fft.next_fast_len(j_hi - j_lo + 1, real=True)
    folded = np.bincount(np.arange(mass.size) % n, weights=mass, minlength=n)
    composed = sp_fft.irfft(sp_fft.rfft(folded) ** steps, n)
    composed = np.roll(composed, -(j_lo % n))[: j_hi - j_lo + 1]
    return np.clip(composed, 0.0, None)


def np_test_power(pmf: StepPMF, steps: int, window: tuple[int, int], kappa: float) -> float:
    """Power at level κ of the Neyman–Pearson test of the composed discrete pair."""
    p_t = compose(pmf.p, steps, window)
    q_t = compose(pmf.q, steps, window)
    tail_p = np.cumsum(p_t[::-1])[::-1]  # Pr_P[L ≥ value at index]
    tail_q = np.cumsum(q_t[::-1])[::-1]
    reject = np.nonzero(tail_p >= kappa)[0]
    q_infinite = -math.expm1(steps * math.log1p(-pmf.q_at_infinity))  # some step hit the +∞ atom
    if reject.size == 0:  # the whole lattice is rejected and part of the −∞ atom (which has no Q-mass)
        return float(tail_q[0] + q_infinite)
    k = int(reject[-1])
    above_p = tail_p[k + 1] if k + 1 < tail_p.size else 0.0
    above_q = tail_q[k + 1] if k + 1 < tail_q.size else 0.0
    fraction = (kappa - above_p) / p_t[k] if p_t[k] > 0 else 0.0
    return float(above_q + fraction * q_t[k] + q_infinite + WINDOW_TAIL_MASS)

"""f-DP for one-run audits: the guessing-game test of Mahloujifar et al. and the trade-off curves it tests.

Mahloujifar, Melis, Chaudhuri, "Auditing f-Differential Privacy in One Run" (ICML 2025, arXiv
2410.22235). The audits that use it are in :mod:`medprivbench.attacks.one_run_analysis`.

**The test** (:func:`fdp_minimum_mass`). For a symmetric trade-off function f (type II error as a
function of type I error) write f̄(x) = 1 − f(x), the largest power at level x, and
f̄⁻¹(y) = min{x : f̄(x) ≥ y}. Let Z be the number of correct guesses among exactly r guesses over
m canaries with independent uniform secrets. Flipping canary i's secret turns a correct guess on i
into a wrong one; f-DP of the pair (canary i in, canary i out) in both directions, concavity of f̄
and an average over i give, for every j = 1 … r,

    R_j ≤ f̄(H_{j−1}),   R_j = E[Z·1{Z ≥ j}]/m,   H_j = E[(r − Z)·1{Z ≥ j}]/m.

If Pr[Z ≥ v] ≥ τ, the distribution of Z needs at least the total mass that the paper's recursion
computes: put τ at Z = v (the least demanding place), then, for i = v − 1 … 0, the least mass at
Z = i that keeps the constraint j = i + 1 (h_i = max(h_{i+1}, f̄⁻¹(r_{i+1})),
r_i = r_{i+1} + i/(r − i)·(h_i − h_{i+1}), starting from r_v = τv/m, h_v = τ(r − v)/m); the mass is
(r_0 + h_0)·m/r. A mass above 1 is impossible, so Pr[Z ≥ v] < τ for every f-DP mechanism, and the
claim "f-DP" is rejected at level α = τ (:func:`fdp_rejects`). The recursion is the exact minimum of
that linear program (checked against ``scipy.optimize.linprog`` in the tests).

**The trade-off families**, each given by its inverse power function f̄⁻¹:

* μ-GDP (:func:`gdp_inverse_power`; Dong, Roth, Su 2022), with its conversion to (ε, δ)
  (:func:`gdp_delta`, :func:`gdp_epsilon`);
* (ε, δ)-DP (:func:`approx_dp_inverse_power`; Kairouz, Oh, Viswanath 2015);
* T steps of Poisson-subsampled Gaussian DP-SGD at noise multiplier σ (:class:`DPSGDTradeoff`),
  computed numerically on the dominating pair of :mod:`medprivbench.attacks.privacy_loss` so that it
  lies *below* the true curve: every test against it is conservative.

**What a rejection shows.** Rejecting a curve f says the mechanism is not f-DP, whatever the
mechanism is. Turning a rejected curve into an ε is another matter: for (ε, δ)-DP claims the
rejected ε is a lower bound on ε for any mechanism; for a DP-SGD curve at (σ', q, T) its ε(δ) is a
lower bound on ε only for a mechanism that is DP-SGD at that q and T (with some σ), since a
mechanism of another shape can fail the curve and still have a smaller ε(δ). As a test of a
training's claimed σ the DP-SGD test needs no such assumption.
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Callable

import numpy as np
from scipy.optimize import brentq
from scipy.special import log_ndtr, ndtr, ndtri

from . import privacy_loss

# Lattice resolution and largest FFT of the discretised DP-SGD curves (see attacks/privacy_loss.py).
DPSGD_RESOLUTION = 0.05
DPSGD_MAX_GRID = 1 << 20

InversePower = Callable[[float], float]  # y ↦ f̄⁻¹(y) = min{x : 1 − f(x) ≥ y}; +inf for y > 1


# --------------------------------------------------------------------------------------------
# input validation (once, at the public boundary; shared with one_run_analysis)
def check_integer(name: str, value, minimum: int) -> int:
    """``value`` as an int ≥ ``minimum`` (integral floats accepted), or a ValueError naming it."""
    ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    ok = ok or (isinstance(value, float) and value.is_integer())
    if not ok or value < minimum:
        raise ValueError(f"{name}={value!r} is not valid; expected an integer >= {minimum}")
    return int(value)


def check_unit(name: str, value, *, low_open: bool, high_open: bool) -> float:
    """``value`` as a float in the unit interval, open or closed at either end, or a ValueError naming it."""
    x = float(value)
    ok = (0.0 < x if low_open else 0.0 <= x) and (x < 1.0 if high_open else x <= 1.0)
    if not ok:
        interval = f"{'(' if low_open else '['}0, 1{')' if high_open else ']'}"
        raise ValueError(f"{name}={value!r} is not valid; expected a value in {interval}")
    return x


def check_guesses(r: int, v: int, m: int) -> tuple[int, int, int]:
    """(r, v, m) of the guessing game: 0 ≤ v ≤ r ≤ m, r ≥ 1 (correct ≤ guesses ≤ canaries)."""
    m = check_integer("m", m, 1)
    r = check_integer("r", r, 1)
    v = check_integer("v", v, 0)
    if not v <= r <= m:
        raise ValueError(f"v={v}, r={r}, m={m} are not valid; expected 0 <= v <= r <= m (correct <= guesses <= canaries)")
    return r, v, m


# --------------------------------------------------------------------------------------------
# the f-DP one-run test (Mahloujifar, Melis, Chaudhuri 2025)
def _minimum_mass(inverse_power: InversePower, r: int, v: int, m: int, tau: float) -> float:
    """Body of :func:`fdp_minimum_mass` (inputs trusted)."""
    correct = tau * v / m  # r_v: E[Z·1{Z ≥ v}]/m with mass τ at Z = v
    wrong = tau * (r - v) / m  # h_v: E[(r − Z)·1{Z ≥ v}]/m
    for i in range(v - 1, -1, -1):
        needed = max(wrong, inverse_power(correct))
        if needed == wrong:  # nothing to add here, and then nothing below either
            break
        if math.isinf(needed):
            return math.inf
        correct += i / (r - i) * (needed - wrong)
        wrong = needed
    return (correct + wrong) * m / r


def fdp_minimum_mass(inverse_power: InversePower, r: int, v: int, m: int, tau: float) -> float:
    """Least total probability mass that "Pr[Z ≥ v] ≥ τ" needs under f-DP (Mahloujifar et al. 2025).

    Z is the number of correct guesses among r guesses on m canaries. The recursion of the module
    docstring puts mass τ at Z = v and, level by level downwards, the least mass that satisfies
    R_{i+1} ≤ f̄(H_i). A result above 1 means no f-DP mechanism reaches Pr[Z ≥ v] ≥ τ.

    Args:
        inverse_power: y ↦ f̄⁻¹(y) = min{x : 1 − f(x) ≥ y} of a symmetric trade-off function f,
            non-decreasing, +inf for y > 1.
        r, v, m: guesses, correct guesses, canaries (0 ≤ v ≤ r ≤ m, r ≥ 1).
        tau: the probability τ in (0, 1].
    """
    r, v, m = check_guesses(r, v, m)
    tau = check_unit("tau", tau, low_open=True, high_open=False)
    return _minimum_mass(inverse_power, r, v, m, tau)


def fdp_rejects(inverse_power: InversePower, r: int, v: int, m: int, alpha: float) -> bool:
    """Whether the test rejects the claim "f-DP" at level α after v correct of r guesses on m canaries.

    Inputs are trusted (the audits validate them once, at their boundary).
    """
    return _minimum_mass(inverse_power, r, v, m, alpha) > 1.0


def fdp_tail_bound(inverse_power: InversePower, r: int, v: int, m: int, *, tolerance: float = 1e-6) -> float:
    """Upper bound on Pr[Z ≥ v] for every mechanism that is f-DP (Mahloujifar et al. 2025).

    The largest τ whose :func:`fdp_minimum_mass` is at most 1, by bisection (the minimum mass grows
    with τ); the returned value is the upper end of the final bracket, so it stays a bound.
    v = 0 gives 1.

    Args:
        inverse_power, r, v, m: as in :func:`fdp_minimum_mass`.
        tolerance: width of the final bracket.
    """
    r, v, m = check_guesses(r, v, m)
    if not 0.0 < tolerance < 1.0:
        raise ValueError(f"tolerance={tolerance!r} is not valid; expected a value in (0, 1)")
    if _minimum_mass(inverse_power, r, v, m, 1.0) <= 1.0:
        return 1.0
    low, high = 0.0, 1.0  # feasible at low (τ → 0 needs mass → 0), infeasible at high
    while high - low > tolerance:
        middle = (low + high) / 2.0
        if _minimum_mass(inverse_power, r, v, m, middle) <= 1.0:
            low = middle
        else:
            high = middle
    return high


# --------------------------------------------------------------------------------------------
# trade-off families
def gdp_inverse_power(mu: float) -> InversePower:
    """f̄⁻¹ of μ-GDP: f(x) = Φ(Φ⁻¹(1 − x) − μ), so f̄⁻¹(y) = Φ(Φ⁻¹(y) − μ) (Dong, Roth, Su 2022)."""

    def inverse_power(y: float) -> float:
        if y > 1.0:
            return math.inf
        return float(ndtr(ndtri(y) - mu))

    return inverse_power


def gdp_delta(epsilon: float, mu: float) -> float:
    """δ(ε) of μ-GDP: Φ(−ε/μ + μ/2) − e^ε·Φ(−ε/μ − μ/2) (Dong, Roth, Su 2022)."""
    if mu <= 0.0:
        return 0.0
    return float(ndtr(-epsilon / mu + mu / 2.0) - math.exp(epsilon + float(log_ndtr(-epsilon / mu - mu / 2.0))))


def gdp_epsilon(mu: float, delta: float) -> float:
    """The ε at which μ-GDP is (ε, δ)-DP: the root of :func:`gdp_delta` (decreasing in ε), 0 if δ(0) ≤ δ.

    Args:
        mu: μ ≥ 0.
        delta: δ in (0, 1).
    """
    mu = float(mu)
    if not (math.isfinite(mu) and mu >= 0.0):
        raise ValueError(f"mu={mu!r} is not valid; expected a finite value >= 0")
    delta = check_unit("delta", delta, low_open=True, high_open=True)
    if gdp_delta(0.0, mu) <= delta:
        return 0.0
    high = 1.0
    while gdp_delta(high, mu) > delta:
        high *= 2.0
    return float(brentq(lambda e: gdp_delta(e, mu) - delta, 0.0, high, xtol=1e-12, rtol=1e-12))


def approx_dp_inverse_power(epsilon: float, delta: float) -> InversePower:
    """f̄⁻¹ of (ε, δ)-DP, whose trade-off curve is f(x) = max(0, 1 − δ − e^ε·x, e^{−ε}·(1 − δ − x))
    (Kairouz, Oh, Viswanath 2015): f̄(x) = min(1, δ + e^ε·x, 1 − e^{−ε}·(1 − δ − x)), so
    f̄⁻¹(y) = max(0, e^{−ε}·(y − δ), 1 − δ − e^ε·(1 − y))."""
    scale = math.exp(-epsilon)

    def inverse_power(y: float) -> float:
        if y > 1.0:
            return math.inf
        return max(0.0, scale * (y - delta), 1.0 - delta - (1.0 - y) / scale)

    return inverse_power


def _lower_convex_hull(x: np.ndarray, y: np.ndarray, vectorised_passes: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """Vertices of the lower convex hull of points sorted by (x, y).

    A few vectorised passes first drop every point on or above the chord of its two current
    neighbours (such a point is no hull vertex, whatever else is dropped with it); Andrew's
    monotone chain then finishes on what is left, in linear time.
    """
    keep = np.arange(x.size)
    for _ in range(vectorised_passes):
        if keep.size <= 2:
            break
        dx, dy = np.diff(x[keep]), np.diff(y[keep])
        drop = dx[:-1] * dy[1:] - dy[:-1] * dx[1:] <= 0.0  # not strictly convex at the middle point
        if not drop.any():
            return x[keep], y[keep]
        keep = keep[np.concatenate(([True], ~drop, [True]))]
    hull: list[int] = []
    xs, ys = x.tolist(), y.tolist()
    for i in keep.tolist():
        while len(hull) >= 2:
            a, b = hull[-2], hull[-1]
            if (xs[b] - xs[a]) * (ys[i] - ys[a]) - (ys[b] - ys[a]) * (xs[i] - xs[a]) > 0.0:
                break
            hull.pop()
        hull.append(i)
    index = np.array(hull)
    return x[index], y[index]


def _lattice_masses(sigma: float, q: float, steps: int, resolution: float) -> tuple[privacy_loss.StepPMF, tuple[int, int]]:
    """One step's dominating pair of :mod:`privacy_loss` and the window of its T-fold composition.

    As in :func:`privacy_loss.lattice_within_grid`: spacing from ``choose_spacing``, widened while the
    window would be longer than ``DPSGD_MAX_GRID`` (a wider lattice still dominates, only looser).
    """
    spacing, pmf = privacy_loss.choose_spacing(sigma, q, resolution)
    window = _chernoff_window(pmf, steps)
    while window[1] - window[0] + 1 > DPSGD_MAX_GRID:
        spacing *= 2.0
        pmf = privacy_loss.discretise_step(sigma, q, spacing)
        window = _chernoff_window(pmf, steps)
    return pmf, window


def _chernoff_window(pmf: privacy_loss.StepPMF, steps: int) -> tuple[int, int]:
    """Lattice indices of the T-fold sum holding all but ``privacy_loss.WINDOW_TAIL_MASS`` of P and of Q.

    Always the Chernoff window (``privacy_loss.composition_window`` takes the whole support when it is
    shorter than 2²⁰ points, which at large σ' is a hundred times longer than needed).
    """
    lows, highs = [], []
    for mass in (pmf.p, pmf.q):
        where = np.flatnonzero(mass > 0.0)
        low, high = privacy_loss.chernoff_window(np.log(mass[where]), where.astype(float), steps)
        lows.append(low)
        highs.append(high)
    return max(0, math.floor(min(lows))), min(steps * (pmf.p.size - 1), math.ceil(max(highs)))


class DPSGDTradeoff:
    """Trade-off curve of T steps of Poisson-subsampled Gaussian DP-SGD, for one canary, symmetrised.

    Per step the pair is P = N(0, σ²) (canary out) and Q = (1 − q)·N(0, σ²) + q·N(1, σ²) (in); T
    steps compose to (P^T, Q^T). The curve is computed on the discretised dominating pair of
    :mod:`medprivbench.attacks.privacy_loss` ("connect the dots", Doroshenko et al. 2022, composed by
    FFT), whose trade-off curve lies below the true one. On its lattice every point carries
    Q = e^L·P exactly (L the privacy loss), so after the FFT the smaller of the two masses at each
    point is recomputed from the larger (the FFT only resolves masses relative to the largest).
    The Neyman–Pearson tests reject "out" for a large L, so f̄ = 1 − f is the cumulative Q-mass
    against the cumulative P-mass in decreasing order of L (Q's +∞ atom first). Add and remove
    adjacency both count, so the curve is the lower convex envelope of min(f, f⁻¹) (the
    symmetrisation of Dong, Roth, Su 2022), the vertices ``type_one``, ``type_two``.

    The tests use this curve lowered for the numerical error s of the composition (the mass
    outside the FFT window plus rounding): f_s(x) = max(0, f(x + s) − s) holds for the true curve
    whenever the computed distributions are within s of the true ones in total variation.
    :meth:`epsilon` reads ε(δ) off the curve itself.
    """

    def __init__(self, sigma: float, sample_rate: float, steps: int, resolution: float = DPSGD_RESOLUTION):
        self.sigma, self.sample_rate, self.steps = float(sigma), float(sample_rate), int(steps)
        pmf, window = _lattice_masses(self.sigma, self.sample_rate, self.steps, resolution)
        p_t = privacy_loss.compose(pmf.p, steps, window)
        q_t = privacy_loss.compose(pmf.q, steps, window)
        loss = steps * pmf.origin + np.arange(window[0], window[1] + 1) * pmf.spacing
        p_t, q_t = (
            np.where(loss < 0.0, p_t, np.exp(-np.maximum(loss, 0.0)) * q_t),
            np.where(loss < 0.0, np.exp(np.minimum(loss, 0.0)) * p_t, q_t),
        )
        q_infinite = -math.expm1(steps * math.log1p(-pmf.q_at_infinity)) if pmf.q_at_infinity > 0 else 0.0
        p_lattice = math.exp(steps * math.log(min(1.0, float(pmf.p.sum()))))  # P-mass off the −∞ atom
        p_t *= p_lattice / p_t.sum()  # renormalise the FFT's rounding (covered by the slack below)
        q_t *= (1.0 - q_infinite) / q_t.sum()
        self.slack = privacy_loss.WINDOW_TAIL_MASS + _composition_allowance(p_t.size, steps)
        alpha = np.concatenate(([0.0], np.cumsum(p_t[::-1]), [1.0]))  # decreasing privacy loss
        power = np.concatenate(([q_infinite], q_infinite + np.cumsum(q_t[::-1]), [1.0]))
        alpha, beta = np.clip(alpha, 0.0, 1.0), 1.0 - np.clip(power, 0.0, 1.0)
        # the curve f and its inverse f⁻¹ (the same points mirrored), then the hull of both
        x, y = np.concatenate((alpha, beta)), np.concatenate((beta, alpha))
        order = np.lexsort((y, x))
        hull_x, hull_y = _lower_convex_hull(x[order], y[order])
        zero = np.flatnonzero(hull_y <= 0.0)
        end = zero[0] + 1 if zero.size else hull_y.size  # f is 0 from the first zero on
        self.type_one, self.type_two = hull_x[:end], np.maximum(hull_y[:end], 0.0)

    def tradeoff(self, x) -> np.ndarray:
        """f(x): the smallest type II error at type I error x of the discretised pair (below the true curve)."""
        return np.interp(x, self.type_one, self.type_two, right=0.0)

    def inverse_power(self, y: float) -> float:
        """f̄⁻¹(y) of the curve lowered for numerical error: min{x : f(x + s) − s ≤ 1 − y}; +inf for y > 1."""
        if y > 1.0:
            return math.inf
        at = float(np.interp(1.0 - y + self.slack, self.type_two[::-1], self.type_one[::-1]))
        return max(0.0, at - self.slack)

    def epsilon(self, delta: float) -> float:
        """ε(δ) of the discretised pair, add and remove: the smallest ε with δ(ε) ≤ δ.

        δ(ε) = max_x (1 − f(x) − e^ε·x) (the convex conjugate of f; Dong, Roth, Su 2022),
        attained at a vertex (x_k, y_k) of the piecewise-linear curve, so
        ε(δ) = max(0, max_k log((1 − y_k − δ)/x_k)) over the vertices with 1 − y_k > δ. The curve
        lies below the true one, so this is an upper estimate of the true ε(δ), within about 1e-3
        of it at the default resolution. When this curve is rejected, the number is a lower bound
        on ε only for a mechanism that is DP-SGD at the same q and T (see the module docstring).
        """
        gain = 1.0 - self.type_two - delta
        useful = gain > 0.0
        if not useful.any():
            return 0.0
        if np.any(self.type_one[useful] <= 0.0):
            return math.inf
        return max(0.0, float(np.max(np.log(gain[useful]) - np.log(self.type_one[useful]))))


def _composition_allowance(length: int, steps: int) -> float:
    """Allowance for the rounding of an FFT composition: machine ε per output point, per step."""
    return length * steps * np.finfo(float).eps


@functools.lru_cache(maxsize=256)
def dpsgd_tradeoff(sigma: float, sample_rate: float, steps: int) -> DPSGDTradeoff:
    """Cached :class:`DPSGDTradeoff` (the σ' searches of many audits of one recipe share their curves)."""
    return DPSGDTradeoff(sigma, sample_rate, steps)

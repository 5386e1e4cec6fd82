"""Prior-aware reconstruction attack on DP-SGD (Hayes, Mahloujifar & Balle, NeurIPS 2023).

Threat model (the "informed adversary" of Balle, Cherubin & Hayes 2022, strongest possible):
the adversary knows every training point except the target, every intermediate model state
θ_1 … θ_T, the noisy DP-SGD updates, and a prior of n candidates, one of which is the target.
Knowing the other points and the states, it subtracts their clipped gradients exactly, so what
remains of step t's noisy gradient sum is

    r_t = b_t·clip_C(∇ℓ(θ_t; z*)) + N(0, σ²C²·I),   b_t ~ Bernoulli(q)   (Poisson sampling),

with C the clip norm, σ the noise multiplier and z* the target. For candidate j with clipped
gradient ĝ_j(θ_t) the exact log-likelihood ratio of "j is the target" against "target absent" is

    Λ_j = Σ_t log(1 − q + q·exp((⟨r_t, ĝ_j⟩ − ‖ĝ_j‖²/2) / (σ²C²))),

and the adversary picks argmax_j Λ_j — the Bayes-optimal (maximum a posteriori) guess under the
uniform prior, ties broken uniformly at random. Its success probability is bounded by the ReRo
bound γ(κ = 1/n, σ, q, T) of :mod:`medprivbench.attacks.bounds`; with gradients of norm C that
are far apart it comes close to it.

Simulation. Λ depends on r_t only through the projections v_{t,j} = ⟨r_t, ĝ_j⟩, which are jointly
Gaussian with mean b_t·⟨ĝ_*, ĝ_j⟩ and covariance σ²C²·G, G the Gram matrix of the candidates'
clipped gradients at θ_t. The d-dimensional noise is therefore never drawn: the projections are
drawn from that n-dimensional Gaussian, which is exact (same joint law), not an approximation.
Without noise (σ = 0) the residual is exact and the adversary also sees ‖r_t‖²; it then keeps the
candidates whose clipped gradient equals every non-zero residual.

The attacker's view and the ground truth stay apart: the simulator of the training run
(``_simulate_steps``) knows the target; the adversary (``_log_likelihood_ratios``,
``_map_guess``) sees only the observations and the candidates' Gram matrices; the referee in
``_play_games`` (the trials of :func:`prior_aware_attack`) compares the guess with the target.
"""

from __future__ import annotations

import copy
import math
import numbers
from dataclasses import asdict, dataclass
from typing import Callable, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from scipy.stats import binomtest

from .bounds import rero_bound
from .privacy_loss import per_step_log_ratio
from .settings import Validated, integer

THREAT_MODEL = (
    "informed adversary (Hayes et al. 2023): knows all training points but the target, every model state "
    "and noisy DP-SGD update, and a uniform prior over n candidates that contains the target"
)


@dataclass
class PriorAwareConfig(Validated):
    """The game as the benchmark plays it on a trained run: ``trials`` times, ``n_candidates``
    training images drawn from ``pool_size`` form the prior (the ReRo bound is evaluated at
    κ = 1/n), and the adversary knows ``n_states`` model states along the target's training."""

    n_candidates: int = integer(10, 2)
    trials: int = integer(200, 1)
    n_states: int = integer(10, 1)
    pool_size: int = integer(200, 2)

    def check(self) -> None:
        if self.pool_size < self.n_candidates:
            raise ValueError(f"pool_size={self.pool_size} is smaller than n_candidates={self.n_candidates}; use at least {self.n_candidates}")


# float64 draws held in memory at once by the simulation (trials × steps × candidates)
_CHUNK_ELEMENTS = 1 << 21


@dataclass
class PriorAwareResult:
    """Outcome of the prior-aware attack over many trials, beside its theoretical bound.

    ``success_rate`` = successes / trials with a two-sided 95% Clopper–Pearson interval
    [``ci_low``, ``ci_high``]; ``bound`` is the ReRo bound γ(1/n, σ, q, T); ``chance`` = 1/n.
    """

    n_candidates: int
    trials: int
    successes: int
    success_rate: float
    ci_low: float
    ci_high: float
    bound: float
    chance: float
    sigma: float  # noise multiplier σ (noise std = σ·C)
    sample_rate: float  # Poisson sampling rate q
    steps: int  # DP-SGD steps T
    n_states: int  # model states the steps were spread over
    threat_model: str = THREAT_MODEL

    def to_record(self) -> dict:
        """A JSON-friendly dict (plain Python numbers and strings)."""
        return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in asdict(self).items()}


# --------------------------------------------------------------------------------------------
def prior_aware_attack(
    model_states: Sequence[nn.Module],
    candidates_x: torch.Tensor,
    candidates_y: torch.Tensor,
    *,
    noise_multiplier: float,
    sample_rate: float,
    steps: int,
    max_grad_norm: float,
    n_candidates: int = 10,
    n_trials: int = 200,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: Optional[Callable[[int, int], None]] = None,
    loss_fn: Callable = F.cross_entropy,
) -> PriorAwareResult:
    """Run the prior-aware reconstruction game ``n_trials`` times and report the success rate.

    Each trial draws ``n_candidates`` distinct points of the pool (candidates_x, candidates_y),
    chooses the target uniformly among them, simulates the T residual updates r_t of DP-SGD
    (step t, 0-based, is taken at ``model_states[floor(t·S/T)]``), and lets the adversary pick the
    candidate with the largest likelihood ratio (see the module docstring).

    Args:
        model_states: S ≥ 1 models the adversary knows, e.g. checkpoints along the target's DP
            training (same architecture; an Opacus ``GradSampleModule`` is unwrapped). Only
            parameters with ``requires_grad`` count, as in DP-SGD.
        candidates_x: pool of M ≥ n_candidates inputs, shape (M, ...), as the model takes them.
        candidates_y: their integer labels, shape (M,), or a segmenter's masks (M, *spatial).
        noise_multiplier: σ ≥ 0 (0: non-private, the residual is exact).
        sample_rate: Poisson sampling rate q in (0, 1].
        steps: number of DP-SGD steps T ≥ 1.
        max_grad_norm: clip norm C > 0.
        n_candidates: size n ≥ 2 of the prior; chance is 1/n.
        n_trials: number of games played.
        seed: seed of the game's randomness (candidates, target, sampling, noise, ties).
        device: where per-sample gradients are computed; the game itself runs in NumPy.
        progress: called as ``progress(trials_done, n_trials)`` after each chunk of trials.
    """
    _validate(model_states, candidates_x, candidates_y, noise_multiplier, sample_rate, steps, max_grad_norm, n_candidates, n_trials)
    sigma, q, c = float(noise_multiplier), float(sample_rate), float(max_grad_norm)
    steps = int(steps)
    grams = np.stack([
        clipped_gradient_gram(model, candidates_x, candidates_y, max_grad_norm=c, device=device, loss_fn=loss_fn)
        for model in model_states
    ])  # (S, M, M)
    steps_per_state = np.bincount(np.arange(steps) * len(model_states) // steps, minlength=len(model_states))
    rng = np.random.default_rng(seed)
    successes = _play_games(grams, steps_per_state, n_candidates, n_trials, sigma, q, c, rng, progress)
    return _outcome(successes, n_trials, n_candidates, sigma, q, steps, len(model_states))


def _outcome(successes: int, n_trials: int, n_candidates: int, sigma: float, q: float, steps: int,
             n_states: int) -> PriorAwareResult:
    """The games' success rate with its exact (Clopper–Pearson) 95% interval, beside the ReRo bound
    γ(1/n, σ, q, T) and chance 1/n."""
    ci = binomtest(successes, n_trials).proportion_ci(confidence_level=0.95, method="exact")
    return PriorAwareResult(
        n_candidates=int(n_candidates),
        trials=int(n_trials),
        successes=int(successes),
        success_rate=successes / n_trials,
        ci_low=float(ci.low),
        ci_high=float(ci.high),
        bound=rero_bound(1.0 / n_candidates, sigma, q, steps),
        chance=1.0 / n_candidates,
        sigma=sigma,
        sample_rate=q,
        steps=steps,
        n_states=n_states,
    )


def _play_games(grams, steps_per_state, n_candidates, n_trials, sigma, q, clip, rng, progress) -> int:
    """Play the game ``n_trials`` times, in chunks of trials; the number of games the adversary won.

    ``grams`` (S, M, M): the clipped-gradient Gram matrix of the pool at each model state;
    ``steps_per_state`` (S,): how many of the T steps each state takes.
    """
    pool = grams.shape[1]
    successes = 0
    chunk = max(1, _CHUNK_ELEMENTS // (int(steps_per_state.max()) * n_candidates))
    for start in range(0, n_trials, chunk):
        size = min(chunk, n_trials - start)
        chosen = np.stack([rng.choice(pool, n_candidates, replace=False) for _ in range(size)])  # (B, n)
        target = rng.integers(0, n_candidates, size=size)  # ground truth: position of the target in ``chosen``
        scores = np.zeros((size, n_candidates))
        for gram, n_steps in zip(grams, steps_per_state):
            if n_steps == 0:
                continue
            candidate_gram = gram[chosen[:, :, None], chosen[:, None, :]]  # (B, n, n), known to the adversary
            observation = _simulate_steps(candidate_gram, target, n_steps, sigma, q, clip, rng)
            scores += _log_likelihood_ratios(observation, candidate_gram, sigma, q, clip)
        guess = _map_guess(scores, rng)
        successes += int(np.sum(guess == target))  # the referee: the only place guess meets truth
        if progress is not None:
            progress(start + size, n_trials)
    return successes


# --------------------------------------------------------------------------------------------
def clipped_gradients(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, max_grad_norm: float, device="cpu", batch_size: int = 256,
    loss_fn: Callable = F.cross_entropy,
) -> torch.Tensor:
    """Per-sample clipped gradients ĝ_i of the training loss ``loss_fn`` (cross-entropy; a
    segmenter's loss for masks ``y``), flattened: a float64 CPU tensor (M, d).

    ĝ_i = g_i·min(1, C/(‖g_i‖ + 1e-6)), Opacus' clipping rule, over the parameters that require
    gradients, computed with torch.func (vmap of grad) at the model's current state in eval mode.
    An Opacus ``GradSampleModule`` is unwrapped with its public ``to_standard_module()`` on a copy
    (that method removes the wrapper's hooks, so the caller's wrapper is left as it was).
    """
    from torch.func import functional_call, grad, vmap

    # an Opacus GradSampleModule wraps the network: take it through Opacus' public method
    module = copy.deepcopy(model).to_standard_module() if hasattr(model, "to_standard_module") else model
    was_training = module.training
    module.eval()
    params = {k: v.detach().to(device) for k, v in module.named_parameters() if v.requires_grad}
    frozen = {k: v.detach().to(device) for k, v in module.named_parameters() if not v.requires_grad}
    buffers = {k: v.detach().to(device) for k, v in module.named_buffers()}

    def loss(p, xi, yi):
        logits = functional_call(module, ({**p, **frozen}, buffers), (xi.unsqueeze(0),))
        return loss_fn(logits, yi.unsqueeze(0))

    per_sample = vmap(grad(loss), in_dims=(None, 0, 0))
    rows = []
    try:
        for start in range(0, x.shape[0], batch_size):
            xb = x[start : start + batch_size].to(device)
            yb = y[start : start + batch_size].to(device).long()
            g = per_sample(params, xb, yb)
            flat = torch.cat([g[k].reshape(xb.shape[0], -1) for k in params], dim=1)
            factor = (max_grad_norm / (flat.norm(dim=1) + 1e-6)).clamp(max=1.0)
            rows.append((flat * factor[:, None]).double().cpu())
    finally:
        module.train(was_training)
    return torch.cat(rows)


def clipped_gradient_gram(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, max_grad_norm: float, device="cpu",
                          loss_fn: Callable = F.cross_entropy) -> np.ndarray:
    """Gram matrix G_ij = ⟨ĝ_i, ĝ_j⟩ (float64, M × M) of the clipped gradients of :func:`clipped_gradients`."""
    g = clipped_gradients(model, x, y, max_grad_norm=max_grad_norm, device=device, loss_fn=loss_fn)
    return (g @ g.T).numpy()


# --------------------------------------------------------------------------------------------
# the simulated training run: the only code besides the referee that knows the target
def _simulate_steps(candidate_gram, target, n_steps, sigma, q, clip, rng):
    """Projections of the residual updates on the candidates' clipped gradients, for n_steps steps.

    Returns ``(projections, residual_sq_norms)``: projections (B, n_steps, n) are
    b_t·G[target, :] + σC·N(0, G); residual_sq_norms (B, n_steps) = ‖r_t‖², released only when
    σ = 0 (with noise it carries nothing the likelihood ratio needs), else None.
    """
    batch, n, _ = candidate_gram.shape
    signal = candidate_gram[np.arange(batch), target]  # (B, n): ⟨ĝ_*, ĝ_j⟩
    sampled = rng.random((batch, n_steps)) < q  # b_t
    projections = sampled[:, :, None] * signal[:, None, :]
    if sigma == 0.0:
        target_sq_norm = candidate_gram[np.arange(batch), target, target]
        return projections, sampled * target_sq_norm[:, None]
    # noise ⟨ξ, ĝ_j⟩ with ξ ~ N(0, I_d) has covariance G: draw it through G = U·Λ·Uᵀ (G may be singular)
    eigval, eigvec = np.linalg.eigh(candidate_gram)
    root = eigvec * np.sqrt(np.clip(eigval, 0.0, None))[:, None, :]  # (B, n, n): root·rootᵀ = G
    z = rng.standard_normal((batch, n_steps, n))
    projections = projections + sigma * clip * np.einsum("btk,bjk->btj", z, root)
    return projections, None


# --------------------------------------------------------------------------------------------
# the adversary: sees the observations and the candidates' Gram matrices, never the target
def _log_likelihood_ratios(observation, candidate_gram, sigma, q, clip):
    """Σ_t log-likelihood ratio of "candidate j is the target" against "target absent", per candidate.

    σ > 0: Σ_t log(1 − q + q·exp((v_{t,j} − G_jj/2)/(σ²C²))), computed without overflow.
    σ = 0: Σ_t log((1 − q)·1{r_t = 0} + q·1{r_t = ĝ_j}), with ‖r_t − ĝ_j‖² = ‖r_t‖² − 2v_{t,j} + G_jj
    (−∞ for a candidate that contradicts a step).
    """
    projections, residual_sq_norms = observation
    sq_norms = np.diagonal(candidate_gram, axis1=1, axis2=2)  # (B, n): ‖ĝ_j‖²
    if sigma > 0.0:
        u = (projections - sq_norms[:, None, :] / 2) / (sigma * clip) ** 2
        return per_step_log_ratio(u, q).sum(axis=1)
    # Gram entries are float64 sums of float32 products: the tolerance follows the gradients'
    # actual scale (not C², which is arbitrary when clipping does not act, e.g. non-private runs).
    tolerance = 1e-9 * max(float(sq_norms.max(initial=0.0)), float(residual_sq_norms.max(initial=0.0)), 1e-30)
    empty = residual_sq_norms <= tolerance  # (B, T)
    matches = (residual_sq_norms[:, :, None] - 2 * projections + sq_norms[:, None, :]) <= tolerance
    likelihood = (1.0 - q) * empty[:, :, None] + q * matches
    with np.errstate(divide="ignore"):
        return np.log(likelihood).sum(axis=1)


def _map_guess(scores: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """argmax over candidates per trial, ties (e.g. identical gradients, or all −∞) broken uniformly."""
    best = scores == scores.max(axis=1, keepdims=True)
    return np.argmax(np.where(best, rng.random(scores.shape), -1.0), axis=1)


# --------------------------------------------------------------------------------------------
def _is_integer(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _validate(model_states, x, y, sigma, q, steps, clip, n, trials) -> None:
    if len(model_states) == 0:
        raise ValueError("model_states is empty; pass at least one model state the adversary knows")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"candidates_x has {x.shape[0]} rows but candidates_y has {y.shape[0]}; they must match")
    if not (_is_integer(n) and 2 <= n <= x.shape[0]):
        raise ValueError(f"n_candidates={n!r} is not valid; it must be an integer in [2, {x.shape[0]}] (the pool size)")
    if not (_is_integer(trials) and trials >= 1):
        raise ValueError(f"n_trials={trials!r} is not valid; it must be an integer >= 1")
    if not (_is_integer(steps) and steps >= 1):
        raise ValueError(f"steps={steps!r} is not valid; the number of DP-SGD steps must be an integer >= 1")
    if not (float(sigma) >= 0 and math.isfinite(float(sigma))):
        raise ValueError(f"noise_multiplier={sigma!r} is not valid; it must be finite and >= 0")
    if not 0.0 < float(q) <= 1.0:
        raise ValueError(f"sample_rate={q!r} is not valid; the Poisson sampling rate must lie in (0, 1]")
    if not (float(clip) > 0 and math.isfinite(float(clip))):
        raise ValueError(f"max_grad_norm={clip!r} is not valid; the clip norm must be finite and > 0")

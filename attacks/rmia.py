"""Robust membership inference attack, RMIA (Zarifzadeh, Liu, Shokri, "Low-Cost High-Power
Membership Inference Attacks", ICML 2024), with a few reference models (1–4 in the paper's
low-cost setting).

- Pr(x|θ): softmax(z / temperature) probability of the true label under the target, averaged
  over the A augmentation queries.
- Pr(x): the same under reference models. Online: the mean over all references (those that
  trained on x and those that did not). Offline (references that did not train on x only):
  the paper's linear approximation Pr(x) = ½((1 + a)·Pr_OUT(x) + (1 − a)), which assumes
  Pr_IN(x) = a·Pr_OUT(x) + (1 − a). a depends on the dataset and training: the authors'
  code (privacy meter) tunes it on a pair of reference models over a ∈ {0, 0.1, …, 1};
  the default 0.3 is the project's configured value (LeakPro uses 0.33).
- LR(x, z) = (Pr(x|θ)/Pr(x)) / (Pr(z|θ)/Pr(z)) for population samples z known to be
  non-members of the target; the paper's score is the share of population samples that x
  dominates, |{z ≠ x : LR(x, z) ≥ γ}| / |{z ≠ x}|. The default γ = 1 is the threshold of the
  authors' code (privacy meter, which counts LR > 1; ≥ differs only on exact ties); LeakPro
  defaults to γ = 2.
- Ties: that share takes only |Z| + 1 values, so every candidate that dominates the whole
  population scores exactly 1, and the members above the population's top tie with each
  other: TPR at FPR below about 1/|Z| would be 0 whatever the attack's strength. The score
  returned is therefore (count + t(x)) / (|Z| + 1) with the tie-break
  t(x) = ½ + arctan((ρ(x) − log γ − mean ρ(z)) / sd ρ(z)) / π ∈ (0, 1), ρ = log(Pr(·|θ)/Pr(·)):
  it orders exactly like the paper's share, and inside a tie by how far x's likelihood ratio
  lies beyond the population's (standardised, so comparable across targets). Within one
  target both terms grow with ρ(x), so the ranking is that of ρ(x) itself.

Population: a bool mask (N,) or indices into the N samples. It should be disjoint from the
candidates (Zarifzadeh et al. use population data the target never saw, e.g. a held-out split:
append it to the arrays with ``reference_member`` False, as
:func:`medprivbench.attacks.membership.score_all_targets` does); a sample that is itself in the
population is never compared with itself. Pr(z) uses the same estimate as Pr(x).

Counting is sort-based: log LR(x, z) ≥ log γ ⇔ ρ(z) ≤ ρ(x) − log γ,
so one sort of the population and one ``searchsorted`` score all samples in O((N + |z|) log |z|).

Samples with no OUT reference in offline mode take the mean Pr_OUT of the other samples
(the offline threat model never uses references that trained on x).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import log_softmax, logsumexp

from .membership_signals import SIGNALS, SIGNALS_DOC, reference_queries
from .settings import Validated, choices, flag, integer, real

RMIA_DEFAULT_OFFLINE_A = 0.3
RMIA_DEFAULT_GAMMA = 1.0


@dataclass
class RMIAConfig(Validated):
    """RMIA (Zarifzadeh et al. 2024) with a few reference models (1–4 in the paper's low-cost setting).

    ``offline_a``: the linear approximation of Pr(x) from OUT references; ``gamma``: the
    likelihood-ratio threshold against population samples; ``online``: use IN and OUT references.
    """

    n_references: int = integer(4, 1)
    offline_a: float = real(RMIA_DEFAULT_OFFLINE_A, 0.0, 1.0)
    gamma: float = real(RMIA_DEFAULT_GAMMA, 0.0, low_open=True)
    online: bool = flag(False)
    signals: list = choices(["logits"], SIGNALS, doc=SIGNALS_DOC)


def rmia_attack(
    target_logits: np.ndarray,
    labels: np.ndarray,
    reference_logits: np.ndarray,
    reference_member: np.ndarray,
    population: np.ndarray,
    *,
    online: bool = False,
    offline_a: float | None = None,
    gamma: float = RMIA_DEFAULT_GAMMA,
    temperature: float = 1.0,
) -> np.ndarray:
    """RMIA scores of the target's samples against the population (the module docstring has the math).

    Args:
        target_logits: (N, K) or (N, A, K).
        labels: (N,) integer classes.
        reference_logits: (R, N, K) or (R, N, A, K), R ≥ 1 reference models.
        reference_member: (R, N) bool, True where the sample was in the reference's training set.
        population: bool mask (N,) or integer indices of known non-members of the target (≥ 2).
        online: use IN and OUT references (True) or OUT references with the a-approximation (False).
        offline_a: a in [0, 1] of the offline approximation (default 0.3); rejected when online.
        gamma: γ > 0, the threshold on the pairwise likelihood ratio.
        temperature: softmax temperature T > 0.

    Returns:
        scores (N,) in (0, 1), higher = more likely a member.
    """
    target, labels, references, reference_member = reference_queries(
        target_logits, labels, reference_logits, reference_member, "reference"
    )
    in_population = _population_mask(population, target.shape[0])
    if in_population.sum() < 2:
        raise ValueError(f"population holds {in_population.sum()} samples; RMIA needs at least 2")
    offline_a = _check_options(online, offline_a, gamma, temperature)

    log_p_target = _true_class_log_probability(target, labels, temperature)  # (N,)
    log_p_reference = _true_class_log_probability(references, labels, temperature)  # (R, N)
    log_marginal = _rmia_log_marginal(log_p_reference, reference_member, online=online, offline_a=offline_a)
    log_ratio = log_p_target - log_marginal  # ρ(x)
    return _population_share(log_ratio, in_population, gamma)


def _check_options(online: bool, offline_a: float | None, gamma: float, temperature: float) -> float:
    """Reject options that would do nothing or are invalid; return a (the default when unset)."""
    if online and offline_a is not None:
        raise ValueError(f"offline_a={offline_a} has no effect with online=True; leave it unset")
    if offline_a is None:
        offline_a = RMIA_DEFAULT_OFFLINE_A
    if not 0.0 <= offline_a <= 1.0:
        raise ValueError(f"offline_a={offline_a}; expected a value in [0, 1]")
    if not gamma > 0:
        raise ValueError(f"gamma={gamma}; expected a positive likelihood-ratio threshold")
    if not temperature > 0:
        raise ValueError(f"temperature={temperature}; expected a positive softmax temperature")
    return offline_a


def _population_mask(population: np.ndarray, n_samples: int) -> np.ndarray:
    population = np.asarray(population)
    if population.dtype == np.bool_:
        if population.shape != (n_samples,):
            raise ValueError(f"population mask has shape {population.shape}; expected ({n_samples},)")
        return population
    if population.ndim != 1 or not np.issubdtype(population.dtype, np.integer):
        raise ValueError(
            f"population has shape {population.shape} and dtype {population.dtype}; "
            f"expected a bool mask ({n_samples},) or a 1-D array of sample indices"
        )
    if population.size and (population.min() < 0 or population.max() >= n_samples):
        raise ValueError(f"population indices range over [{population.min()}, {population.max()}]; expected [0, {n_samples - 1}]")
    mask = np.zeros(n_samples, dtype=bool)
    mask[population] = True
    return mask


def _true_class_log_probability(logits: np.ndarray, labels: np.ndarray, temperature: float) -> np.ndarray:
    """log of the softmax(z / T) probability of the true class, averaged over queries.

    ``logits`` (..., N, A, K) → (..., N): log((1/A) Σ_a softmax(z_a / T)_y), in log space so that
    probabilities below 1e-308 do not underflow to 0.
    """
    log_p = log_softmax(logits / temperature, axis=-1)
    log_p_true = np.take_along_axis(log_p, np.broadcast_to(labels[:, None, None], log_p.shape[:-1] + (1,)), axis=-1)
    return logsumexp(log_p_true[..., 0], axis=-1) - np.log(log_p.shape[-2])


def _rmia_log_marginal(
    log_p_reference: np.ndarray, reference_member: np.ndarray, *, online: bool, offline_a: float
) -> np.ndarray:
    """log Pr(x), the marginal probability of the true label over reference models, (N,).

    online: Pr(x) = mean over all references (IN and OUT for x).
    offline: Pr(x) = ½((1 + a)·Pr_OUT(x) + (1 − a)), Pr_OUT(x) the mean over references that did
    not train on x. Samples with no OUT reference take the mean Pr_OUT of the other samples.
    """
    n_references = log_p_reference.shape[0]
    if online:
        return logsumexp(log_p_reference, axis=0) - np.log(n_references)
    is_out = ~reference_member
    n_out = is_out.sum(axis=0)
    has_out = n_out > 0
    if not has_out.any():
        raise ValueError("reference_member is True everywhere; offline RMIA needs references that did not train on the samples")
    with np.errstate(divide="ignore"):
        log_p_out = logsumexp(np.where(is_out, log_p_reference, -np.inf), axis=0) - np.log(np.maximum(n_out, 1))
        log_p_out[~has_out] = logsumexp(log_p_out[has_out]) - np.log(has_out.sum())
        # log(½((1+a)p + (1−a))) in log space; a = 1 makes the second term log 0 = −inf.
        return np.logaddexp(np.log((1.0 + offline_a) / 2.0) + log_p_out, np.log((1.0 - offline_a) / 2.0))


def _population_share(log_ratio: np.ndarray, in_population: np.ndarray, gamma: float) -> np.ndarray:
    """(count + t(x)) / (|Z| + 1): the share of the population x dominates, with the tie-break t(x)."""
    population_ratios = np.sort(log_ratio[in_population])
    cutoff = log_ratio - np.log(gamma)
    counts = np.searchsorted(population_ratios, cutoff, side="right").astype(np.float64)
    # A population sample was counted against itself exactly when ρ(x) ≤ ρ(x) − log γ.
    self_counted = in_population & (log_ratio <= cutoff)
    counts -= self_counted
    n_compared = population_ratios.size - in_population.astype(np.float64)
    spread = population_ratios.std()
    standardised = (cutoff - population_ratios.mean()) / (spread if spread > 0 else 1.0)
    tie_break = 0.5 + np.arctan(standardised) / np.pi
    return (counts + tie_break) / (n_compared + 1.0)

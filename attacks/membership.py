"""Membership inference scores from model outputs: loss, LiRA and RMIA.

Pure numpy/scipy functions on arrays of logits; training the shadow/reference models and
querying them is done elsewhere. Every score follows one convention: **higher means more likely a
member** of the target model's training set.

Array conventions (the LiRA evaluation protocol: M models trained on random halves of a pool of N
samples, each model in turn the target and the rest its shadows/references):

- ``logits[m, i, k]`` for model m, sample i, class k, or ``logits[m, i, a, k]`` with an
  augmentation axis of A queries per sample (e.g. the image and its horizontal flip);
- ``labels[i]`` the true class of sample i;
- ``member[m, i]`` True when sample i was in the training set of model m.

The registry :data:`ATTACKS` maps attack names to functions with one calling convention, and
:func:`score_all_targets` runs one of them with every model as the target in turn.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from scipy.special import log_softmax, logsumexp
from scipy.stats import norm

from .settings import Validated, choice, flag, integer, real

# Floor on Gaussian standard deviations fitted to scaled confidences: a zero variance (identical
# shadow outputs) would turn log-densities into ±inf and the scores into NaN.
_MIN_STD = 1e-6


# ----------------------------------------------------------------------------------------------
# Validation at the public entry points
# ----------------------------------------------------------------------------------------------


def _labels_array(labels: np.ndarray, n_samples: int, n_classes: int) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.shape != (n_samples,):
        raise ValueError(f"labels has shape {labels.shape}; expected ({n_samples},), one label per sample")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels has dtype {labels.dtype}; expected integer class indices")
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(
            f"labels range over [{labels.min()}, {labels.max()}]; expected class indices in [0, {n_classes - 1}]"
        )
    return labels


def _model_queries(logits: np.ndarray, name: str) -> np.ndarray:
    """One model's logits as float64 (N, A, K): (N, K) gains an augmentation axis of length 1."""
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim == 2:
        logits = logits[:, None, :]
    if logits.ndim != 3:
        raise ValueError(f"{name} has shape {logits.shape}; expected (N, K) or (N, A, K)")
    _check_logits_values(logits, name)
    return logits


def _stacked_queries(logits: np.ndarray, name: str) -> np.ndarray:
    """Several models' logits as float64 (S, N, A, K): (S, N, K) gains an augmentation axis."""
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim == 3:
        logits = logits[:, :, None, :]
    if logits.ndim != 4:
        raise ValueError(f"{name} has shape {logits.shape}; expected (models, N, K) or (models, N, A, K)")
    if logits.shape[0] < 1:
        raise ValueError(f"{name} holds {logits.shape[0]} models; at least 1 is needed")
    _check_logits_values(logits, name)
    return logits


def _check_logits_values(logits: np.ndarray, name: str) -> None:
    if logits.shape[-1] < 2:
        raise ValueError(f"{name} has {logits.shape[-1]} class logit(s); expected at least 2 classes")
    if not np.all(np.isfinite(logits)):
        raise ValueError(f"{name} contains NaN or infinite values; logits must be finite")


def _membership_matrix(member: np.ndarray, shape: tuple[int, int], name: str) -> np.ndarray:
    member = np.asarray(member)
    if member.shape != shape:
        raise ValueError(f"{name} has shape {member.shape}; expected {shape} (models, samples)")
    if member.dtype != np.bool_:
        raise ValueError(f"{name} has dtype {member.dtype}; expected bool")
    return member


# ----------------------------------------------------------------------------------------------
# Settings of the attacks (the benchmark's attack configs are these dataclasses)
# ----------------------------------------------------------------------------------------------

RMIA_DEFAULT_OFFLINE_A = 0.3
RMIA_DEFAULT_GAMMA = 1.0


@dataclass
class LossConfig(Validated):
    """Loss threshold (Yeom et al. 2018): score = −loss of the target model; no settings."""


@dataclass
class LiRAConfig(Validated):
    """LiRA (Carlini et al. 2022), online (IN and OUT shadows) and offline (OUT only).

    ``variance``: per_sample (a variance per image), fixed (one global variance, the paper's
    variant for few shadows) or auto (fixed below 64 shadow models).
    """

    online: bool = flag(True)
    offline: bool = flag(True)
    variance: str = choice("auto", ("auto", "per_sample", "fixed"))

    def check(self) -> None:
        if not (self.online or self.offline):
            raise ValueError("online and offline are both false; enable one or drop lira from attack=[…]")


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


# ----------------------------------------------------------------------------------------------
# Per-sample signals
# ----------------------------------------------------------------------------------------------


def logit_confidence(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Scaled confidence φ = log(p_y / (1 − p_y)) of Carlini et al. (2022), computed from logits.

    With p = softmax(z), p_y / (1 − p_y) = exp(z_y) / Σ_{j≠y} exp(z_j), so
    φ = z_y − logsumexp_{j≠y} z_j. This is the LiRA reference implementation's "stable" scaling
    computed without going through probabilities, so it stays finite and exact where p_y rounds
    to 1 in floating point (strongly memorised samples, the ones that matter at low FPR).

    Args:
        logits: array (..., K), K ≥ 2 classes, any leading axes.
        labels: integer array broadcastable to ``logits.shape[:-1]`` (plain numpy broadcasting;
            for (M, N, A, K) logits pass ``labels[:, None]``).

    Returns:
        φ with shape ``logits.shape[:-1]``.
    """
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim < 1 or logits.shape[-1] < 2:
        raise ValueError(f"logits has shape {logits.shape}; expected (..., K) with K >= 2 classes")
    labels = np.asarray(labels)
    try:
        labels = np.broadcast_to(labels, logits.shape[:-1])
    except ValueError:
        raise ValueError(
            f"labels has shape {labels.shape}; expected a shape broadcastable to {logits.shape[:-1]}"
        ) from None
    if not np.issubdtype(labels.dtype, np.integer) or (labels.size and (labels.min() < 0 or labels.max() >= logits.shape[-1])):
        raise ValueError(f"labels must be integer class indices in [0, {logits.shape[-1] - 1}]; got dtype {labels.dtype}")
    is_true_class = np.arange(logits.shape[-1]) == labels[..., None]
    true_logit = np.take_along_axis(logits, labels[..., None].astype(np.intp), axis=-1)[..., 0]
    other_logits = np.where(is_true_class, -np.inf, logits)
    # logsumexp by hand: scipy.special.logsumexp is about 10x slower on these (models, N, A, K)
    # arrays, and the maximum over the other classes is always finite (K >= 2).
    largest_other = other_logits.max(axis=-1, keepdims=True)
    log_sum_other = largest_other[..., 0] + np.log(np.exp(other_logits - largest_other).sum(axis=-1))
    return true_logit - log_sum_other


def _true_class_log_probability(logits: np.ndarray, labels: np.ndarray, temperature: float) -> np.ndarray:
    """log of the softmax(z / T) probability of the true class, averaged over queries.

    ``logits`` (..., N, A, K) → (..., N): log((1/A) Σ_a softmax(z_a / T)_y), in log space so that
    probabilities below 1e-308 do not underflow to 0.
    """
    log_p = log_softmax(logits / temperature, axis=-1)
    log_p_true = np.take_along_axis(log_p, np.broadcast_to(labels[:, None, None], log_p.shape[:-1] + (1,)), axis=-1)
    return logsumexp(log_p_true[..., 0], axis=-1) - np.log(log_p.shape[-2])


# ----------------------------------------------------------------------------------------------
# Loss attack
# ----------------------------------------------------------------------------------------------


def loss_attack(target_logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Loss-threshold attack (Yeom et al., "Privacy Risk in Machine Learning", CSF 2018).

    score(x) = −ℓ(x), the negative cross-entropy loss of the target on x,
    ℓ = logsumexp_j z_j − z_y, averaged over the A augmentation queries when there are several.
    Thresholding it is the attack; no shadow models are needed.

    Args:
        target_logits: (N, K) or (N, A, K).
        labels: (N,) integer classes.

    Returns:
        scores (N,).
    """
    logits = _model_queries(target_logits, "target_logits")
    labels = _labels_array(labels, logits.shape[0], logits.shape[-1])
    log_p = log_softmax(logits, axis=-1)
    log_p_true = np.take_along_axis(log_p, np.broadcast_to(labels[:, None, None], log_p.shape[:-1] + (1,)), axis=-1)
    return log_p_true[..., 0].mean(axis=-1)


# ----------------------------------------------------------------------------------------------
# LiRA
# ----------------------------------------------------------------------------------------------


class _GaussianFit:
    """Per-sample Gaussian fits of φ over the shadow models in one group (IN or OUT).

    Attributes (A = number of queries):
        count (N,): shadows in the group for each sample.
        mean (N, A): per-sample means (0 where count == 0; callers replace those).
        per_sample_var (N, A): unbiased per-sample variances (valid where count ≥ 2).
        pooled_var (A,) or None: one global variance per query, the within-sample residuals of all
            samples pooled, Σ_i Σ_s (φ_si − μ_i)² / Σ_i (n_i − 1); None when no sample has 2 shadows.
    """

    def __init__(self, phi: np.ndarray, in_group: np.ndarray) -> None:
        weights = in_group[..., None].astype(np.float64)  # (S, N, 1)
        self.count = in_group.sum(axis=0)
        safe_count = np.maximum(self.count, 1)[:, None]
        self.mean = (phi * weights).sum(axis=0) / safe_count
        squared_residuals = (((phi - self.mean) ** 2) * weights).sum(axis=0)  # (N, A)
        self.per_sample_var = squared_residuals / np.maximum(self.count - 1, 1)[:, None]
        degrees_of_freedom = np.maximum(self.count - 1, 0).sum()
        self.pooled_var = squared_residuals.sum(axis=0) / degrees_of_freedom if degrees_of_freedom > 0 else None


def _lira_std(fit: _GaussianFit, fallback_var: np.ndarray, fixed_variance: bool) -> np.ndarray:
    """(N, A) standard deviations: per-sample where ≥ 2 shadows, else (or if fixed) the global one."""
    global_var = fit.pooled_var if fit.pooled_var is not None else fallback_var
    if fixed_variance:
        var = np.broadcast_to(global_var, fit.mean.shape)
    else:
        var = np.where((fit.count >= 2)[:, None], fit.per_sample_var, global_var)
    return np.maximum(np.sqrt(var), _MIN_STD)


def lira_attack(
    target_logits: np.ndarray,
    labels: np.ndarray,
    shadow_logits: np.ndarray,
    shadow_member: np.ndarray,
    *,
    online: bool = True,
    fixed_variance: bool = False,
) -> np.ndarray:
    """Likelihood-ratio attack, LiRA (Carlini et al., "Membership Inference Attacks From First
    Principles", IEEE S&P 2022).

    For each sample x and query a, the scaled confidences φ (:func:`logit_confidence`) of the
    shadow models that trained on x (IN) and of those that did not (OUT) are fitted with Gaussians
    N(μ_in, σ_in²) and N(μ_out, σ_out²). The A queries of one sample are treated as a multivariate
    Gaussian with diagonal covariance, so per-query log-densities add up.

    - online: score = Σ_a [log N(φ_a; μ_in,a, σ_in,a²) − log N(φ_a; μ_out,a, σ_out,a²)],
      the log likelihood ratio (paper, Algorithm 1).
    - offline (OUT shadows only): the paper's one-sided test Λ = 1 − Pr[Z > φ], Z ~ N(μ_out, σ_out²).
      With A queries the standardised deviations are combined as T = Σ_a (φ_a − μ_out,a)/σ_out,a / √A,
      which is N(0, 1) under the diagonal OUT model, and the score is −log Pr[Z > T] = −log Φ(−T),
      the −log p-value. It ranks exactly like Λ = Φ(T) but, unlike Λ, does not saturate at 1 (float
      rounding) for the strongly memorised samples that matter at low FPR. (The reference code's
      offline score is the two-sided OUT density; the one-sided form is the paper's.)

    Variances: per-sample unbiased variances by default; with ``fixed_variance`` one global
    variance per group and query (within-sample residuals pooled over all samples; the paper's
    choice when there are few shadows, e.g. fewer than 64).

    Fallbacks (scores are never NaN):
    - fewer than 2 shadows in a group for a sample: that sample uses the group's global variance;
      if no sample has 2 shadows in the group, online uses the other group's global variance and,
      if neither has one, the variance of all shadow φ across samples; offline uses the variance
      of all OUT φ across samples. Standard deviations are floored at 1e-6.
    - online, a sample with no IN shadow: μ_in = μ_out + the mean IN−OUT shift over the samples
      that have both (if none has both, the difference of the group means); symmetrically for a
      sample with no OUT shadow. No IN shadow for any sample raises ValueError (use offline).
    - offline, a sample with no OUT shadow: μ_out = the mean of μ_out over the other samples (the
      offline threat model never uses IN shadows). No OUT shadow at all raises ValueError.

    Args:
        target_logits: (N, K) or (N, A, K), the target model's logits.
        labels: (N,) integer classes.
        shadow_logits: (S, N, K) or (S, N, A, K), the shadow models' logits on the same samples.
        shadow_member: (S, N) bool, True where the sample was in the shadow's training set.
        online: likelihood ratio IN vs OUT (True) or one-sided test against OUT only (False).
        fixed_variance: one global variance per group instead of per-sample variances.

    Returns:
        scores (N,), higher = more likely a member.
    """
    target = _model_queries(target_logits, "target_logits")
    shadows = _stacked_queries(shadow_logits, "shadow_logits")
    n_samples, n_queries, n_classes = target.shape
    if shadows.shape[1:] != target.shape:
        raise ValueError(
            f"shadow_logits has per-model shape {shadows.shape[1:]}; expected {target.shape} like target_logits"
        )
    labels = _labels_array(labels, n_samples, n_classes)
    shadow_member = _membership_matrix(shadow_member, shadows.shape[:2], "shadow_member")

    phi_target = logit_confidence(target, labels[:, None])  # (N, A)
    phi_shadow = logit_confidence(shadows, labels[:, None])  # (S, N, A)

    fit_out = _GaussianFit(phi_shadow, ~shadow_member)
    has_out = fit_out.count > 0
    if not has_out.any():
        raise ValueError("shadow_member is True everywhere; LiRA needs shadow models that did not train on the samples")
    if not online:
        # The offline threat model never looks at IN shadows, not even for a fallback variance.
        std_out = _lira_std(fit_out, phi_shadow[~shadow_member].var(axis=0), fixed_variance)
        mean_out = np.where(has_out[:, None], fit_out.mean, fit_out.mean[has_out].mean(axis=0))
        standardised = ((phi_target - mean_out) / std_out).sum(axis=1) / np.sqrt(n_queries)
        return -norm.logsf(standardised)

    fit_in = _GaussianFit(phi_shadow, shadow_member)
    has_in = fit_in.count > 0
    if not has_in.any():
        raise ValueError(
            "shadow_member is False everywhere; online LiRA needs IN shadows (use online=False for OUT-only shadows)"
        )
    last_resort_var = phi_shadow.reshape(-1, n_queries).var(axis=0)
    has_both = has_in & has_out
    if has_both.any():
        shift = (fit_in.mean[has_both] - fit_out.mean[has_both]).mean(axis=0)
    else:
        shift = fit_in.mean[has_in].mean(axis=0) - fit_out.mean[has_out].mean(axis=0)
    mean_in = np.where(has_in[:, None], fit_in.mean, fit_out.mean + shift)
    mean_out = np.where(has_out[:, None], fit_out.mean, fit_in.mean - shift)

    pooled_in = fit_in.pooled_var if fit_in.pooled_var is not None else fit_out.pooled_var
    pooled_out = fit_out.pooled_var if fit_out.pooled_var is not None else fit_in.pooled_var
    std_in = _lira_std(fit_in, pooled_in if pooled_in is not None else last_resort_var, fixed_variance)
    std_out = _lira_std(fit_out, pooled_out if pooled_out is not None else last_resort_var, fixed_variance)

    log_ratio = norm.logpdf(phi_target, mean_in, std_in) - norm.logpdf(phi_target, mean_out, std_out)
    return log_ratio.sum(axis=1)


# ----------------------------------------------------------------------------------------------
# RMIA
# ----------------------------------------------------------------------------------------------


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
    """Robust membership inference attack, RMIA (Zarifzadeh, Liu, Shokri, "Low-Cost High-Power
    Membership Inference Attacks", ICML 2024).

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
    append it to the arrays with ``reference_member`` False, as :func:`score_all_targets` does);
    a sample that is itself in the population is never compared with itself. Pr(z) uses the same
    estimate as Pr(x).

    Counting is sort-based: log LR(x, z) ≥ log γ ⇔ ρ(z) ≤ ρ(x) − log γ,
    so one sort of the population and one ``searchsorted`` score all samples in O((N + |z|) log |z|).

    Samples with no OUT reference in offline mode take the mean Pr_OUT of the other samples
    (the offline threat model never uses references that trained on x).

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
    target = _model_queries(target_logits, "target_logits")
    references = _stacked_queries(reference_logits, "reference_logits")
    n_samples, _, n_classes = target.shape
    if references.shape[1:] != target.shape:
        raise ValueError(
            f"reference_logits has per-model shape {references.shape[1:]}; expected {target.shape} like target_logits"
        )
    labels = _labels_array(labels, n_samples, n_classes)
    reference_member = _membership_matrix(reference_member, references.shape[:2], "reference_member")
    in_population = _population_mask(population, n_samples)
    if in_population.sum() < 2:
        raise ValueError(f"population holds {in_population.sum()} samples; RMIA needs at least 2")
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

    log_p_target = _true_class_log_probability(target, labels, temperature)  # (N,)
    log_p_reference = _true_class_log_probability(references, labels, temperature)  # (R, N)
    log_marginal = _rmia_log_marginal(log_p_reference, reference_member, online=online, offline_a=offline_a)
    log_ratio = log_p_target - log_marginal  # ρ(x)

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


# ----------------------------------------------------------------------------------------------
# Registry with one calling convention
# ----------------------------------------------------------------------------------------------


class MembershipAttack(Protocol):
    """The common calling convention of :data:`ATTACKS` entries.

    ``attack(target_logits, labels, reference_logits, reference_member, population, **options)``
    returns scores (N,), higher = more likely a member. ``reference_logits`` (R, N, [A,] K) and
    ``reference_member`` (R, N) are the shadow/reference models; ``population`` is a bool mask of
    samples known to be non-members of the target (RMIA's population z). Attacks that need no
    references or population ignore them (see ``uses_references``, ``uses_population``). ``options`` are the
    attack-specific keyword arguments; unknown ones raise TypeError.
    """

    uses_references: bool
    uses_population: bool

    def __call__(
        self,
        target_logits: np.ndarray,
        labels: np.ndarray,
        reference_logits: np.ndarray,
        reference_member: np.ndarray,
        population: np.ndarray,
        **options: object,
    ) -> np.ndarray: ...


ATTACKS: dict[str, MembershipAttack] = {}


def register_attack(name: str, *, uses_references: bool = True, uses_population: bool = False) -> Callable[[Callable], Callable]:
    """Decorator adding a function with the :class:`MembershipAttack` convention to :data:`ATTACKS`."""

    def decorate(function: Callable) -> Callable:
        if name in ATTACKS:
            raise ValueError(f"attack {name!r} is already registered")
        function.uses_references = uses_references  # type: ignore[attr-defined]
        function.uses_population = uses_population  # type: ignore[attr-defined]
        ATTACKS[name] = function  # type: ignore[assignment]
        return function

    return decorate


@register_attack("loss", uses_references=False)
def _loss(
    target_logits: np.ndarray,
    labels: np.ndarray,
    reference_logits: np.ndarray,
    reference_member: np.ndarray,
    population: np.ndarray,
) -> np.ndarray:
    return loss_attack(target_logits, labels)


@register_attack("lira_online")
def _lira_online(
    target_logits: np.ndarray,
    labels: np.ndarray,
    reference_logits: np.ndarray,
    reference_member: np.ndarray,
    population: np.ndarray,
    *,
    fixed_variance: bool = False,
) -> np.ndarray:
    return lira_attack(target_logits, labels, reference_logits, reference_member, online=True, fixed_variance=fixed_variance)


@register_attack("lira_offline")
def _lira_offline(
    target_logits: np.ndarray,
    labels: np.ndarray,
    reference_logits: np.ndarray,
    reference_member: np.ndarray,
    population: np.ndarray,
    *,
    fixed_variance: bool = False,
) -> np.ndarray:
    return lira_attack(target_logits, labels, reference_logits, reference_member, online=False, fixed_variance=fixed_variance)


@register_attack("rmia", uses_population=True)
def _rmia(
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
    return rmia_attack(
        target_logits, labels, reference_logits, reference_member, population,
        online=online, offline_a=offline_a, gamma=gamma, temperature=temperature,
    )


def score_all_targets(
    attack_name: str,
    logits: np.ndarray,
    labels: np.ndarray,
    member: np.ndarray,
    *,
    population_logits: np.ndarray | None = None,
    population_labels: np.ndarray | None = None,
    n_references: int | None = None,
    exclude: int | None = None,
    seed: int = 0,
    **options: object,
) -> np.ndarray:
    """Score every sample against every model of the LiRA evaluation protocol.

    Model m is the target in turn; the other models are its shadows/references (all of them, or
    ``n_references`` drawn without replacement with ``numpy.random.default_rng(seed)``, a fresh
    draw per target, for attacks meant to run with few references, e.g. RMIA with 1–4).
    ``exclude`` names one model that is neither a target nor anyone's reference: scores computed
    without it are independent of that model's training (what a held-out evaluation target needs,
    :func:`medprivbench.attacks.auditing.held_out_target_epsilon`); its row is NaN.

    The RMIA population is every model's logits on ``population_logits``' images, which no model
    trained on (a held-out split): appended to the arrays with membership False, so the attack never
    sees which candidates are the target's non-members.

    Args:
        attack_name: a key of :data:`ATTACKS`.
        logits: (M, N, K) or (M, N, A, K), M ≥ 2 models.
        labels: (N,) integer classes.
        member: (M, N) bool.
        population_logits: (M, P, K) or (M, P, A, K), the same models on P ≥ 2 population images;
            required by attacks that compare with a population (RMIA).
        population_labels: (P,) integer classes of the population images.
        n_references: number of references per target, 1 ≤ n ≤ M − 1 (M − 2 with ``exclude``);
            None uses all of them. Rejected for attacks that use no references.
        exclude: index of a model left out of the protocol, or None.
        seed: seed of the reference draw.
        **options: passed to the attack: ``fixed_variance`` for the LiRA entries; ``online``,
            ``offline_a`` (offline only), ``gamma``, ``temperature`` for ``rmia``.

    Returns:
        scores (M, N): ``scores[m, i]`` is the score of sample i against target m; evaluate it
        against ``member[m, i]``.
    """
    if attack_name not in ATTACKS:
        raise ValueError(f"attack_name={attack_name!r}; expected one of {sorted(ATTACKS)}")
    attack = ATTACKS[attack_name]
    logits = _stacked_queries(logits, "logits")
    n_models, n_samples = logits.shape[:2]
    member = _membership_matrix(member, (n_models, n_samples), "member")
    if exclude is not None and not 0 <= exclude < n_models:
        raise ValueError(f"exclude={exclude}; expected a model index in [0, {n_models - 1}]")
    models = np.array([m for m in range(n_models) if m != exclude])
    if models.size < 2 and attack.uses_references:
        raise ValueError(f"logits holds {models.size} usable model(s); attack {attack_name!r} needs at least 2 (a target and a reference)")
    if n_references is not None:
        if not attack.uses_references:
            raise ValueError(f"n_references={n_references} given, but attack {attack_name!r} uses no reference models")
        if not 1 <= n_references <= models.size - 1:
            raise ValueError(f"n_references={n_references}; expected an integer in [1, {models.size - 1}]")
    population = None
    if attack.uses_population:
        if population_logits is None or population_labels is None:
            raise ValueError(f"attack {attack_name!r} compares with population data: pass population_logits and population_labels "
                             "(the models' logits on images none of them trained on)")
        pop = _stacked_queries(population_logits, "population_logits")
        if pop.shape[0] != n_models or pop.shape[2:] != logits.shape[2:]:
            raise ValueError(f"population_logits has shape {pop.shape}; expected ({n_models}, P, {', '.join(map(str, logits.shape[2:]))})")
        population = (pop, np.asarray(population_labels))
        labels = np.concatenate([_labels_array(labels, n_samples, logits.shape[-1]),
                                 _labels_array(population[1], pop.shape[1], logits.shape[-1])])
        logits = np.concatenate([logits, pop], axis=1)
        member = np.concatenate([member, np.zeros((n_models, pop.shape[1]), dtype=bool)], axis=1)
    is_population = np.arange(logits.shape[1]) >= n_samples

    rng = np.random.default_rng(seed)
    scores = np.full((n_models, n_samples), np.nan)
    for target in models:
        others = models[models != target]
        if n_references is not None:
            others = np.sort(rng.choice(others, size=n_references, replace=False))
        # the target's own membership never enters: attacks without a population get an empty one
        scored = attack(logits[target], labels, logits[others], member[others], is_population, **options)
        scores[target] = scored[:n_samples]
    return scores

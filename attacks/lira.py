"""Likelihood-ratio attack, LiRA (Carlini et al., "Membership Inference Attacks From First
Principles", IEEE S&P 2022), online (IN and OUT shadows) and offline (OUT shadows only).

For each sample x and query a, the scaled confidences φ (:func:`.membership_signals.logit_confidence`)
of the shadow models that trained on x (IN) and of those that did not (OUT) are fitted with
Gaussians N(μ_in, σ_in²) and N(μ_out, σ_out²). The A queries of one sample are treated as a
multivariate Gaussian with diagonal covariance, so per-query log-densities add up.

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
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import norm

from .membership_signals import SIGNALS, SIGNALS_DOC, logit_confidence, reference_queries
from .settings import Validated, choice, choices, flag

# Carlini et al.'s fixed-variance variant is the better choice with few shadow models: below this
# many, variance=auto pools one variance per group (the sweep's LiRA, the audit's references, the tail)
FIXED_VARIANCE_BELOW = 64


def fixed_variance_for(variance: str, n_models: int) -> bool:
    """Whether ``variance`` (auto, fixed, per_sample / per_record) means one pooled variance per
    group, for ``n_models`` shadow or reference models."""
    return variance == "fixed" or (variance == "auto" and n_models < FIXED_VARIANCE_BELOW)


# Floor on Gaussian standard deviations fitted to scaled confidences: a zero variance (identical
# shadow outputs) would turn log-densities into ±inf and the scores into NaN.
MIN_STD = 1e-6


@dataclass
class LiRAConfig(Validated):
    """LiRA (Carlini et al. 2022), online (IN and OUT shadows) and offline (OUT only).

    ``variance``: per_sample (a variance per image), fixed (one global variance, the paper's
    variant for few shadows) or auto (fixed below 64 shadow models).
    """

    online: bool = flag(True)
    offline: bool = flag(True)
    variance: str = choice("auto", ("auto", "per_sample", "fixed"))
    signals: list = choices(["logits"], SIGNALS, doc=SIGNALS_DOC)

    def check(self) -> None:
        if not (self.online or self.offline):
            raise ValueError("online and offline are both false; enable one or drop lira from attack=[…]")


class GaussianFit:
    """Per-sample Gaussian fits of φ over the shadow models in one group (IN or OUT); also the
    per-record fits of attacks/privacy_tail.py.

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


def fitted_std(fit: GaussianFit, fallback_var: np.ndarray, fixed_variance: bool) -> np.ndarray:
    """(N, A) standard deviations: per-sample where ≥ 2 shadows, else (or if fixed) the global one."""
    global_var = fit.pooled_var if fit.pooled_var is not None else fallback_var
    if fixed_variance:
        var = np.broadcast_to(global_var, fit.mean.shape)
    else:
        var = np.where((fit.count >= 2)[:, None], fit.per_sample_var, global_var)
    return np.maximum(np.sqrt(var), MIN_STD)


def lira_attack(
    target_logits: np.ndarray,
    labels: np.ndarray,
    shadow_logits: np.ndarray,
    shadow_member: np.ndarray,
    *,
    online: bool = True,
    fixed_variance: bool = False,
) -> np.ndarray:
    """LiRA scores of the target's samples (the module docstring has the tests and fallbacks).

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
    target, labels, shadows, shadow_member = reference_queries(target_logits, labels, shadow_logits, shadow_member, "shadow")
    phi_target = logit_confidence(target, labels[:, None])  # (N, A)
    phi_shadow = logit_confidence(shadows, labels[:, None])  # (S, N, A)
    fit_out = GaussianFit(phi_shadow, ~shadow_member)
    if not (fit_out.count > 0).any():
        raise ValueError("shadow_member is True everywhere; LiRA needs shadow models that did not train on the samples")
    if not online:
        return _offline_scores(phi_target, phi_shadow, shadow_member, fit_out, fixed_variance)
    fit_in = GaussianFit(phi_shadow, shadow_member)
    if not (fit_in.count > 0).any():
        raise ValueError(
            "shadow_member is False everywhere; online LiRA needs IN shadows (use online=False for OUT-only shadows)"
        )
    return _online_scores(phi_target, phi_shadow, fit_in, fit_out, fixed_variance)


def _offline_scores(
    phi_target: np.ndarray, phi_shadow: np.ndarray, shadow_member: np.ndarray, fit_out: GaussianFit, fixed_variance: bool
) -> np.ndarray:
    """−log Pr[Z > T], T the standardised deviation from the OUT fits combined over the A queries."""
    has_out = fit_out.count > 0
    # The offline threat model never looks at IN shadows, not even for a fallback variance.
    std_out = fitted_std(fit_out, phi_shadow[~shadow_member].var(axis=0), fixed_variance)
    mean_out = np.where(has_out[:, None], fit_out.mean, fit_out.mean[has_out].mean(axis=0))
    standardised = ((phi_target - mean_out) / std_out).sum(axis=1) / np.sqrt(phi_target.shape[1])
    return -norm.logsf(standardised)


def _online_scores(
    phi_target: np.ndarray, phi_shadow: np.ndarray, fit_in: GaussianFit, fit_out: GaussianFit, fixed_variance: bool
) -> np.ndarray:
    """Σ_a log N(φ_a; μ_in, σ_in²) − log N(φ_a; μ_out, σ_out²), with the module's fallbacks."""
    has_in, has_out = fit_in.count > 0, fit_out.count > 0
    last_resort_var = phi_shadow.reshape(-1, phi_shadow.shape[-1]).var(axis=0)
    has_both = has_in & has_out
    if has_both.any():
        shift = (fit_in.mean[has_both] - fit_out.mean[has_both]).mean(axis=0)
    else:
        shift = fit_in.mean[has_in].mean(axis=0) - fit_out.mean[has_out].mean(axis=0)
    mean_in = np.where(has_in[:, None], fit_in.mean, fit_out.mean + shift)
    mean_out = np.where(has_out[:, None], fit_out.mean, fit_in.mean - shift)

    pooled_in = fit_in.pooled_var if fit_in.pooled_var is not None else fit_out.pooled_var
    pooled_out = fit_out.pooled_var if fit_out.pooled_var is not None else fit_in.pooled_var
    std_in = fitted_std(fit_in, pooled_in if pooled_in is not None else last_resort_var, fixed_variance)
    std_out = fitted_std(fit_out, pooled_out if pooled_out is not None else last_resort_var, fixed_variance)

    log_ratio = norm.logpdf(phi_target, mean_in, std_in) - norm.logpdf(phi_target, mean_out, std_out)
    return log_ratio.sum(axis=1)

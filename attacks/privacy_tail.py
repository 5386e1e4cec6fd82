"""The privacy tail: the share of training records whose own membership risk is high, against chance.

An AUC averaged over a dataset can sit near chance while a few records are exposed almost surely
(Knolle et al., Nature 2026: aggregate AUC near chance, about 1 in 10,000 patients with a per-record
AUC of 0.975). This module measures the tail from the LiRA evaluation protocol (Carlini et al.,
IEEE S&P 2022): M models, each trained on a random half of a pool of N records, so that each record
is "in" about half of the models and "out" of the others. With s_mj the score of record j against
model m (by default LiRA's scaled confidence φ = log(p_y / (1 − p_y)), averaged over the queries,
:func:`record_scores`) and I_j (O_j) its n_in (n_out) models that had (had not) it:

* **per-record AUC** (:func:`medprivbench.attacks.mia_metrics.per_record_auc`): the Mann–Whitney
  statistic of {s_mj : m ∈ I_j} against {s_mj : m ∈ O_j}; ties count ½;
* **per-record Gaussian risk** (:func:`per_record_tpr`): LiRA's per-record Gaussians
  N(μ_in,j, σ_in,j²) and N(μ_out,j, σ_out,j²) fitted to the in and out scores
  (:class:`medprivbench.attacks.lira.GaussianFit`); the test that calls record j a member when its
  score exceeds the OUT Gaussian's 1 − f quantile t_j = μ_out,j + σ_out,j·Φ⁻¹(1 − f) has false
  positive rate f (0.1% by default) and true positive rate

      TPR_j = 1 − Φ((t_j − μ_in,j)/σ_in,j) = Φ((μ_in,j − μ_out,j − σ_out,j·Φ⁻¹(1 − f))/σ_in,j),

  the one-sided test of offline LiRA, which is the likelihood-ratio test itself when σ_in = σ_out
  and μ_in > μ_out. Variances as LiRA's: ``fixed_variance`` (the default below 64 models, LiRA's
  choice for few shadows) gives one pooled variance per group, Σ_j Σ_{m in group} (s_mj − μ_j)² /
  Σ_j (n_j − 1); otherwise per-record unbiased variances where a group has ≥ 2 models, else the
  pooled one; standard deviations are floored at 1e-6 (``lira.MIN_STD``).
* **shares** (:func:`share_above`): k/n, the share of the n records with both in and out models
  whose AUC_j ≥ a (0.95) or TPR_j ≥ b (0.5), with its two-sided Clopper–Pearson interval over
  records, B⁻¹(α/2; k, n − k + 1) … B⁻¹(1 − α/2; k + 1, n − k) (``scipy.stats.binomtest``);
* **what chance alone gives** (:func:`privacy_tail`): the same shares with each record's membership
  column permuted across the models (every record keeps its n_in; R seeded permutations, 20 by
  default), reported as the mean null share and its 95% quantile. With few models per-record
  estimates are coarse (with n_in = n_out = 3, AUC_j = 1 has chance 1/C(6, 3) = 1/20), so many
  records pass a threshold by chance alone; the null shows how many. Permuting keeps every model's
  scores, so effects shared by all records of one model stay in the null too.

A share beats chance when its interval's lower end lies above the null's 95% quantile.

Pure: arrays in, arrays and numbers out; ground truth (``member``) enters only here, as in
:mod:`.mia_metrics`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import binomtest, norm

from .lira import FIXED_VARIANCE_BELOW, GaussianFit, fitted_std, fixed_variance_for  # noqa: F401  (re-exported)
from .membership_signals import check_labels, logit_confidence, membership_matrix, stacked_queries
from .mia_metrics import per_record_auc
from .settings import Validated, choice, integer, real

NULL_QUANTILE = 0.95  # the null's upper quantile a share must exceed
CRITERIA = ("auc", "tpr")


@dataclass
class PrivacyTailConfig(Validated):
    """The privacy tail: share of records with per-record AUC ≥ ``auc_threshold`` and with per-record
    TPR at FPR ``fpr`` ≥ ``tpr_threshold``, against ``permutations`` membership permutations.

    ``variance``: fixed (one pooled variance per group), per_record, or auto (fixed below 64 models).
    ``most_exposed``: how many of the most exposed record indices to record (indices only).
    """

    auc_threshold: float = real(0.95, 0.5, 1.0, low_open=True)
    tpr_threshold: float = real(0.5, 0.0, 1.0, low_open=True)
    fpr: float = real(0.001, 0.0, 0.5, low_open=True, high_open=True)
    permutations: int = integer(20, 2)
    variance: str = choice("auto", ("auto", "per_record", "fixed"))
    most_exposed: int = integer(10, 0)

    def check(self) -> None:
        if self.tpr_threshold <= self.fpr:
            raise ValueError(f"tpr_threshold={self.tpr_threshold} is not above fpr={self.fpr}; "
                             "a record at chance already has TPR = FPR")


def record_scores(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(M, N) scores: LiRA's scaled confidence φ of each model on each record, averaged over queries.

    ``logits``: (M, N, K) or (M, N, A, K); ``labels``: (N,) integer classes.
    """
    logits = stacked_queries(logits, "logits")
    labels = check_labels(labels, logits.shape[1], logits.shape[-1])
    return logit_confidence(logits, labels[:, None]).mean(axis=-1)


@dataclass(frozen=True)
class RecordRisk:
    """Per-record risk of N records; NaN for a record never in or never out of a model."""

    auc: np.ndarray  # (N,) per-record AUC
    tpr: np.ndarray  # (N,) per-record TPR at the FPR of the test
    n_in: np.ndarray  # (N,) models that trained on the record
    n_out: np.ndarray  # (N,)

    def values(self, criterion: str) -> np.ndarray:
        return {"auc": self.auc, "tpr": self.tpr}[criterion]


def per_record_tpr(scores: np.ndarray, member: np.ndarray, *, fpr: float, fixed_variance: bool) -> np.ndarray:
    """TPR_j at FPR ``fpr`` of the per-record Gaussian test (module docstring); (N,), NaN where undefined."""
    phi = scores[..., None]  # one query axis, as LiRA's fits expect
    fit_in, fit_out = GaussianFit(phi, member), GaussianFit(phi, ~member)
    everything = scores.reshape(-1).var()[None]  # last resort: neither group has a record with 2 models
    pooled_in = fit_in.pooled_var if fit_in.pooled_var is not None else fit_out.pooled_var
    pooled_out = fit_out.pooled_var if fit_out.pooled_var is not None else fit_in.pooled_var
    std_in = fitted_std(fit_in, pooled_in if pooled_in is not None else everything, fixed_variance)[:, 0]
    std_out = fitted_std(fit_out, pooled_out if pooled_out is not None else everything, fixed_variance)[:, 0]
    threshold = fit_out.mean[:, 0] + std_out * norm.isf(fpr)
    tpr = norm.sf((threshold - fit_in.mean[:, 0]) / std_in)
    return np.where((fit_in.count > 0) & (fit_out.count > 0), tpr, np.nan)


def record_risk(scores: np.ndarray, member: np.ndarray, *, fpr: float, fixed_variance: bool) -> RecordRisk:
    """Per-record AUC and Gaussian TPR of (M, N) ``scores`` under (M, N) ``member``."""
    auc, n_in, n_out = per_record_auc(scores, member)
    return RecordRisk(auc, per_record_tpr(scores, member, fpr=fpr, fixed_variance=fixed_variance), n_in, n_out)


def share_above(values: np.ndarray, threshold: float, confidence: float) -> tuple[float, int, int, list[float]]:
    """(share, k, n, [lo, hi]): of the n finite ``values``, the share k/n at or above ``threshold``,
    with its two-sided Clopper–Pearson interval at ``confidence``."""
    finite = values[np.isfinite(values)]
    n, k = int(finite.size), int((finite >= threshold).sum())
    if n == 0:
        return float("nan"), 0, 0, [float("nan"), float("nan")]
    ci = binomtest(k, n).proportion_ci(confidence_level=confidence, method="exact")
    return k / n, k, n, [float(ci.low), float(ci.high)]


def share_key(criterion: str, threshold: float) -> str:
    """The name of one share: 'auc_ge_0.95', 'tpr_ge_0.5'."""
    return f"{criterion}_ge_{threshold:g}"


@dataclass(frozen=True)
class TailShare:
    """One threshold's share of records, its interval, and what chance gives (null over permutations)."""

    criterion: str  # "auc" or "tpr"
    threshold: float
    share: float
    count: int
    n_records: int
    ci: list[float]
    null_shares: list[float]
    null_mean: float
    null_upper: float  # the null's NULL_QUANTILE quantile

    @property
    def beats_chance(self) -> bool:
        return self.ci[0] > self.null_upper


@dataclass(frozen=True)
class TailAnalysis:
    observed: RecordRisk
    null: list[RecordRisk]  # one per permutation
    shares: dict[str, TailShare]  # share_key -> share
    fixed_variance: bool
    fpr: float
    confidence: float
    null_quantile: float = NULL_QUANTILE

    def most_exposed(self, k: int) -> np.ndarray:
        """Indices of the ``k`` records of highest TPR_j (ties: higher AUC_j) among those with both."""
        auc, tpr = self.observed.auc, self.observed.tpr
        defined = np.flatnonzero(np.isfinite(auc) & np.isfinite(tpr))
        order = np.lexsort((-auc[defined], -tpr[defined]))
        return defined[order[:k]]


def permuted_risks(scores: np.ndarray, member: np.ndarray, *, permutations: int, seed: int, fpr: float,
                   fixed_variance: bool) -> list[RecordRisk]:
    """Record risk with each record's membership permuted across models (its n_in kept), R times."""
    rng = np.random.default_rng(seed)
    return [record_risk(scores, rng.permuted(member, axis=0), fpr=fpr, fixed_variance=fixed_variance)
            for _ in range(permutations)]


def privacy_tail(scores: np.ndarray, member: np.ndarray, *, auc_threshold: float = 0.95, tpr_threshold: float = 0.5,
                 fpr: float = 0.001, permutations: int = 20, fixed_variance: bool = True, confidence: float = 0.95,
                 seed: int = 0) -> TailAnalysis:
    """The privacy tail of (M, N) ``scores`` (higher = more like a member) under (M, N) bool ``member``.

    Returns the per-record risk, its null under ``permutations`` membership permutations (seeded by
    ``seed``), and for each threshold the observed share with its Clopper–Pearson interval at
    ``confidence``, the null's mean share and its 95% quantile (module docstring).
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2 or scores.shape[0] < 2:
        raise ValueError(f"scores has shape {scores.shape}; expected (models, records) with at least 2 models")
    if not np.all(np.isfinite(scores)):
        raise ValueError("scores contain NaN or infinite values; expected finite scores")
    member = membership_matrix(member, scores.shape, "member")
    if not (0.0 < fpr < 1.0 and 0.0 < confidence < 1.0 and permutations >= 1):
        raise ValueError(f"fpr={fpr}, confidence={confidence}, permutations={permutations}; "
                         "expected fpr and confidence in (0, 1) and at least 1 permutation")
    observed = record_risk(scores, member, fpr=fpr, fixed_variance=fixed_variance)
    null = permuted_risks(scores, member, permutations=permutations, seed=seed, fpr=fpr, fixed_variance=fixed_variance)
    shares = {}
    for criterion, threshold in (("auc", auc_threshold), ("tpr", tpr_threshold)):
        share, k, n, ci = share_above(observed.values(criterion), threshold, confidence)
        nulls = [share_above(r.values(criterion), threshold, confidence)[0] for r in null]
        shares[share_key(criterion, threshold)] = TailShare(
            criterion, float(threshold), share, k, n, ci, nulls, float(np.mean(nulls)),
            float(np.quantile(nulls, NULL_QUANTILE)))
    return TailAnalysis(observed, null, shares, fixed_variance, float(fpr), float(confidence))

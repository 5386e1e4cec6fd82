"""The Python API's audit of outputs a user already has: the loss attack on their losses or logits.

:func:`audit_outputs` is ``medprivbench.audit_outputs`` (and what ``medprivbench-audit`` runs on
arrays): no model, no retraining, only each sample's membership and its loss or logits. The inputs
come from the user, so they are checked here, once, and any problem is a :class:`ConfigError`
with one line that names the array and says what would be valid; the attack, its ROC metrics and
the empirical ε are the attack modules' own.
"""

from __future__ import annotations

import numpy as np

from medprivbench.attacks.auditing import empirical_epsilon
from medprivbench.attacks.membership import loss_attack
from medprivbench.attacks.mia_metrics import roc_metrics
from medprivbench.benchmark.errors import ConfigError


def audit_outputs(
    member: np.ndarray,
    *,
    logits: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    losses: np.ndarray | None = None,
    delta: float = 1e-5,
    alpha: float = 0.05,
    seed: int = 0,
) -> dict:
    """Membership attack on outputs you already have (no model, no retraining).

    Give each sample's membership (``member``: True = in the training set) and either its
    per-sample ``losses`` or its ``logits`` with ``labels`` (the loss is then the cross-entropy).
    The loss-threshold attack scores each sample by −loss; returned are its ROC metrics (AUC,
    TPR at 0.1 % and 1 % FPR, with bootstrap intervals at 1 − ``alpha``) and an empirical ε lower
    bound at confidence 1 − ``alpha`` (threshold chosen on one half, counted on the other).

    Example::

        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> member = rng.random(2000) < 0.5
        >>> losses = rng.exponential(np.where(member, 0.5, 1.0))
        >>> result = audit_outputs(member, losses=losses)
        >>> 0.6 < result["auc"] < 0.75
        True
    """
    return loss_audit(member, logits=logits, labels=labels, losses=losses, delta=delta, alpha=alpha, seed=seed)[0]


def loss_audit(member, *, logits=None, labels=None, losses=None, delta: float = 1e-5, alpha: float = 0.05,
               seed: int = 0) -> tuple[dict, np.ndarray]:
    """:func:`audit_outputs`' result and the loss attack's score of each sample (−loss)."""
    member = _checked_member(member)
    if (losses is None) == (logits is None):
        raise ConfigError("give either losses or logits (with labels), not both and not neither")
    scores = _scores_of_losses(losses, member) if losses is not None else _scores_of_logits(logits, labels, member)
    result = attack_metrics("loss", scores, member, alpha=alpha, seed=seed)
    bound = empirical_epsilon(scores, member, delta, alpha=alpha, seed=seed)
    result.update({"epsilon_lb": bound["epsilon_lb"], "delta": delta, "alpha": alpha})
    return result, scores


def attack_metrics(attack: str, scores: np.ndarray, member: np.ndarray, *, alpha: float, seed: int) -> dict:
    """One attack's ROC metrics on one target (:func:`~medprivbench.attacks.mia_metrics.roc_metrics`):
    AUC and TPR at 0.1 % and 1 % FPR, each with a bootstrap interval at confidence 1 − ``alpha``
    (members and non-members resampled apart), and the ROC curve."""
    metrics = roc_metrics(scores, member, fpr_levels=(0.001, 0.01), seed=seed, confidence=1.0 - alpha)
    return {
        "attack": attack, "n_members": int(member.sum()), "n_nonmembers": int((~member).sum()),
        "auc": metrics["auc"], "auc_ci": metrics["auc_ci"],
        "tpr_at_0.1%fpr": metrics["tpr_at_fpr"][0], "tpr_at_1%fpr": metrics["tpr_at_fpr"][1],
        "tpr_at_fpr_ci": metrics["tpr_at_fpr_ci"], "roc_curve": metrics["roc_curve"],
    }


def _checked_member(member) -> np.ndarray:
    """``member`` as a bool array: 1-D, 0/1 or booleans, with both members and non-members."""
    member = np.asarray(member)
    if member.ndim != 1 or member.dtype.kind not in "bui" or not np.isin(member, (0, 1)).all():
        raise ConfigError(f"member must be a 1-D array of 0/1 or booleans, one per sample; got shape {member.shape}, "
                          f"dtype {member.dtype}")
    member = member.astype(bool)
    if member.all() or not member.any():
        raise ConfigError("member must mark both members and non-members (found only one kind)")
    return member


def _scores_of_losses(losses, member: np.ndarray) -> np.ndarray:
    """The loss attack's scores −loss, from one finite loss per sample."""
    losses = np.asarray(losses, dtype=np.float64)
    if losses.shape != member.shape:
        raise ConfigError(f"losses has shape {losses.shape}; expected {member.shape}, one loss per sample")
    if not np.isfinite(losses).all():
        raise ConfigError(f"losses holds {int((~np.isfinite(losses)).sum())} NaN or infinite values; every loss must be finite")
    return -losses


def _scores_of_logits(logits, labels, member: np.ndarray) -> np.ndarray:
    """The loss attack's scores (−cross-entropy), from finite (n, n_classes) logits and each sample's true class."""
    logits = np.asarray(logits, dtype=np.float64)
    if labels is None:
        raise ConfigError("logits need labels (the true class of each sample)")
    if logits.ndim != 2 or len(logits) != len(member):
        raise ConfigError(f"logits has shape {logits.shape}; expected ({len(member)}, n_classes)")
    if not np.isfinite(logits).all():
        raise ConfigError(f"logits holds {int((~np.isfinite(logits)).sum())} NaN or infinite values; every logit must be finite")
    try:
        return loss_attack(logits, np.asarray(labels))
    except ValueError as exc:
        raise ConfigError(str(exc).splitlines()[0]) from exc

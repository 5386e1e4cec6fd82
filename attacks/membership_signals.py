"""What membership attacks read from models: logits arrays, validated once, and the LiRA signal φ.

Array conventions of every membership attack (the LiRA evaluation protocol: M models trained on
random halves of a pool of N samples, each model in turn the target and the rest its
shadows/references):

- ``logits[m, i, k]`` for model m, sample i, class k, or ``logits[m, i, a, k]`` with an
  augmentation axis of A queries per sample (e.g. the image and its horizontal flip);
- ``labels[i]`` the true class of sample i;
- ``member[m, i]`` True when sample i was in the training set of model m.

The checks below run at the attacks' public entry points (:mod:`.membership`, :mod:`.lira`,
:mod:`.rmia`) and raise one ValueError that names the bad array and says what would be valid.
"""

from __future__ import annotations

import numpy as np

# What a membership attack reads per image (``signals`` of its settings): a classifier's class
# logits, or a segmenter's per-image loss or Dice given as two-class pseudo-logits.
SIGNALS = ("logits", "loss", "dice")
SIGNALS_DOC = "per-image signals scored: logits (a classifier), loss and/or dice (a segmenter)"


def check_labels(labels: np.ndarray, n_samples: int, n_classes: int) -> np.ndarray:
    """``labels`` as an integer array (N,) of class indices in [0, K − 1], or a ValueError."""
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


def model_queries(logits: np.ndarray, name: str) -> np.ndarray:
    """One model's logits as float64 (N, A, K): (N, K) gains an augmentation axis of length 1."""
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim == 2:
        logits = logits[:, None, :]
    if logits.ndim != 3:
        raise ValueError(f"{name} has shape {logits.shape}; expected (N, K) or (N, A, K)")
    _check_logits_values(logits, name)
    return logits


def stacked_queries(logits: np.ndarray, name: str) -> np.ndarray:
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


def membership_matrix(member: np.ndarray, shape: tuple[int, int], name: str) -> np.ndarray:
    """``member`` as a bool array of the given (models, samples) shape, or a ValueError."""
    member = np.asarray(member)
    if member.shape != shape:
        raise ValueError(f"{name} has shape {member.shape}; expected {shape} (models, samples)")
    if member.dtype != np.bool_:
        raise ValueError(f"{name} has dtype {member.dtype}; expected bool")
    return member


def reference_queries(
    target_logits: np.ndarray, labels: np.ndarray, reference_logits: np.ndarray, reference_member: np.ndarray, name: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The inputs of a reference-model attack, validated together.

    Returns ``(target (N, A, K), labels (N,), references (R, N, A, K), reference_member (R, N))``;
    ``name`` ("shadow" or "reference") names the reference arrays in the messages.
    """
    target = model_queries(target_logits, "target_logits")
    references = stacked_queries(reference_logits, f"{name}_logits")
    if references.shape[1:] != target.shape:
        raise ValueError(
            f"{name}_logits has per-model shape {references.shape[1:]}; expected {target.shape} like target_logits"
        )
    labels = check_labels(labels, target.shape[0], target.shape[-1])
    reference_member = membership_matrix(reference_member, references.shape[:2], f"{name}_member")
    return target, labels, references, reference_member


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

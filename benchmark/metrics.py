"""Utility metrics of a classifier (scikit-learn implementations).

Accuracy, balanced accuracy, AUROC (one-vs-rest, macro-averaged, for more than two classes),
Matthews correlation coefficient, and for binary tasks sensitivity (recall of class 1) and
specificity (recall of class 0). Computed on test and on train: the gap between them is what
membership inference exploits.
"""

from __future__ import annotations

import numpy as np
from scipy.special import softmax
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    matthews_corrcoef,
    recall_score,
    roc_auc_score,
)


def utility_metrics(logits: np.ndarray, labels: np.ndarray, n_classes: int) -> dict[str, float]:
    probs = softmax(logits.astype(np.float64), axis=1)
    pred = probs.argmax(axis=1)
    out = {
        "accuracy": float(accuracy_score(labels, pred)),
        "balanced_accuracy": float(balanced_accuracy_score(labels, pred)),
        "mcc": float(matthews_corrcoef(labels, pred)),
    }
    present = np.unique(labels)
    if len(present) < 2:
        out["auroc"] = float("nan")  # undefined with one class present
    elif n_classes == 2:
        out["auroc"] = float(roc_auc_score(labels, probs[:, 1]))
    else:
        out["auroc"] = float(
            roc_auc_score(labels, probs, multi_class="ovr", average="macro", labels=np.arange(n_classes))
        )
    if n_classes == 2:
        out["sensitivity"] = float(recall_score(labels, pred, pos_label=1, zero_division=0))
        out["specificity"] = float(recall_score(labels, pred, pos_label=0, zero_division=0))
    loss = -np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-12, None))
    out["loss"] = float(loss.mean())
    return out


def per_class_accuracy(logits: np.ndarray, labels: np.ndarray, class_names) -> dict[str, float]:
    pred = logits.argmax(axis=1)
    return {
        str(name): float((pred[labels == k] == k).mean()) if (labels == k).any() else float("nan")
        for k, name in enumerate(class_names)
    }

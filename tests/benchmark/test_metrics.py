"""benchmark/metrics.py on toy predictions: every utility metric against a count by hand, a brute-force
pairwise AUROC and scikit-learn."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from sklearn.metrics import matthews_corrcoef, roc_auc_score

from medprivbench.benchmark.metrics import per_class_accuracy, utility_metrics


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def _pairwise_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """P(score of a positive > score of a negative), ties ½: the AUROC by brute force."""
    pos, neg = scores[positive], scores[~positive]
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(wins / (len(pos) * len(neg)))


# Binary toy: 8 images, predictions chosen so that every cell of the confusion matrix is filled.
BINARY_LABELS = np.array([0, 0, 0, 0, 0, 1, 1, 1])
BINARY_LOGITS = np.array([[2.0, 0.0], [1.0, 0.5], [0.0, 1.0], [3.0, -1.0], [0.2, 0.1],
                          [0.0, 2.0], [1.0, 0.0], [-1.0, 1.5]])


def test_binary_metrics_equal_their_counts():
    out = utility_metrics(BINARY_LOGITS, BINARY_LABELS, 2)
    pred = BINARY_LOGITS.argmax(1)  # [0, 0, 1, 0, 0, 1, 0, 1]
    tp, fn = 2, 1  # class 1: images 5 and 7 found, 6 missed
    tn, fp = 4, 1  # class 0: image 2 called positive
    assert ((pred == 1) & (BINARY_LABELS == 1)).sum() == tp and ((pred == 0) & (BINARY_LABELS == 0)).sum() == tn
    assert out["accuracy"] == pytest.approx((tp + tn) / 8)
    assert out["sensitivity"] == pytest.approx(tp / (tp + fn))
    assert out["specificity"] == pytest.approx(tn / (tn + fp))
    assert out["balanced_accuracy"] == pytest.approx((tp / (tp + fn) + tn / (tn + fp)) / 2)
    mcc = (tp * tn - fp * fn) / math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    assert out["mcc"] == pytest.approx(mcc)
    probs = _softmax(BINARY_LOGITS)
    assert out["auroc"] == pytest.approx(_pairwise_auc(probs[:, 1], BINARY_LABELS == 1))
    assert out["auroc"] == pytest.approx(roc_auc_score(BINARY_LABELS, probs[:, 1]))
    assert out["loss"] == pytest.approx(-np.mean(np.log(probs[np.arange(8), BINARY_LABELS])))
    assert set(out) == {"accuracy", "balanced_accuracy", "mcc", "auroc", "sensitivity", "specificity", "loss"}


def test_auroc_ranks_by_probability_not_by_the_raw_class_one_logit():
    # the negative image 0 has the larger class-1 logit, the positive image 1 the larger probability
    logits = np.array([[5.0, 4.9], [0.0, 0.5], [-3.0, 3.0], [3.0, -3.0]])
    labels = np.array([0, 1, 1, 0])
    out = utility_metrics(logits, labels, 2)
    assert out["auroc"] == pytest.approx(1.0)
    assert _pairwise_auc(logits[:, 1], labels == 1) < 1.0


def test_multiclass_metrics_against_brute_force_and_sklearn():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 15)
    logits = rng.normal(size=(60, 4)) + 1.5 * np.eye(4)[labels]  # informative but imperfect
    out = utility_metrics(logits, labels, 4)
    probs, pred = _softmax(logits), logits.argmax(1)
    assert out["accuracy"] == pytest.approx((pred == labels).mean())
    recalls = [(pred[labels == k] == k).mean() for k in range(4)]
    assert out["balanced_accuracy"] == pytest.approx(np.mean(recalls))
    assert out["mcc"] == pytest.approx(matthews_corrcoef(labels, pred))
    # macro one-vs-rest: the mean over classes of the class's probability AUROC against the others
    ovr = np.mean([_pairwise_auc(probs[:, k], labels == k) for k in range(4)])
    assert out["auroc"] == pytest.approx(ovr)
    assert out["auroc"] == pytest.approx(roc_auc_score(labels, probs, multi_class="ovr", average="macro"))
    assert "sensitivity" not in out and "specificity" not in out  # binary tasks only
    assert out["loss"] == pytest.approx(-np.mean(np.log(probs[np.arange(60), labels])))


def test_auroc_is_nan_when_one_class_is_present():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = utility_metrics(BINARY_LOGITS[:5], BINARY_LABELS[:5], 2)
    assert math.isnan(out["auroc"])
    assert out["specificity"] == pytest.approx(4 / 5) and out["sensitivity"] == 0.0  # no positives: 0, not an error


def test_loss_stays_finite_for_a_confidently_wrong_prediction():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # one class present
        out = utility_metrics(np.array([[1000.0, -1000.0], [-1000.0, 1000.0]]), np.array([1, 1]), 2)
    assert math.isfinite(out["loss"]) and out["loss"] == pytest.approx(-math.log(1e-12) / 2)


def test_per_class_accuracy_is_each_classs_recall_by_name():
    labels = np.array([0, 0, 0, 1, 1, 2])
    logits = np.eye(4)[[0, 1, 0, 1, 1, 0]]  # class 0: 2/3 right, class 1: 2/2, class 2: 0/1, class 3 absent
    out = per_class_accuracy(logits, labels, ["normal", "benign", "malignant", "other"])
    assert list(out) == ["normal", "benign", "malignant", "other"]
    assert out["normal"] == pytest.approx(2 / 3) and out["benign"] == 1.0 and out["malignant"] == 0.0
    assert math.isnan(out["other"])
    assert per_class_accuracy(logits, labels, [0, 1, 2, 3]).keys() == {"0", "1", "2", "3"}  # names as text

"""What a run learns: classification (one label per image) or segmentation (one label per pixel).

A :class:`Task` holds everything that depends on it: the training loss, the utility metrics and
the headline metric the report sets against ε, the per-class utility, and the per-image signals
the membership attacks read. ``task=segmentation`` (configs/task/) selects the segmenter; a
dataset says which it serves (``DatasetInfo.task``: ``binary``/``multiclass`` or ``segmentation``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn

from . import segmentation as seg
from .errors import ConfigError
from .metrics import per_class_accuracy, utility_metrics

TASKS = ("classification", "segmentation")
SEGMENTERS = ("unet",)  # the models that output a label per pixel (benchmark/unet.py)
LOGITS = "logits"  # a classifier's one membership signal: its class logits


@dataclass(frozen=True)
class Task:
    name: str
    headline: str  # the utility metric set against ε (a key of the utility dict)
    headline_label: str
    second: str  # the second utility metric of the report's figure and tables
    second_label: str
    signals: tuple[str, ...]  # the per-image membership signals the task offers, default first

    @property
    def segmentation(self) -> bool:
        return self.name == "segmentation"

    def criterion(self, reduction: str = "mean") -> nn.Module:
        """The training loss (a criterion Opacus can wrap: ``reduction="none"`` gives one loss per image)."""
        return seg.SegmentationLoss(reduction) if self.segmentation else nn.CrossEntropyLoss(reduction=reduction)

    def utility(self, logits: np.ndarray, labels: np.ndarray, class_names) -> dict[str, float]:
        if self.segmentation:
            return seg.segmentation_metrics(logits, labels, class_names)
        return utility_metrics(logits, labels, len(class_names))

    def per_class(self, logits: np.ndarray, labels: np.ndarray, class_names) -> dict[str, float]:
        """Per-class utility: accuracy of each class, or each class's mean Dice."""
        if self.segmentation:
            return seg.per_class_dice(logits, labels, class_names)
        return per_class_accuracy(logits, labels, class_names)

    def headline_of(self, logits: np.ndarray, labels: np.ndarray) -> float:
        """The headline metric alone (a pool model's test accuracy or Dice), cheaply."""
        if self.segmentation:
            dice, _ = seg.dice_iou(logits.argmax(1), labels, logits.shape[1])
            return float(dice[:, 1:].mean())
        return float((logits.argmax(1) == labels).mean())

    def image_signals(self, logits: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
        """Per-image membership signals as logits (N, K): a classifier's own logits, or a segmenter's
        per-image loss and Dice as two-class pseudo-logits (benchmark/segmentation.py), true class 0."""
        if self.segmentation:
            return seg.image_signals(torch.from_numpy(logits), torch.from_numpy(labels))
        return {LOGITS: logits}

    def signal_labels(self, labels: np.ndarray) -> np.ndarray:
        """The "true class" of each image under the signals: its label, or 0 for the pseudo-logits."""
        return np.zeros(len(labels), dtype=np.int64) if self.segmentation else np.asarray(labels)


CLASSIFICATION = Task("classification", "accuracy", "test accuracy", "auroc", "test AUROC", (LOGITS,))
SEGMENTATION = Task("segmentation", "dice", "test Dice", "iou", "test IoU", seg.SIGNALS)
_BY_NAME = {t.name: t for t in (CLASSIFICATION, SEGMENTATION)}


def get(name: str) -> Task:
    if name not in _BY_NAME:
        raise ConfigError(f"task={name!r} is not valid; choose one of {', '.join(TASKS)}")
    return _BY_NAME[name]


def of_config(cfg) -> Task:
    """The task a run configuration names (``task``; classification where it names none)."""
    return get(str(cfg.get("task") or "classification"))


SEGMENTATION_DATASETS = ("phantom2d", "phantom3d", "segfolder")  # the loaders that give masks (datasets/)


def check_config(cfg) -> None:
    """``task``, ``model.name`` and ``dataset.name`` of a run configuration agree."""
    dataset = str(cfg.dataset.name)
    check(of_config(cfg).name, str(cfg.model.name),
          "segmentation" if dataset in SEGMENTATION_DATASETS else "classification", dataset)


def check(task: str, model: str, dataset_task: str | None, dataset: str) -> None:
    """The task, the model and the data must agree (one line naming the mismatch and the fix)."""
    t = get(task)
    if t.segmentation and model not in SEGMENTERS:
        raise ConfigError(f"model={model!r} is a classifier; task=segmentation needs a segmenter: "
                          f"model={' or '.join(SEGMENTERS)}")
    if not t.segmentation and model in SEGMENTERS:
        raise ConfigError(f"model={model!r} is a segmenter; use it with task=segmentation")
    if dataset_task is not None and (dataset_task == "segmentation") != t.segmentation:
        if t.segmentation:
            raise ConfigError(f"dataset={dataset!r} has one label per image, not masks; task=segmentation needs masks: "
                              "dataset=phantom2d, phantom3d or segfolder")
        raise ConfigError(f"dataset={dataset!r} holds segmentation masks; add task=segmentation")

"""Segmentation: the training loss, the utility metrics and the per-image signals of a segmenter.

A segmenter maps images (B, C, *spatial) to logits (B, K, *spatial); its labels are integer masks
(B, *spatial) with values 0 … K−1, class 0 the background. One image is one privacy unit: DP-SGD
clips the gradient of each image's loss, the loss of all its pixels together.

* **Loss** (:class:`SegmentationLoss`): per image, the mean pixel cross-entropy plus the soft Dice
  loss over the foreground classes (the Dice + CE loss of nnU-Net; Ziller et al. 2024 trained their
  liver U-Net on Dice). With ``reduction="none"`` it returns one loss per image (B,), which is what
  Opacus' ghost clipping asks of a criterion.
* **Metrics** (:func:`segmentation_metrics`): Dice and IoU per class and their mean over the
  foreground classes (MONAI's ``compute_dice`` / ``compute_iou`` on one-hot masks), pixel accuracy
  and the loss. An image where a class is absent from both the truth and the prediction counts as
  Dice 1 for that class (MONAI's ``ignore_empty=False``): the model was right not to draw it.
* **Per-image signals** (:func:`image_signals`) for membership inference: an image's loss and its
  Dice, each as a two-class pseudo-logit pair whose "true class" probability is exp(−loss) or the
  Dice, so that the loss attack, LiRA and RMIA read them exactly as they read a classifier's logits
  (the loss attack's score is then −loss, LiRA's scaled confidence log(p/(1−p))).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

SIGNALS = ("loss", "dice")  # a segmenter's per-image membership signals
_EPS = 1e-6  # soft Dice smoothing
_CLIP = 1e-6  # pseudo-probabilities kept inside (0, 1) so that their logits stay finite


def soft_dice_loss(logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """1 − soft Dice of each image, averaged over the foreground classes: (B,).

    Soft Dice of class k: 2 Σ p_k·y_k / (Σ p_k + Σ y_k), with p the softmax and y the one-hot mask,
    summed over the image's pixels (smoothed by 1e-6).
    """
    k = logits.shape[1]
    probs = torch.softmax(logits, dim=1)
    # one-hot by comparison, not F.one_hot, so that torch.func.vmap can take the loss per image
    classes = torch.arange(k, device=masks.device).view(1, k, *([1] * (masks.ndim - 1)))
    onehot = (masks.unsqueeze(1) == classes).to(probs.dtype)
    dims = tuple(range(2, logits.ndim))
    inter = (probs * onehot).sum(dims)
    denom = probs.sum(dims) + onehot.sum(dims)
    dice = (2 * inter + _EPS) / (denom + _EPS)  # (B, K)
    return 1.0 - dice[:, 1:].mean(dim=1)


class SegmentationLoss(nn.Module):
    """Per image: mean pixel cross-entropy + soft Dice loss over the foreground classes.

    ``reduction``: ``mean`` (over images), ``sum``, or ``none`` (one loss per image, (B,)).
    """

    def __init__(self, reduction: str = "mean"):
        super().__init__()
        self.reduction = reduction

    def forward(self, logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        if logits.ndim < 3 or masks.shape != logits.shape[:1] + logits.shape[2:]:
            raise ValueError(f"logits {tuple(logits.shape)} and masks {tuple(masks.shape)} do not match; expected "
                             "(B, K, *spatial) logits and (B, *spatial) masks")
        ce = F.cross_entropy(logits, masks.long(), reduction="none").flatten(1).mean(dim=1)
        per_image = ce + soft_dice_loss(logits, masks)
        if self.reduction == "none":
            return per_image
        if self.reduction == "sum":
            return per_image.sum()
        if self.reduction == "mean":
            return per_image.mean()
        raise ValueError(f"reduction={self.reduction!r} is not valid; use mean, sum or none")


def per_image_loss(logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """The training loss of each image: (B,)."""
    return SegmentationLoss("none")(logits, masks)


def dice_iou(pred: np.ndarray, masks: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Hard Dice and IoU of each image and class, (N, K) each, from predicted and true label maps
    (N, *spatial); a class absent from both counts 1 (MONAI's ``ignore_empty=False``)."""
    from monai.metrics import compute_dice, compute_iou

    pred_t = F.one_hot(torch.as_tensor(pred).long(), n_classes).movedim(-1, 1)
    true_t = F.one_hot(torch.as_tensor(masks).long(), n_classes).movedim(-1, 1)
    dice = compute_dice(pred_t, true_t, include_background=True, ignore_empty=False)
    iou = compute_iou(pred_t, true_t, include_background=True, ignore_empty=False)
    return dice.numpy().astype(np.float64), iou.numpy().astype(np.float64)


def segmentation_metrics(logits: np.ndarray, masks: np.ndarray, class_names) -> dict[str, float]:
    """Utility of a segmenter on one split: ``dice`` and ``iou`` (means over the foreground classes
    of the per-image values, averaged over images), ``dice_<class>`` and ``iou_<class>`` for every
    class, ``pixel_accuracy`` and ``loss`` (the training loss, mean over images)."""
    k = len(class_names)
    pred = logits.argmax(axis=1)
    dice, iou = dice_iou(pred, masks, k)
    out = {"dice": float(dice[:, 1:].mean()), "iou": float(iou[:, 1:].mean())}
    for j, name in enumerate(class_names):
        out[f"dice_{name}"] = float(dice[:, j].mean())
    for j, name in enumerate(class_names):
        out[f"iou_{name}"] = float(iou[:, j].mean())
    out["pixel_accuracy"] = float((pred == masks).mean())
    out["loss"] = float(per_image_loss(torch.from_numpy(logits).double(), torch.from_numpy(masks)).mean())
    return out


def per_class_dice(logits: np.ndarray, masks: np.ndarray, class_names) -> dict[str, float]:
    """Mean Dice of each class over the images."""
    dice, _ = dice_iou(logits.argmax(axis=1), masks, len(class_names))
    return {str(name): float(dice[:, j].mean()) for j, name in enumerate(class_names)}


def pseudo_logits(p: np.ndarray) -> np.ndarray:
    """Two-class logits (…, 2) whose softmax gives class 0 the probability ``p`` (clipped to (0, 1))."""
    p = np.clip(np.asarray(p, dtype=np.float64), _CLIP, 1.0 - _CLIP)
    return np.stack([np.log(p), np.log1p(-p)], axis=-1)


def image_signals(logits: torch.Tensor, masks: torch.Tensor) -> dict[str, np.ndarray]:
    """Each image's membership signals as pseudo-logits (B, 2), true class 0: ``loss`` with
    p = exp(−loss) and ``dice`` with p = the image's mean hard Dice over the foreground classes."""
    logits = logits.double()
    loss = per_image_loss(logits, masks).numpy()
    dice, _ = dice_iou(logits.argmax(1).numpy(), masks.numpy(), logits.shape[1])
    return {"loss": pseudo_logits(np.exp(-loss)), "dice": pseudo_logits(dice[:, 1:].mean(axis=1))}

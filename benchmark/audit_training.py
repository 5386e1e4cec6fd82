"""The one-run audit's extra training run (Steinke, Nasr, Jagielski 2023), with the target's recipe.

One model is trained on the training set plus m canaries made from held-out images, each included
independently with probability ½; the auditor sees only the final model's outputs on the canaries
and scores each (benchmark/audit_run.py turns the scores into an ε lower bound). The run uses the
target's DP recipe unchanged (σ, q, T, C), so its ε is the target's: q and T, not the size of the
member set, fix it. Its randomness comes from the ``audit`` model's streams (benchmark/streams.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from .recipe import DPRecipe
from .streams import Streams
from .training import predict_logits, train


def make_canaries(kind: str, x_held_out: np.ndarray, y_held_out: np.ndarray, n: int, n_classes: int, rng: np.random.Generator):
    """Canaries from held-out images (never in the training set).

    * ``mislabelled``: the image with a different label (the other class for binary tasks, a
      random other class otherwise). A model can fit such a label only by memorising the image,
      so included canaries score very differently from excluded ones: a strong audit on images.
    * ``ood``: the intensity-inverted image with a random label: out of distribution as well.

    Segmentation masks (``y_held_out`` of shape (N, *spatial)) change the same way for the whole
    mask: every pixel's class moves by the canary's shift (background becomes organ, …), and an
    ``ood`` canary's inverted image keeps its shifted mask.
    """
    n = min(n, len(y_held_out))
    pick = rng.choice(len(y_held_out), size=n, replace=False)
    x, y = x_held_out[pick], y_held_out[pick]
    shift = rng.integers(1, n_classes, size=n)  # never 0: the label always changes
    masks = y.ndim > 1
    if masks:
        shift = shift.reshape(-1, *([1] * (y.ndim - 1)))
    if kind == "mislabelled":
        return x.copy(), (y + shift) % n_classes
    return (1.0 - x).astype(np.float32), (y + shift) % n_classes if masks else rng.integers(0, n_classes, size=n)


@dataclass
class AuditRunResult:
    scores: np.ndarray  # (m,) higher = more likely included
    included: np.ndarray  # (m,) bool, ground truth, kept apart from the scores
    wall_time_s: float


def train_audit_run(
    *, build: Callable[[Streams], torch.nn.Module], x: torch.Tensor, y: torch.Tensor, canary_x: np.ndarray, canary_y: np.ndarray,
    recipe: DPRecipe, hp: dict, grad_sample_mode: str, streams: Streams, device,
    score: Callable[[np.ndarray, np.ndarray], np.ndarray],
    feature_fn: Callable[[torch.Tensor], torch.Tensor] | None = None, features: torch.Tensor | None = None,
    task: str = "classification",
) -> AuditRunResult:
    """Train once (the ``audit`` model's streams) on the training set plus each canary with
    probability ½ (drawn from its ``membership`` stream); score every canary."""
    start = time.perf_counter()
    included = streams.numpy("membership").random(len(canary_y)) < 0.5
    cx, cy = torch.from_numpy(canary_x), torch.from_numpy(canary_y.astype(np.int64))
    x_all = torch.cat([x, cx[torch.from_numpy(included)]])
    y_all = torch.cat([y, cy[torch.from_numpy(included)]])
    all_features = None
    if features is not None and feature_fn is not None:  # fixed-feature models: reuse the training set's features
        all_features = torch.cat([features, feature_fn(cx[torch.from_numpy(included)])])
    result = train(build(streams), x_all, y_all, recipe=recipe, hp=hp, grad_sample_mode=grad_sample_mode,
                   streams=streams, device=device, features=all_features, task=task)
    logits = predict_logits(result.model, cx, device=device)
    return AuditRunResult(scores=score(logits, canary_y), included=included, wall_time_s=time.perf_counter() - start)

"""Training the models that membership attacks and the one-run audit need, with the target's recipe.

* The **pool** (LiRA evaluation protocol, Carlini et al. 2022): M models, each trained on a random
  half of the training set. Membership is drawn independently for every (model, image) pair with
  probability ½, so each image is a member of about half of the models and — unlike a scheme that
  makes every image a member of exactly M/2 models — the shadows' membership carries no
  information about the target's. Each model in turn is the target; the others are its shadows.
* The **audit run** (Steinke, Nasr, Jagielski 2023): one model trained on the training set plus
  canaries, each included independently with probability ½.

Every model here uses the target's DP recipe unchanged: the same σ, q, T and C (q and T fix the
number of steps and the sampling rate, so a half-size member set simply has half the expected
batch size). Their ε is therefore the target's.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from .errors import ConfigError
from .training import DPRecipe, predict_logits, train

QUERIES: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "identity": lambda x: x,
    "hflip": lambda x: torch.flip(x, dims=(-1,)),
}


def check_queries(names) -> list[str]:
    names = list(names)
    bad = [n for n in names if n not in QUERIES]
    if bad or not names:
        raise ConfigError(f"membership.queries={names} is not valid; choose a non-empty list from {', '.join(QUERIES)}")
    return names


def query_logits(model, x: torch.Tensor, queries: list[str], device) -> np.ndarray:
    """Logits of every image under every query view: (N, A, K)."""
    return np.stack([predict_logits(model, QUERIES[q](x), device=device) for q in queries], axis=1)


@dataclass
class PoolResult:
    logits: np.ndarray  # (M, N, A, K) float32
    member: np.ndarray  # (M, N) bool
    labels: np.ndarray  # (N,)
    queries: list[str]
    wall_time_s: float
    test_accuracy: list[float] = field(default_factory=list)  # per pool model, on the test split

    @property
    def num_models(self) -> int:
        return self.member.shape[0]


def membership_matrix(num_models: int, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.random((num_models, n)) < 0.5


def train_pool(
    *, build: Callable[[int], torch.nn.Module], x: torch.Tensor, y: torch.Tensor, x_test: torch.Tensor, y_test: np.ndarray,
    recipe: DPRecipe, hp: dict, grad_sample_mode: str, num_models: int, queries: list[str], seed: int, device,
    progress: Callable | None = None, features: torch.Tensor | None = None,
) -> PoolResult:
    if num_models < 2:
        raise ConfigError(f"membership.num_models={num_models} is too small; membership attacks need at least 2 models")
    start = time.perf_counter()
    member = membership_matrix(num_models, len(y), seed=10_000 + seed)
    logits, test_acc = [], []
    for m in range(num_models):
        idx = torch.from_numpy(np.flatnonzero(member[m]))
        model_seed = seed * 1000 + m + 1
        result = train(build(model_seed), x[idx], y[idx], recipe=recipe, hp=hp, grad_sample_mode=grad_sample_mode,
                       seed=model_seed, device=device, features=None if features is None else features[idx])
        logits.append(query_logits(result.model, x, queries, device).astype(np.float32))
        test_acc.append(float((predict_logits(result.model, x_test, device=device).argmax(1) == y_test).mean()))
        if progress is not None:
            progress(m + 1, num_models)
    return PoolResult(
        logits=np.stack(logits), member=member, labels=y.numpy(), queries=queries,
        wall_time_s=time.perf_counter() - start, test_accuracy=test_acc,
    )


# ----------------------------------------------------------------------------- audit canaries
CANARY_KINDS = ("mislabelled", "ood")


def make_canaries(kind: str, x_held_out: np.ndarray, y_held_out: np.ndarray, n: int, n_classes: int, seed: int):
    """Canaries from held-out images (never in the training set).

    * ``mislabelled``: the image with a different label (the other class for binary tasks, a
      random other class otherwise). A model can fit such a label only by memorising the image,
      so included canaries score very differently from excluded ones: a strong audit on images.
    * ``ood``: the intensity-inverted image with a random label: out of distribution as well.
    """
    if kind not in CANARY_KINDS:
        raise ConfigError(f"attack.audit.canary={kind!r} is not valid; choose one of {', '.join(CANARY_KINDS)}")
    rng = np.random.default_rng(seed)
    n = min(n, len(y_held_out))
    pick = rng.choice(len(y_held_out), size=n, replace=False)
    x, y = x_held_out[pick], y_held_out[pick]
    shift = rng.integers(1, n_classes, size=n)  # never 0: the label always changes
    if kind == "mislabelled":
        return x.copy(), (y + shift) % n_classes
    return (1.0 - x).astype(np.float32), rng.integers(0, n_classes, size=n)


@dataclass
class AuditRunResult:
    scores: np.ndarray  # (m,) higher = more likely included
    included: np.ndarray  # (m,) bool, ground truth, kept apart from the scores
    wall_time_s: float


def train_audit_run(
    *, build: Callable[[int], torch.nn.Module], x: torch.Tensor, y: torch.Tensor, canary_x: np.ndarray, canary_y: np.ndarray,
    recipe: DPRecipe, hp: dict, grad_sample_mode: str, seed: int, device, score: Callable[[np.ndarray, np.ndarray], np.ndarray],
    feature_fn: Callable[[torch.Tensor], torch.Tensor] | None = None, features: torch.Tensor | None = None,
) -> AuditRunResult:
    """Train once on the training set plus each canary with probability ½; score every canary."""
    start = time.perf_counter()
    rng = np.random.default_rng(20_000 + seed)
    included = rng.random(len(canary_y)) < 0.5
    cx, cy = torch.from_numpy(canary_x), torch.from_numpy(canary_y.astype(np.int64))
    x_all = torch.cat([x, cx[torch.from_numpy(included)]])
    y_all = torch.cat([y, cy[torch.from_numpy(included)]])
    all_features = None
    if features is not None and feature_fn is not None:  # fixed-feature models: reuse the training set's features
        all_features = torch.cat([features, feature_fn(cx[torch.from_numpy(included)])])
    result = train(build(seed * 1000 + 999), x_all, y_all, recipe=recipe, hp=hp, grad_sample_mode=grad_sample_mode,
                   seed=seed * 1000 + 999, device=device, features=all_features)
    logits = predict_logits(result.model, cx, device=device)
    return AuditRunResult(scores=score(logits, canary_y), included=included, wall_time_s=time.perf_counter() - start)

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

import os
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from .streams import Streams
from .training import DPRecipe, predict_logits, train

QUERIES: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "identity": lambda x: x,
    "hflip": lambda x: torch.flip(x, dims=(-1,)),
}


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
    population_logits: np.ndarray | None = None  # (M, P, A, K): every model on held-out population images
    population_labels: np.ndarray | None = None  # (P,)

    @property
    def num_models(self) -> int:
        return self.member.shape[0]


def membership_matrix(num_models: int, n: int, rng: np.random.Generator) -> np.ndarray:
    return rng.random((num_models, n)) < 0.5


def cpu_cores() -> int:
    """The CPU cores this process may run on (its affinity where the system says, else all)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def pool_workers(setting: int, num_models: int, device) -> int:
    """Worker processes for the pool: ``shadow_workers`` (0 = automatic: one per CPU core on
    a CPU, capped at M; a GPU trains the models one after another in this process)."""
    if setting < 0:
        raise ValueError(f"shadow_workers={setting} is not valid; use 0 (automatic) or a positive number")
    if setting == 0:
        setting = 1 if torch.device(device).type != "cpu" else cpu_cores()
    return max(1, min(setting, num_models))


def _train_member(m: int, build: Callable[[Streams], torch.nn.Module], x: np.ndarray, y: np.ndarray, idx: np.ndarray,
                  x_test: np.ndarray, y_test: np.ndarray, x_population: np.ndarray, recipe: DPRecipe, hp: dict,
                  grad_sample_mode: str, queries: list[str], streams: Streams, device, features: np.ndarray | None,
                  threads: int | None) -> tuple[np.ndarray, np.ndarray, float]:
    """Pool model m: trained on rows ``idx`` from ``streams.of("pool", m)``; its logits on the
    training and population images and its test accuracy. Runs in this process or a worker."""
    if threads is not None:
        torch.set_num_threads(threads)
    # workers receive read-only memory maps, which torch cannot wrap; this process's arrays are used as they are
    tensor = lambda a: torch.from_numpy(a if a.flags.writeable else np.array(a))  # noqa: E731
    x_t = tensor(x)
    model_streams = streams.of("pool", m)
    result = train(build(model_streams), x_t[idx], tensor(y)[idx], recipe=recipe, hp=hp, grad_sample_mode=grad_sample_mode,
                   streams=model_streams, device=device, features=None if features is None else tensor(features)[idx])
    logits = query_logits(result.model, x_t, queries, device).astype(np.float32)
    population = query_logits(result.model, tensor(x_population), queries, device).astype(np.float32)
    accuracy = float((predict_logits(result.model, tensor(x_test), device=device).argmax(1) == y_test).mean())
    return logits, population, accuracy


def train_pool(
    *, build: Callable[[Streams], torch.nn.Module], x: torch.Tensor, y: torch.Tensor, x_test: torch.Tensor, y_test: np.ndarray,
    x_population: torch.Tensor, y_population: np.ndarray, recipe: DPRecipe, hp: dict, grad_sample_mode: str,
    num_models: int, queries: list[str], streams: Streams, device, progress: Callable | None = None,
    features: torch.Tensor | None = None, workers: int = 1,
) -> PoolResult:
    """Train the M pool models (role ``pool``, model m draws from ``streams.of("pool", m)``) and
    query each on the training images and on the population images (a split none of them saw).

    ``workers`` > 1 trains that many models at once in worker processes (joblib's loky backend),
    each with one thread: small models use one core poorly per thread, so M models on W cores
    go faster side by side than one after another on all of them. Each model draws only from its
    own streams, so its weights, and the records, do not depend on the number of workers (for a
    fixed number of threads per model: a test compares one worker with two). ``build`` must then
    pickle (``Context.model_builder``). Peak memory grows with W: each worker holds a copy of the
    training images and one model.
    """
    start = time.perf_counter()
    member = membership_matrix(num_models, len(y), streams.of("pool").numpy("membership"))
    arrays = dict(x=x.numpy(), y=y.numpy(), x_test=x_test.numpy(), y_test=np.asarray(y_test),
                  x_population=x_population.numpy(), features=None if features is None else features.numpy())
    common = dict(build=build, recipe=recipe, hp=hp, grad_sample_mode=grad_sample_mode, queries=queries,
                  streams=streams, device=device, **arrays)
    if workers <= 1:
        results = (_train_member(m, idx=np.flatnonzero(member[m]), threads=None, **common) for m in range(num_models))
    else:
        from joblib import Parallel, delayed

        parallel = Parallel(n_jobs=workers, backend="loky", return_as="generator")
        results = parallel(delayed(_train_member)(m, idx=np.flatnonzero(member[m]), threads=1, **common)
                           for m in range(num_models))
    logits, population, test_acc = [], [], []
    for m, (model_logits, model_population, accuracy) in enumerate(results):
        logits.append(model_logits)
        population.append(model_population)
        test_acc.append(accuracy)
        if progress is not None:
            progress(m + 1, num_models)
    return PoolResult(
        logits=np.stack(logits), member=member, labels=y.numpy(), queries=queries,
        wall_time_s=time.perf_counter() - start, test_accuracy=test_acc,
        population_logits=np.stack(population), population_labels=np.asarray(y_population),
    )


# ----------------------------------------------------------------------------- audit canaries
def make_canaries(kind: str, x_held_out: np.ndarray, y_held_out: np.ndarray, n: int, n_classes: int, rng: np.random.Generator):
    """Canaries from held-out images (never in the training set).

    * ``mislabelled``: the image with a different label (the other class for binary tasks, a
      random other class otherwise). A model can fit such a label only by memorising the image,
      so included canaries score very differently from excluded ones: a strong audit on images.
    * ``ood``: the intensity-inverted image with a random label: out of distribution as well.
    """
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
    *, build: Callable[[Streams], torch.nn.Module], x: torch.Tensor, y: torch.Tensor, canary_x: np.ndarray, canary_y: np.ndarray,
    recipe: DPRecipe, hp: dict, grad_sample_mode: str, streams: Streams, device,
    score: Callable[[np.ndarray, np.ndarray], np.ndarray],
    feature_fn: Callable[[torch.Tensor], torch.Tensor] | None = None, features: torch.Tensor | None = None,
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
                   streams=streams, device=device, features=all_features)
    logits = predict_logits(result.model, cx, device=device)
    return AuditRunResult(scores=score(logits, canary_y), included=included, wall_time_s=time.perf_counter() - start)

"""Training the pool of models that membership attacks need, with the target's recipe.

The **pool** (LiRA evaluation protocol, Carlini et al. 2022): M models, each trained on a random
half of the training set. Membership is drawn independently for every (model, image) pair with
probability ½, so each image is a member of about half of the models and — unlike a scheme that
makes every image a member of exactly M/2 models — the shadows' membership carries no
information about the target's. Each model in turn is the target; the others are its shadows.
(The one-run audit's extra model is trained by benchmark/audit_training.py.)

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

from .recipe import DPRecipe
from .streams import Streams
from .training import predict_logits, train

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


def draw_membership(num_models: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """Who is in which pool model: (M, N) booleans, each independently True with probability ½."""
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
                  threads: int | None, role: str = "pool") -> tuple[np.ndarray, np.ndarray, float]:
    """Pool model m: trained on rows ``idx`` from ``streams.of(role, m)``; its logits on the
    training and population images and its test accuracy. Runs in this process or a worker."""
    if threads is not None:
        torch.set_num_threads(threads)
    # workers receive read-only memory maps, which torch cannot wrap; this process's arrays are used as they are
    tensor = lambda a: torch.from_numpy(a if a.flags.writeable else np.array(a))  # noqa: E731
    x_t = tensor(x)
    model_streams = streams.of(role, m)
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
    features: torch.Tensor | None = None, workers: int = 1, role: str = "pool",
) -> PoolResult:
    """Train the M pool models (role ``pool``, model m draws from ``streams.of("pool", m)``) and
    query each on the training images and on the population images (a split none of them saw).
    ``role`` names the models' streams otherwise: ``reference`` for the reference models with
    which ``medprivbench-audit`` attacks a model trained elsewhere (benchmark/audit_references.py).

    ``workers`` > 1 trains that many models at once in worker processes (joblib's loky backend),
    each with one thread: small models use one core poorly per thread, so M models on W cores
    go faster side by side than one after another on all of them. Each model draws only from its
    own streams, so its weights, and the records, do not depend on the number of workers (for a
    fixed number of threads per model: a test compares one worker with two). ``build`` must then
    pickle (``Context.model_builder``). Peak memory grows with W: each worker holds a copy of the
    training images and one model.
    """
    start = time.perf_counter()
    member = draw_membership(num_models, len(y), streams.of(role).numpy("membership"))
    arrays = dict(x=x.numpy(), y=y.numpy(), x_test=x_test.numpy(), y_test=np.asarray(y_test),
                  x_population=x_population.numpy(), features=None if features is None else features.numpy())
    common = dict(build=build, recipe=recipe, hp=hp, grad_sample_mode=grad_sample_mode, queries=queries,
                  streams=streams, device=device, role=role, **arrays)
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

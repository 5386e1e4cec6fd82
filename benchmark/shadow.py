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

from . import tasks
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


def query_signals(model, x: torch.Tensor, y: torch.Tensor, queries: list[str], device,
                  task: tasks.Task) -> dict[str, np.ndarray]:
    """The task's per-image membership signals of every image under every query view: signal →
    (N, A, K) float32. A classifier's are its logits; a segmenter's, its per-image loss and Dice
    (each mask is moved with its image's view)."""
    if not task.segmentation:
        return {tasks.LOGITS: query_logits(model, x, queries, device).astype(np.float32)}
    views = [task.image_signals(predict_logits(model, QUERIES[q](x), device=device), QUERIES[q](y).numpy())
             for q in queries]
    return {name: np.stack([v[name] for v in views], axis=1).astype(np.float32) for name in views[0]}


@dataclass
class PoolResult:
    """The pool's outputs. A membership signal is an array of logits (M, N, A, K) with a "true
    class" per image (``labels``): a classifier's one signal is its class logits; a segmenter's are
    its per-image loss and Dice as pseudo-logits whose true class is 0 (benchmark/tasks.py).
    ``logits`` is the first signal."""

    logits: np.ndarray  # (M, N, A, K) float32
    member: np.ndarray  # (M, N) bool
    labels: np.ndarray  # (N,): the true class of each image under the signals
    queries: list[str]
    wall_time_s: float
    test_accuracy: list[float] = field(default_factory=list)  # per pool model, its headline utility on the test split
    population_logits: np.ndarray | None = None  # (M, P, A, K): every model on held-out population images
    population_labels: np.ndarray | None = None  # (P,)
    signals: dict[str, np.ndarray] = field(default_factory=dict)  # every signal (M, N, A, K), ``logits`` first
    population_signals: dict[str, np.ndarray] = field(default_factory=dict)  # every signal (M, P, A, K)

    def signal(self, name: str | None) -> tuple[np.ndarray, np.ndarray | None]:
        """(logits, population logits) of one signal; None: the first."""
        if name is None or not self.signals:
            return self.logits, self.population_logits
        return self.signals[name], self.population_signals.get(name)

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
                  threads: int | None, role: str = "pool", y_population: np.ndarray | None = None,
                  task: str = "classification") -> tuple[dict, dict, float]:
    """Pool model m: trained on rows ``idx`` from ``streams.of(role, m)``; its signals on the
    training and population images and its test utility. Runs in this process or a worker."""
    if threads is not None:
        torch.set_num_threads(threads)
    # workers receive read-only memory maps, which torch cannot wrap; this process's arrays are used as they are
    tensor = lambda a: torch.from_numpy(a if a.flags.writeable else np.array(a))  # noqa: E731
    x_t = tensor(x)
    model_streams = streams.of(role, m)
    kind = tasks.get(task)
    result = train(build(model_streams), x_t[idx], tensor(y)[idx], recipe=recipe, hp=hp, grad_sample_mode=grad_sample_mode,
                   streams=model_streams, device=device, features=None if features is None else tensor(features)[idx],
                   task=task)
    signals = query_signals(result.model, x_t, tensor(y), queries, device, kind)
    pop_y = tensor(y_population) if y_population is not None else None
    population = query_signals(result.model, tensor(x_population), pop_y, queries, device, kind)
    utility = kind.headline_of(predict_logits(result.model, tensor(x_test), device=device), y_test)
    return signals, population, utility


def train_pool(
    *, build: Callable[[Streams], torch.nn.Module], x: torch.Tensor, y: torch.Tensor, x_test: torch.Tensor, y_test: np.ndarray,
    x_population: torch.Tensor, y_population: np.ndarray, recipe: DPRecipe, hp: dict, grad_sample_mode: str,
    num_models: int, queries: list[str], streams: Streams, device, progress: Callable | None = None,
    features: torch.Tensor | None = None, workers: int = 1, role: str = "pool", task: str = "classification",
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
                  x_population=x_population.numpy(), features=None if features is None else features.numpy(),
                  y_population=np.asarray(y_population))
    common = dict(build=build, recipe=recipe, hp=hp, grad_sample_mode=grad_sample_mode, queries=queries,
                  streams=streams, device=device, role=role, task=task, **arrays)
    if workers <= 1:
        results = (_train_member(m, idx=np.flatnonzero(member[m]), threads=None, **common) for m in range(num_models))
    else:
        from joblib import Parallel, delayed

        parallel = Parallel(n_jobs=workers, backend="loky", return_as="generator")
        results = parallel(delayed(_train_member)(m, idx=np.flatnonzero(member[m]), threads=1, **common)
                           for m in range(num_models))
    signals, population, test_utility = [], [], []
    for m, (model_signals, model_population, utility) in enumerate(results):
        signals.append(model_signals)
        population.append(model_population)
        test_utility.append(utility)
        if progress is not None:
            progress(m + 1, num_models)
    stacked = {name: np.stack([s[name] for s in signals]) for name in signals[0]}
    stacked_population = {name: np.stack([p[name] for p in population]) for name in population[0]}
    first = next(iter(stacked))
    kind = tasks.get(task)
    return PoolResult(
        logits=stacked[first], member=member, labels=kind.signal_labels(y.numpy()), queries=queries,
        wall_time_s=time.perf_counter() - start, test_accuracy=test_utility,
        population_logits=stacked_population[first], population_labels=kind.signal_labels(np.asarray(y_population)),
        signals=stacked, population_signals=stacked_population,
    )

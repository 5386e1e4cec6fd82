"""Training a classifier with DP-SGD (Opacus) or, for ε = ∞, without DP: the training loop.

One run takes exactly the recipe's T steps (benchmark/recipe.py: σ, q, T, C): Poisson batches
under DP, shuffled epochs without (benchmark/sampling.py), optional augmentation multiplicity
(benchmark/augmentation.py), and under DP Opacus' clipping with the noise drawn from the run's
own streams (benchmark/noise.py). Instruments (gradient canaries, benchmark/canaries.py) may join
the run to observe it. The names of those modules are re-exported here, where they were defined
before, so that ``from .training import DPRecipe, train`` keeps working.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Callable, Protocol, Sequence

import numpy as np
import torch
import torch.nn as nn

from . import tasks
from .augmentation import AUGMENTATIONS, Augmentation, augment
from .models import split_frozen
from .privacy import epsilon_spent
from .recipe import (HYPERPARAMETERS, LR_SCHEDULES, OPTIMIZERS, UNCLIPPED, AttackerView, DPRecipe, effective_train,
                     make_optimizer, make_recipe, steps_per_epoch)
from .sampling import PoissonBatches, ShuffledBatches, poisson_draw
from .secure_rng import secure_gaussian, secure_uniform
from .streams import Streams
from .tasks import Task

__all__ = [
    # the loop (this module)
    "Instrument", "TrainResult", "compute_features", "predict_logits", "train",
    # re-exported from the modules that define them
    "AUGMENTATIONS", "Augmentation", "augment",
    "HYPERPARAMETERS", "LR_SCHEDULES", "OPTIMIZERS", "UNCLIPPED", "AttackerView", "DPRecipe", "effective_train",
    "make_optimizer", "make_recipe", "steps_per_epoch",
    "PoissonBatches", "ShuffledBatches", "poisson_draw",
    "secure_gaussian", "secure_uniform",
]


class Instrument(Protocol):
    """Something that joins a training run to observe it: the white-box audit's gradient canaries
    (benchmark/canaries.py, :class:`~.canaries.GradientCanaries`) are the one kind today.

    Its ``n_rows`` rows join the Poisson-sampled set after the real examples, at the run's rate q.
    Their per-sample gradients touch only the instrument's own parameter block ``weight``, which
    it makes the optimiser's last parameter (``attach``) and which draws its noise from a generator
    of its own: the classifier's batches, noise and update are those of a run without it.
    """

    weight: nn.Parameter  # the instrument's own parameter block
    ids: torch.Tensor  # the instrument's index of each of its rows

    @property
    def n_rows(self) -> int:
        """Rows the instrument adds to the sampled set."""

    def attach(self, optimizer: torch.optim.Optimizer) -> None:
        """Add ``weight`` to the (plain) optimiser as its last parameter."""

    def split(self, idx: torch.Tensor, n_real: int) -> tuple[torch.Tensor, torch.Tensor]:
        """A draw over real + instrument rows → (real example indices, the instrument's indices)."""

    def append_rows(self, params: list[nn.Parameter], drawn: torch.Tensor) -> None:
        """Append the drawn rows' per-sample gradients to every parameter's, before clipping."""

    def observe(self, optimizer: torch.optim.Optimizer) -> None:
        """Read the step's noisy update (after the DP optimiser's step)."""

    def observe_plain(self, drawn: torch.Tensor) -> None:
        """A non-private step: no clipping and no noise; ``drawn`` are the instrument's sampled indices."""


@dataclass
class TrainResult:
    model: nn.Module  # the trained module (the EMA of the weights where ema_decay is set), in eval mode
    recipe: DPRecipe
    epsilon_spent: float
    steps_taken: int
    wall_time_s: float
    samples_per_s: float
    loss_history: list[float] = field(default_factory=list)  # mean training loss per epoch
    checkpoints: list[dict] = field(default_factory=list)  # state dicts along training (see ``n_checkpoints``)
    empty_batches: int = 0  # Poisson draws that selected no example (noise was still added)


@dataclass
class _Engine:
    """One training run's machinery: the module that computes the loss, its optimiser, criterion
    and batches, the data, and an optional instrument (gradient canaries, benchmark/canaries.py)."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    criterion: Callable
    batches: PoissonBatches | ShuffledBatches
    x: torch.Tensor
    y: torch.Tensor
    params: list[nn.Parameter]
    aug: Augmentation
    plain: nn.Module
    device: torch.device
    private: bool
    ghost: bool = False
    instrument: Instrument | None = None
    instrument_sampler: torch.Generator | None = None  # non-private runs: the instrument's own Poisson draws
    sample_rate: float = 0.0

    def step(self, idx: torch.Tensor) -> tuple[float, int]:
        """One optimiser step on the drawn rows; returns (sum of the real examples' losses, their number)."""
        drawn = None
        if self.instrument is not None and self.private:
            idx, drawn = self.instrument.split(idx, len(self.x))
        self.optimizer.zero_grad(set_to_none=True)
        loss = 0.0
        if len(idx):
            loss = self._backward(idx)
        elif self.private:  # an empty Poisson draw: no example, a zero clipped sum, but noise all the same
            for p in self.params:
                if self.ghost:
                    p.grad = torch.zeros_like(p)
                else:
                    p.grad_sample = p.new_zeros((0, *p.shape))
        if drawn is not None:
            self.instrument.append_rows(self.params, drawn)
        if self.private or len(idx):
            self.optimizer.step()
        if drawn is not None:
            self.instrument.observe(self.optimizer)
        elif self.instrument is not None:  # no DP: the auditor sees exactly which rows were sampled
            rows = poisson_draw(self.instrument.n_rows, self.sample_rate, self.instrument_sampler)
            self.instrument.observe_plain(self.instrument.ids[rows])
        return loss * len(idx), len(idx)

    def _backward(self, idx: torch.Tensor) -> float:
        xb, yb = self.x[idx].to(self.device, non_blocking=True), self.y[idx].to(self.device, non_blocking=True)
        inputs, targets = self.aug.views(xb, yb) if self.aug.active else (xb, yb)
        per_sample_backward = getattr(self.model, "per_sample_backward", None)  # the vmap engine (no backward pass)
        if per_sample_backward is not None:
            loss = per_sample_backward(inputs, targets)
        else:
            batch_loss = self.criterion(self.model(inputs), targets)
            batch_loss.backward()
            loss = float(batch_loss.detach())
        if self.aug.active and self.private:
            self.aug.average_grad_samples(self.plain)
        return loss


def _private_engine(plain, optimizer, x, y, aug, recipe: DPRecipe, grad_sample_mode: str, streams: Streams, device,
                    instrument: Instrument | None, task: Task = tasks.CLASSIFICATION) -> _Engine:
    """Opacus' DP-SGD on ``plain``: per-sample clipping at C, noise σ·C, sum / expected batch size.

    An instrument's rows are extra rows of the Poisson-sampled set; the expected batch size the
    noisy sum is divided by stays that of the real examples, int(N·q), as in a run without them.
    """
    from .noise import make_private

    n = len(x)
    extra = instrument.n_rows if instrument is not None else 0
    seeded = not recipe.secure_rng
    batches = PoissonBatches(n, recipe.sample_rate, recipe.steps_per_epoch, streams.torch("sampling") if seeded else None,
                             extra, streams.torch("canaries") if seeded and extra else None)
    # the instrument's block draws its noise from a stream of its own, none from the classifier's
    own = {id(instrument.weight): streams.torch("canary_noise", device)} if instrument is not None and seeded else {}
    # int(N·q) with q = 1/k computed as Opacus computes it from a loader of k batches
    expected_batch_size = int(n * (1 / recipe.steps_per_epoch))
    parts = make_private(plain, optimizer, task.criterion(), grad_sample_mode=grad_sample_mode,
                         noise_multiplier=recipe.noise_multiplier, max_grad_norm=recipe.max_grad_norm,
                         expected_batch_size=expected_batch_size, secure_rng=recipe.secure_rng, own_generators=own,
                         generator=None if recipe.secure_rng else streams.torch("noise", device))
    params = [p for p in plain.parameters() if p.requires_grad]
    if instrument is not None:
        instrument.weight.data = instrument.weight.data.to(device)
        instrument.attach(parts.optimizer.original_optimizer)
        params = params + [instrument.weight]
    return _Engine(parts.module, parts.optimizer, parts.criterion, batches, x, y, params, aug, plain, torch.device(device),
                   private=True, ghost=grad_sample_mode == "ghost", instrument=instrument)


def _plain_engine(plain, optimizer, x, y, aug, recipe: DPRecipe, streams: Streams, device,
                  instrument: Instrument | None, task: Task = tasks.CLASSIFICATION) -> _Engine:
    """A non-private run: shuffled epochs of the mean gradient; an instrument draws its rows from
    its own stream and observes which were drawn (there is no noise to read them through)."""
    batches = ShuffledBatches(len(x), recipe.steps_per_epoch, streams.torch("sampling"))
    return _Engine(plain, optimizer, task.criterion(), batches, x, y, [], aug, plain, device, private=False,
                   instrument=instrument, sample_rate=recipe.sample_rate,
                   instrument_sampler=streams.torch("canaries") if instrument is not None else None)


def _one_instrument(instruments: Sequence[Instrument]) -> Instrument | None:
    """The run's instrument, if any: each kind appends its rows after the real examples as one
    block, and the engine places one block (two would each take the other's rows for their own)."""
    instruments = list(instruments)
    if len(instruments) > 1:
        kinds = ", ".join(type(i).__name__ for i in instruments)
        raise ValueError(f"train() takes at most one instrument that adds rows to the sampled set; got {len(instruments)} "
                         f"({kinds}): select one attack that instruments the target's training")
    return instruments[0] if instruments else None


def train(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    recipe: DPRecipe,
    hp: dict,
    streams: Streams,
    grad_sample_mode: str = "hooks",
    device: torch.device | str = "cpu",
    progress: Callable | None = None,
    n_checkpoints: int = 0,
    features: torch.Tensor | None = None,
    instruments: Sequence[Instrument] = (),
    task: str = "classification",
) -> TrainResult:
    """Train ``model`` on (x, y) with ``recipe``; ``hp`` are the settings of ``effective_train``.

    ``recipe.sample_rate`` and ``recipe.steps`` are used as given (a shadow model trained on a
    smaller member set keeps the target's q, T and σ); exactly ``recipe.steps`` steps are taken.
    ``streams`` are the model's random streams (benchmark/streams.py): Poisson masks (or the
    shuffle), noise and augmentation each draw from their own, none from the initial weights'.
    ``n_checkpoints`` > 0 keeps that many copies of the weights, evenly spaced over the steps from
    the initial state on (the model states an informed adversary knows, attacks/prior_aware.py).
    ``hp["ema_decay"]`` returns an exponential moving average of the weights (post-processing, free
    under DP). A model with fixed ``frozen_features`` trains only its head, on features of ``x``
    computed once (pass ``features`` when already known). ``instruments`` join the run and record
    what the auditor observes (:class:`Instrument`; at most one today). ``task`` names the loss
    (benchmark/tasks.py): cross-entropy of a label, or a segmenter's Dice + CE of a mask ``y``.
    """
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    instrument = _one_instrument(instruments)
    device = torch.device(device)
    full = model.to(device)
    frozen, plain = split_frozen(full)
    if frozen is not None:
        x = features if features is not None else compute_features(frozen, x, device)
    plain.train()
    aug = Augmentation(int(hp.get("augmult") or 0), list(hp.get("augmentations") or []), streams.torch("augmentation"))
    # the average starts from the plain module, before Opacus wraps it
    ema = AveragedModel(plain, multi_avg_fn=get_ema_multi_avg_fn(float(hp["ema_decay"]))) if hp.get("ema_decay") else None
    optimizer = make_optimizer(plain.parameters(), hp)
    kind = tasks.get(task)
    run = (_private_engine(plain, optimizer, x, y, aug, recipe, grad_sample_mode, streams, device, instrument, kind)
           if recipe.private else _plain_engine(plain, optimizer, x, y, aug, recipe, streams, device, instrument, kind))
    log = _Log(full, _checkpoint_steps(recipe.steps, n_checkpoints))
    _run_steps(run, recipe, hp, log, ema, progress)
    spent = math.inf
    if recipe.private:
        spent = epsilon_spent(recipe.noise_multiplier, recipe.sample_rate, log.steps, recipe.delta, recipe.accountant)
        run.model.cleanup()  # Opacus' hooks and per-sample attributes removed: the plain module is reusable
    if ema is not None and frozen is not None:
        full.head = ema.module
    elif ema is not None:
        full = ema.module
    full.eval()
    return log.result(full, recipe, spent)


def _checkpoint_steps(steps: int, n_checkpoints: int) -> set:
    """The ``n_checkpoints`` steps, evenly spaced from step 0, before which the weights are kept."""
    return set(np.linspace(0, steps, n_checkpoints, endpoint=False).round().astype(int)) if n_checkpoints else set()


def _run_steps(run: _Engine, recipe: DPRecipe, hp: dict, log: _Log, ema, progress: Callable | None) -> None:
    """The recipe's epochs of ``run``'s batches, with the learning-rate schedule and weight average."""
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(run.optimizer, T_max=recipe.steps) if hp["lr_schedule"] == "cosine" else None
    epochs = recipe.steps // recipe.steps_per_epoch
    with warnings.catch_warnings():
        # torch's note that the first layer's input needs no gradient does not apply here
        warnings.filterwarnings("ignore", message="Full backward hook is firing")
        for epoch in range(epochs):
            for idx in run.batches:
                log.before_step()
                log.after_step(*run.step(idx), drawn=len(idx))
                if scheduler is not None:
                    scheduler.step()
                if ema is not None:
                    ema.update_parameters(run.plain)
            log.end_epoch(epoch, epochs, progress)
    if log.steps != recipe.steps:
        raise RuntimeError(f"training took {log.steps} steps but the recipe (and its accounting) has T = {recipe.steps}")


class _Log:
    """Steps, samples, losses, empty draws and checkpoints of one training run."""

    def __init__(self, full: nn.Module, checkpoint_steps: set):
        self.full, self.at = full, checkpoint_steps
        self.snapshots: list[dict] = []
        self.losses: list[float] = []
        self.steps = self.samples = self.empty = 0
        self.running, self.count = 0.0, 0
        self.start = time.perf_counter()

    def before_step(self) -> None:
        if self.steps in self.at:
            self.snapshots.append({k: v.detach().cpu().clone() for k, v in self.full.state_dict().items()})

    def after_step(self, loss_sum: float, n_real: int, drawn: int) -> None:
        self.running += loss_sum
        self.count += n_real
        self.empty += drawn == 0
        self.samples += n_real
        self.steps += 1

    def end_epoch(self, epoch: int, epochs: int, progress: Callable | None) -> None:
        self.losses.append(self.running / max(self.count, 1))
        self.running, self.count = 0.0, 0
        if not math.isfinite(self.losses[-1]):
            raise FloatingPointError(f"training diverged in epoch {epoch + 1} (loss {self.losses[-1]}); lower train.lr")
        if progress is not None:
            progress(epoch + 1, epochs, self.losses[-1])

    def result(self, model: nn.Module, recipe: DPRecipe, spent: float) -> TrainResult:
        wall = time.perf_counter() - self.start
        return TrainResult(model=model, recipe=recipe, epsilon_spent=spent, steps_taken=self.steps, wall_time_s=wall,
                           samples_per_s=self.samples / max(wall, 1e-9), loss_history=self.losses,
                           checkpoints=self.snapshots, empty_batches=self.empty)


@torch.no_grad()
def compute_features(module: nn.Module, x: torch.Tensor, device, batch_size: int = 512) -> torch.Tensor:
    """Fixed features of every image, computed once (no gradients, no privacy cost)."""
    module = module.to(device).eval()
    return torch.cat([module(x[i : i + batch_size].to(device)).cpu() for i in range(0, len(x), batch_size)])


@torch.no_grad()
def predict_logits(model: nn.Module, x: torch.Tensor, *, batch_size: int = 1024, device: torch.device | str = "cpu") -> np.ndarray:
    model.eval()
    out = [model(x[i : i + batch_size].to(device)).float().cpu() for i in range(0, len(x), batch_size)]
    return torch.cat(out).numpy() if out else np.zeros((0, 0), np.float32)

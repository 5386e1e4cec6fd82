"""Training a classifier with DP-SGD (Opacus) or, for ε = ∞, without DP.

The DP recipe: Poisson sampling at rate q = 1/k with k = round(N/B) steps per epoch (expected
batch B ≈ N·q), per-sample clipping to norm C, Gaussian noise of std σ·C added to the sum of
clipped gradients, which is then divided by the expected batch size; T = epochs·k steps. σ is
solved for the target (ε, δ) before training (benchmark/privacy.py) and the ε actually spent is
recomputed from (σ, q, T) afterwards.

``DPRecipe`` fixes σ, q, T and C so that shadow/reference models can be trained with exactly
the target's recipe on a different (e.g. half-size) member set: same q and T, hence the same σ
and the same ε.
"""

from __future__ import annotations

import math
import os
import time
import types
import warnings
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn as nn

from .config import is_private
from .errors import ConfigError
from .models import split_frozen
from .privacy import NoiseSolution, epsilon_spent, solve_noise_multiplier
from .streams import Streams

OPTIMIZERS = ("sgd", "adam", "nadam")
LR_SCHEDULES = ("constant", "cosine")
AUGMENTATIONS = ("shift", "hflip")
# Settings of train/ that shape one training run (``nonprivate`` may override any of them).
HYPERPARAMETERS = ("epochs", "batch_size", "optimizer", "lr", "momentum", "weight_decay", "lr_schedule",
                   "ema_decay", "augmult", "augmentations")


# A clip norm for simulations of a run without clipping: far above any per-sample gradient norm.
UNCLIPPED = 1e6


@dataclass(frozen=True)
class AttackerView:
    """The training as an attacker sees it: DP-SGD's update rule with its public parameters.

    Each step t samples every example with probability q (Poisson), clips each per-sample gradient
    to norm C, sums, adds N(0, σ²C²·I) and divides by the expected batch size; T steps. Without DP
    (σ = 0, C = ∞) the update is the plain mean gradient.
    """

    noise_multiplier: float  # σ
    max_grad_norm: float  # C (inf: no clipping)
    sample_rate: float  # q
    steps: int  # T

    @property
    def simulation_clip(self) -> float:
        """C, or :data:`UNCLIPPED` where simulations need a finite number for 'no clipping'."""
        return self.max_grad_norm if math.isfinite(self.max_grad_norm) else UNCLIPPED


@dataclass(frozen=True)
class DPRecipe:
    """Everything that determines a DP-SGD run's privacy: σ, q, T, C, δ and the accountant."""

    epsilon_target: float
    delta: float
    sample_rate: float  # q
    steps: int  # T
    steps_per_epoch: int
    noise_multiplier: float  # σ (0 for non-private)
    max_grad_norm: float  # C
    accountant: str
    accountant_note: str = ""
    epsilon_planned: float = math.inf  # ε of the whole run at the planned (σ, q, T) by ``accountant``
    # sampling and noise from the OS's CSPRNG (not reproducible) instead of the seeded streams
    secure_rng: bool = False

    @property
    def private(self) -> bool:
        return is_private(self.epsilon_target)

    @property
    def attacker_view(self) -> AttackerView:
        """What every attacker of this benchmark knows of the training (the one place that says so)."""
        if not self.private:
            return AttackerView(0.0, math.inf, self.sample_rate, self.steps)
        return AttackerView(self.noise_multiplier, self.max_grad_norm, self.sample_rate, self.steps)

    def to_record(self) -> dict:
        return asdict(self)


def steps_per_epoch(n_train: int, batch_size: int) -> int:
    return max(1, round(n_train / batch_size))


def make_recipe(privacy_cfg, train_cfg, n_train: int) -> DPRecipe:
    """Solve σ for the configured budget; for ε = ∞ the recipe records q and T only."""
    hp = effective_train(train_cfg, privacy_cfg.epsilon)
    epochs = hp["epochs"]
    k = steps_per_epoch(n_train, hp["batch_size"])
    q = 1.0 / k
    steps = epochs * k
    secure = bool(privacy_cfg.get("secure_rng", False))
    if not is_private(privacy_cfg.epsilon):
        return DPRecipe(
            epsilon_target=math.inf, delta=privacy_cfg.delta, sample_rate=q, steps=steps, steps_per_epoch=k,
            noise_multiplier=0.0, max_grad_norm=math.inf, accountant="none", secure_rng=secure,
        )
    sol: NoiseSolution = solve_noise_multiplier(
        epsilon=privacy_cfg.epsilon, delta=privacy_cfg.delta, sample_rate=q, steps=steps, accountant=privacy_cfg.accountant
    )
    return DPRecipe(
        epsilon_target=float(privacy_cfg.epsilon), delta=float(privacy_cfg.delta), sample_rate=q, steps=steps,
        steps_per_epoch=k, noise_multiplier=sol.sigma, max_grad_norm=float(privacy_cfg.max_grad_norm),
        accountant=sol.accountant, accountant_note=sol.note, epsilon_planned=sol.epsilon, secure_rng=secure,
    )


def effective_train(train_cfg, epsilon: float) -> dict:
    """The training hyper-parameters for this budget (non-private runs apply ``train.nonprivate``)."""
    values = {key: train_cfg[key] for key in HYPERPARAMETERS}
    values["augmentations"] = list(values["augmentations"])
    if not is_private(epsilon):
        for key, value in train_cfg.nonprivate.items():
            if value is not None:
                values[key] = value
    return values


def _optimizer(params, hp: dict) -> torch.optim.Optimizer:
    name = hp["optimizer"]
    if name == "sgd":
        return torch.optim.SGD(params, lr=hp["lr"], momentum=hp["momentum"], weight_decay=hp["weight_decay"])
    if name == "adam":
        return torch.optim.Adam(params, lr=hp["lr"], weight_decay=hp["weight_decay"])
    if name == "nadam":
        return torch.optim.NAdam(params, lr=hp["lr"], weight_decay=hp["weight_decay"])
    raise ConfigError(f"train.optimizer={name!r} is not valid; choose one of {', '.join(OPTIMIZERS)}")


def augment(x: torch.Tensor, names: list[str], generator: torch.Generator, max_shift: int = 2) -> torch.Tensor:
    """Random views of a batch: integer shifts of up to ``max_shift`` pixels (zero fill) and/or
    horizontal flips, drawn independently per image."""
    if "hflip" in names:
        flip = torch.rand(len(x), generator=generator) < 0.5
        x = torch.where(flip.view(-1, 1, 1, 1).to(x.device), x.flip(-1), x)
    if "shift" in names:
        n, _, h, w = x.shape
        padded = nn.functional.pad(x, (max_shift,) * 4)
        dy = torch.randint(0, 2 * max_shift + 1, (n,), generator=generator).to(x.device)
        dx = torch.randint(0, 2 * max_shift + 1, (n,), generator=generator).to(x.device)
        rows = (dy.view(n, 1) + torch.arange(h, device=x.device)).view(n, 1, h, 1).expand(n, x.shape[1], h, w + 2 * max_shift)
        x = torch.gather(padded, 2, rows)
        cols = (dx.view(n, 1) + torch.arange(w, device=x.device)).view(n, 1, 1, w).expand(n, x.shape[1], h, w)
        x = torch.gather(x, 3, cols)
    return x


class Augmentation:
    """Augmentation multiplicity (De et al. 2022): K random views per image.

    Under DP the per-sample gradient of an image is the mean of its K views' gradients, formed
    *before* clipping, so the sensitivity stays C and the privacy analysis is unchanged; the
    averaging lowers the gradient's variance for free. K = 0 turns augmentation off.
    """

    def __init__(self, k: int, names: list[str], generator: torch.Generator):
        bad = [n for n in names if n not in AUGMENTATIONS]
        if bad:
            raise ConfigError(f"train.augmentations={names} is not valid; choose from {', '.join(AUGMENTATIONS)}")
        if k < 0:
            raise ConfigError(f"train.augmult={k} is not valid; use 0 (off) or the number of views per image")
        if k > 0 and not names:
            raise ConfigError(f"train.augmult={k} needs at least one of train.augmentations ({', '.join(AUGMENTATIONS)})")
        self.k, self.names, self.generator = k, names, generator

    @property
    def active(self) -> bool:
        return self.k > 0

    def views(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return augment(x.repeat_interleave(self.k, 0), self.names, self.generator), y.repeat_interleave(self.k, 0)

    def average_grad_samples(self, module: nn.Module) -> None:
        """Per-view per-sample gradients (B·K, …) → per-image means (B, …), before Opacus clips them."""
        for p in module.parameters():
            gs = getattr(p, "grad_sample", None)
            if gs is None:
                continue
            if isinstance(gs, list):  # accumulated over several backward passes: one pass here
                gs = gs[-1]
            p.grad_sample = gs.reshape(gs.shape[0] // self.k, self.k, *gs.shape[1:]).mean(1)


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


def secure_uniform(n: int) -> torch.Tensor:
    """``n`` uniforms in [0, 1) from the operating system's CSPRNG (53 random bits each)."""
    bits = np.frombuffer(os.urandom(8 * n), dtype=np.uint64) >> np.uint64(11)
    return torch.from_numpy(bits.astype(np.float64) * 2.0**-53)


def secure_gaussian(shape: torch.Size, std: float, dtype: torch.dtype, device) -> torch.Tensor:
    """Gaussian noise N(0, std²) from the operating system's CSPRNG.

    Box–Muller on CSPRNG uniforms, and, as Opacus' secure mode does against floating-point
    attacks on the noise's low bits (Mironov 2012; Opacus issue 2112.05307), the sum of four
    draws divided by two, which has the same variance.
    """
    n = int(np.prod(shape)) if len(shape) else 1
    total = torch.zeros(n, dtype=torch.float64)
    for _ in range(4):
        u1 = 1.0 - secure_uniform(n)  # (0, 1]: log stays finite
        u2 = secure_uniform(n)
        total += torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(2.0 * math.pi * u2)
    return (total * (std / 2.0)).reshape(shape).to(dtype=dtype, device=device)


class PoissonBatches:
    """Poisson sampling, as DP-SGD's accountant assumes: at each step every one of the ``n``
    examples joins the batch independently with probability q. One pass = ``steps`` steps
    exactly (Opacus' own sampler runs ``int(1/q)`` steps, one fewer than k when 1/k rounds down).
    """

    def __init__(self, n: int, sample_rate: float, steps: int, generator: torch.Generator | None):
        self.n, self.sample_rate, self.steps, self.generator = n, sample_rate, steps, generator

    def __len__(self) -> int:
        return self.steps

    def __iter__(self):
        for _ in range(self.steps):
            uniform = secure_uniform(self.n) if self.generator is None else torch.rand(self.n, generator=self.generator)
            yield torch.nonzero(uniform < self.sample_rate).reshape(-1)


class ShuffledBatches:
    """A non-private epoch: a random permutation cut into ``steps`` batches of near-equal size."""

    def __init__(self, n: int, steps: int, generator: torch.Generator):
        self.n, self.steps, self.generator = n, steps, generator

    def __len__(self) -> int:
        return self.steps

    def __iter__(self):
        yield from torch.tensor_split(torch.randperm(self.n, generator=self.generator), self.steps)


@dataclass
class _Engine:
    """What one training run steps with: the module that computes the loss, its optimiser,
    criterion and batches, and how to take a step on an empty Poisson draw."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    criterion: Callable
    batches: PoissonBatches | ShuffledBatches
    private: bool
    ghost: bool = False

    def empty_step(self, params: list[nn.Parameter]) -> None:
        """A DP-SGD step on an empty batch: no example, so a zero clipped sum, but the noise is added
        and the step counted, as Poisson sampling's analysis requires."""
        self.optimizer.zero_grad(set_to_none=True)
        for p in params:
            if self.ghost:
                p.grad = torch.zeros_like(p)
            else:
                p.grad_sample = p.new_zeros((0, *p.shape))
        self.optimizer.step()


def _private_engine(model, optimizer, criterion, n: int, recipe: DPRecipe, grad_sample_mode: str,
                    streams: Streams, device) -> _Engine:
    """Opacus' DP-SGD on ``model``: per-sample clipping at C, noise σ·C, sum / expected batch size."""
    from opacus import PrivacyEngine

    batches = PoissonBatches(n, recipe.sample_rate, recipe.steps_per_epoch,
                             None if recipe.secure_rng else streams.torch("sampling"))
    # Opacus reads q = 1/len(loader) and the expected batch size int(n·q) from the loader; batches
    # are drawn by ``batches`` above, never by this loader.
    stand_in = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.zeros(n)), batch_sampler=batches)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Opacus' reminder that its RNG is not cryptographic
        engine = PrivacyEngine(accountant="rdp")  # its accountant is unused: ε comes from privacy.py
        prepared = engine.make_private(
            module=model, optimizer=optimizer, data_loader=stand_in, criterion=criterion,
            noise_multiplier=recipe.noise_multiplier, max_grad_norm=recipe.max_grad_norm,
            poisson_sampling=False, grad_sample_mode=grad_sample_mode,
            noise_generator=None if recipe.secure_rng else streams.torch("noise", device),
        )
    ghost = grad_sample_mode == "ghost"
    model, optimizer = prepared[0], prepared[1]
    criterion = prepared[2] if ghost else criterion
    if recipe.secure_rng:
        _use_secure_noise(optimizer)
    return _Engine(model, optimizer, criterion, batches, private=True, ghost=ghost)


def _use_secure_noise(optimizer) -> None:
    """Replace the optimiser's noise by :func:`secure_gaussian` (Opacus' secure mode needs torchcsprng)."""
    from opacus.optimizers.optimizer import _check_processed_flag, _mark_as_processed

    def add_noise(self) -> None:
        for p in self.params:
            _check_processed_flag(p.summed_grad)
            noise = secure_gaussian(p.summed_grad.shape, self.noise_multiplier * self.max_grad_norm,
                                    p.summed_grad.dtype, p.summed_grad.device)
            p.grad = (p.summed_grad + noise).view_as(p)
            _mark_as_processed(p.summed_grad)

    optimizer.add_noise = types.MethodType(add_noise, optimizer)


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
) -> TrainResult:
    """Train ``model`` on (x, y) with ``recipe``; ``hp`` are the settings of ``effective_train``.

    ``recipe.sample_rate`` and ``recipe.steps`` are used as given, so a shadow model trained on a
    smaller member set with the target's recipe keeps the target's q, T and σ; exactly
    ``recipe.steps`` steps are taken. ``streams`` are the model's random streams
    (benchmark/streams.py): Poisson masks (or the shuffle), noise and augmentation each draw from
    their own, and none of them from the stream that drew the initial weights.
    ``n_checkpoints`` > 0 keeps that many copies of the weights, evenly spaced over the steps from
    the initial state on (the model states an informed adversary knows, attacks/prior_aware.py).
    ``hp["ema_decay"]`` keeps an exponential moving average of the weights (post-processing of
    the DP iterates, so it costs no privacy) and returns it as the model.
    A model with fixed ``frozen_features`` (benchmark/models.py) trains only its head, on features
    of ``x`` computed once; pass ``features`` when they are already known (e.g. for shadow models).
    """
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    device = torch.device(device)
    full = model.to(device)
    frozen, plain = split_frozen(full)
    if frozen is not None:
        x = features if features is not None else compute_features(frozen, x, device)
    plain.train()
    aug = Augmentation(int(hp.get("augmult") or 0), list(hp.get("augmentations") or []), streams.torch("augmentation"))
    ema = AveragedModel(plain, multi_avg_fn=get_ema_multi_avg_fn(float(hp["ema_decay"]))) if hp.get("ema_decay") else None
    optimizer = _optimizer(plain.parameters(), hp)
    criterion: Callable = nn.CrossEntropyLoss()
    if recipe.private:
        run = _private_engine(plain, optimizer, criterion, len(x), recipe, grad_sample_mode, streams, device)
    else:
        run = _Engine(plain, optimizer, criterion, ShuffledBatches(len(x), recipe.steps_per_epoch, streams.torch("sampling")),
                      private=False)
    params = [p for p in plain.parameters() if p.requires_grad]
    epochs = recipe.steps // recipe.steps_per_epoch
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(run.optimizer, T_max=recipe.steps) if hp["lr_schedule"] == "cosine" else None
    at = set(np.linspace(0, recipe.steps, n_checkpoints, endpoint=False).round().astype(int)) if n_checkpoints else set()
    snapshots: list[dict] = []
    losses: list[float] = []
    steps = samples = empty = 0
    start = time.perf_counter()
    with warnings.catch_warnings():
        # torch's note that the first layer's input needs no gradient does not apply here
        warnings.filterwarnings("ignore", message="Full backward hook is firing")
        for epoch in range(epochs):
            running, count = 0.0, 0
            for idx in run.batches:
                if steps in at:
                    snapshots.append({k: v.detach().cpu().clone() for k, v in full.state_dict().items()})
                if len(idx):
                    loss = _step(run, aug, x[idx].to(device, non_blocking=True), y[idx].to(device, non_blocking=True), plain)
                    running += loss * len(idx)
                    count += len(idx)
                else:  # only a Poisson draw can be empty
                    run.empty_step(params)
                    empty += 1
                if scheduler is not None:
                    scheduler.step()
                if ema is not None:
                    ema.update_parameters(plain)
                steps += 1
                samples += len(idx)
            losses.append(running / max(count, 1))
            if not math.isfinite(losses[-1]):
                raise FloatingPointError(f"training diverged in epoch {epoch + 1} (loss {losses[-1]}); lower train.lr")
            if progress is not None:
                progress(epoch + 1, epochs, losses[-1])
    wall = time.perf_counter() - start
    if steps != recipe.steps:
        raise RuntimeError(f"training took {steps} steps but the recipe (and its accounting) has T = {recipe.steps}")

    spent = math.inf
    if recipe.private:
        spent = epsilon_spent(recipe.noise_multiplier, recipe.sample_rate, steps, recipe.delta, recipe.accountant)
        if hasattr(run.model, "_close"):
            run.model._close()  # remove Opacus hooks so the plain module can be reused
    if ema is not None:
        if frozen is not None:
            full.head = ema.module
        else:
            full = ema.module
    full.eval()
    return TrainResult(
        model=full, recipe=recipe, epsilon_spent=spent, steps_taken=steps, wall_time_s=wall,
        samples_per_s=samples / max(wall, 1e-9), loss_history=losses, checkpoints=snapshots, empty_batches=empty,
    )


def _step(run: _Engine, aug: Augmentation, xb: torch.Tensor, yb: torch.Tensor, plain: nn.Module) -> float:
    """One optimiser step on a non-empty batch; returns the batch's mean loss."""
    inputs, targets = aug.views(xb, yb) if aug.active else (xb, yb)
    run.optimizer.zero_grad(set_to_none=True)
    loss = run.criterion(run.model(inputs), targets)
    loss.backward()
    if aug.active and run.private:
        aug.average_grad_samples(plain)
    run.optimizer.step()
    return float(loss.detach())


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

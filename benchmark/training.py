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

from .config import TUNED, is_private
from .models import split_frozen
from .privacy import NoiseSolution, epsilon_spent, solve_noise_multiplier
from .canaries import GradientCanaries
from .streams import Streams

OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "sgd": lambda params, hp: torch.optim.SGD(params, lr=hp["lr"], momentum=hp["momentum"], weight_decay=hp["weight_decay"]),
    "adam": lambda params, hp: torch.optim.Adam(params, lr=hp["lr"], weight_decay=hp["weight_decay"]),
    "nadam": lambda params, hp: torch.optim.NAdam(params, lr=hp["lr"], weight_decay=hp["weight_decay"]),
}
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
    hp = effective_train(train_cfg, privacy_cfg.epsilon, privacy_cfg.get("reference"))
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


def effective_train(train_cfg, epsilon: float, reference: str | None) -> dict:
    """The training hyper-parameters for this budget.

    DP runs and the ``same_recipe`` reference (ε = ∞ trained with the DP recipe, no clipping and no
    noise) use ``train.*``; the ``tuned`` reference applies ``train.nonprivate`` on top. ``reference``
    is the run's ``privacy.reference`` (None for a DP run).
    """
    values = {key: train_cfg[key] for key in HYPERPARAMETERS}
    values["augmentations"] = list(values["augmentations"])
    if not is_private(epsilon) and reference == TUNED:
        for key, value in train_cfg.nonprivate.items():
            if value is not None:
                values[key] = value
    return values


def _optimizer(params, hp: dict) -> torch.optim.Optimizer:
    return OPTIMIZERS[hp["optimizer"]](params, hp)


def augment(x: torch.Tensor, names: list[str], generator: torch.Generator, max_shift: int = 2) -> torch.Tensor:
    """Random views of a batch of images (B, C, H, W) or volumes (B, C, D, H, W): integer shifts
    of up to ``max_shift`` pixels along every spatial axis (zero fill) and/or left–right flips
    (of the last axis), drawn independently per image."""
    n, spatial = len(x), x.shape[2:]
    if "hflip" in names:
        flip = torch.rand(n, generator=generator) < 0.5
        x = torch.where(flip.view(-1, *([1] * (x.ndim - 1))).to(x.device), x.flip(-1), x)
    if "shift" in names:
        x = nn.functional.pad(x, (max_shift,) * (2 * len(spatial)))
        for axis, size in enumerate(spatial, start=2):
            offset = torch.randint(0, 2 * max_shift + 1, (n,), generator=generator).to(x.device)
            shape = [n] + [1] * (x.ndim - 1)
            shape[axis] = size
            index = (offset.view(n, 1) + torch.arange(size, device=x.device)).view(shape)
            out_shape = list(x.shape)
            out_shape[axis] = size
            x = torch.gather(x, axis, index.expand(out_shape))
    return x


class Augmentation:
    """Augmentation multiplicity (De et al. 2022): K random views per image.

    Under DP the per-sample gradient of an image is the mean of its K views' gradients, formed
    *before* clipping, so the sensitivity stays C and the privacy analysis is unchanged; the
    averaging lowers the gradient's variance for free. K = 0 turns augmentation off.
    """

    def __init__(self, k: int, names: list[str], generator: torch.Generator):
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


def poisson_draw(n: int, sample_rate: float, generator: torch.Generator | None) -> torch.Tensor:
    """Indices of the n rows that join one Poisson-sampled step, each with probability q (``None``:
    uniforms from the operating system, ``privacy.secure_rng``)."""
    uniform = secure_uniform(n) if generator is None else torch.rand(n, generator=generator)
    return torch.nonzero(uniform < sample_rate).reshape(-1)


class PoissonBatches:
    """Poisson sampling, as DP-SGD's accountant assumes: at each step every one of the ``n``
    examples joins the batch independently with probability q. One pass = ``steps`` steps
    exactly (Opacus' own sampler runs ``int(1/q)`` steps, one fewer than k when 1/k rounds down).

    ``extra`` rows (gradient canaries) are drawn by the same rule at the same q from a generator of
    their own and appended as indices n, n + 1, …: the real examples' draws are those of a run
    without them. ``None`` generators draw from the operating system (``privacy.secure_rng``).
    """

    def __init__(self, n: int, sample_rate: float, steps: int, generator: torch.Generator | None,
                 extra: int = 0, extra_generator: torch.Generator | None = None):
        self.n, self.sample_rate, self.steps, self.generator = n, sample_rate, steps, generator
        self.extra, self.extra_generator = extra, extra_generator

    def __len__(self) -> int:
        return self.steps

    def __iter__(self):
        for _ in range(self.steps):
            idx = poisson_draw(self.n, self.sample_rate, self.generator)
            if self.extra:
                idx = torch.cat([idx, self.n + poisson_draw(self.extra, self.sample_rate, self.extra_generator)])
            yield idx


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
    """One training run's machinery: the module that computes the loss, its optimiser, criterion
    and batches, the data, and optional gradient canaries (benchmark/canaries.py)."""

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
    canaries: GradientCanaries | None = None
    canary_sampler: torch.Generator | None = None  # non-private runs: the canaries' own Poisson draws
    sample_rate: float = 0.0

    def step(self, idx: torch.Tensor) -> tuple[float, int]:
        """One optimiser step on the drawn rows; returns (sum of the real examples' losses, their number)."""
        canary = None
        if self.canaries is not None and self.private:
            idx, canary = self.canaries.split(idx, len(self.x))
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
        if canary is not None:
            self.canaries.append_rows(self.params, canary)
        if self.private or len(idx):
            self.optimizer.step()
        if canary is not None:
            self.canaries.observe(self.optimizer)
        elif self.canaries is not None:  # no DP: the auditor sees exactly which canaries were sampled
            drawn = poisson_draw(self.canaries.n_rows, self.sample_rate, self.canary_sampler)
            self.canaries.observe_plain(self.canaries.ids[drawn])
        return loss * len(idx), len(idx)

    def _backward(self, idx: torch.Tensor) -> float:
        xb, yb = self.x[idx].to(self.device, non_blocking=True), self.y[idx].to(self.device, non_blocking=True)
        inputs, targets = self.aug.views(xb, yb) if self.aug.active else (xb, yb)
        loss = self.criterion(self.model(inputs), targets)
        loss.backward()
        if self.aug.active and self.private:
            self.aug.average_grad_samples(self.plain)
        return float(loss.detach())


def _private_engine(plain, optimizer, x, y, aug, recipe: DPRecipe, grad_sample_mode: str, streams: Streams, device,
                    canaries: GradientCanaries | None) -> _Engine:
    """Opacus' DP-SGD on ``plain``: per-sample clipping at C, noise σ·C, sum / expected batch size.

    Canaries are extra rows of the Poisson-sampled set; the expected batch size that Opacus divides
    by stays that of the real examples, int(N·q), as in a run without them.
    """
    from opacus import PrivacyEngine

    n = len(x)
    extra = canaries.n_rows if canaries is not None else 0
    seeded = not recipe.secure_rng
    batches = PoissonBatches(n, recipe.sample_rate, recipe.steps_per_epoch, streams.torch("sampling") if seeded else None,
                             extra, streams.torch("canaries") if seeded and extra else None)
    # Opacus reads q = 1/len(loader) and the expected batch size int(n·q) from the loader; batches
    # are drawn by ``batches`` above, never by this loader.
    stand_in = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.zeros(n)), batch_sampler=batches)
    criterion: Callable = nn.CrossEntropyLoss()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Opacus' reminder that its RNG is not cryptographic
        engine = PrivacyEngine(accountant="rdp")  # its accountant is unused: ε comes from privacy.py
        prepared = engine.make_private(
            module=plain, optimizer=optimizer, data_loader=stand_in, criterion=criterion,
            noise_multiplier=recipe.noise_multiplier, max_grad_norm=recipe.max_grad_norm,
            poisson_sampling=False, grad_sample_mode=grad_sample_mode,
            noise_generator=None if recipe.secure_rng else streams.torch("noise", device),
        )
    ghost = grad_sample_mode == "ghost"
    model, dp_optimizer = prepared[0], prepared[1]
    params = [p for p in plain.parameters() if p.requires_grad]
    if canaries is not None:
        canaries.weight.data = canaries.weight.data.to(device)
        canaries.attach(dp_optimizer.original_optimizer)
        params = params + [canaries.weight]
    if recipe.secure_rng or canaries is not None:
        own = {id(canaries.weight): streams.torch("canary_noise", device)} if canaries is not None and seeded else {}
        _set_noise(dp_optimizer, secure=recipe.secure_rng, own=own)
    return _Engine(model, dp_optimizer, prepared[2] if ghost else criterion, batches, x, y, params, aug, plain,
                   torch.device(device), private=True, ghost=ghost, canaries=canaries)


def _set_noise(optimizer, *, secure: bool, own: dict[int, torch.Generator]) -> None:
    """Replace the optimiser's noise step (Opacus' loop, same σ·C): :func:`secure_gaussian` for
    secure runs (Opacus' secure mode needs torchcsprng), and for the parameters in ``own`` (by id:
    the canaries' block) a generator of their own, so that they draw nothing from the classifier's
    noise stream and the classifier's run is the same with or without an audit."""
    from opacus.optimizers.optimizer import _check_processed_flag, _generate_noise, _mark_as_processed

    def add_noise(self) -> None:
        std = self.noise_multiplier * self.max_grad_norm
        for p in self.params:
            _check_processed_flag(p.summed_grad)
            if secure:
                noise = secure_gaussian(p.summed_grad.shape, std, p.summed_grad.dtype, p.summed_grad.device)
            else:
                noise = _generate_noise(std=std, reference=p.summed_grad, generator=own.get(id(p), self.generator))
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
    canaries: GradientCanaries | None = None,
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
    computed once (pass ``features`` when already known). ``canaries`` join the run as gradient
    canaries and record what the auditor observes (benchmark/canaries.py).
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
    if recipe.private:
        run = _private_engine(plain, optimizer, x, y, aug, recipe, grad_sample_mode, streams, device, canaries)
    else:
        run = _Engine(plain, optimizer, nn.CrossEntropyLoss(), ShuffledBatches(len(x), recipe.steps_per_epoch, streams.torch("sampling")),
                      x, y, [], aug, plain, device, private=False, canaries=canaries, sample_rate=recipe.sample_rate,
                      canary_sampler=streams.torch("canaries") if canaries is not None else None)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(run.optimizer, T_max=recipe.steps) if hp["lr_schedule"] == "cosine" else None
    at = set(np.linspace(0, recipe.steps, n_checkpoints, endpoint=False).round().astype(int)) if n_checkpoints else set()
    log = _Log(full, at)
    with warnings.catch_warnings():
        # torch's note that the first layer's input needs no gradient does not apply here
        warnings.filterwarnings("ignore", message="Full backward hook is firing")
        for epoch in range(recipe.steps // recipe.steps_per_epoch):
            for idx in run.batches:
                log.before_step()
                log.after_step(*run.step(idx), drawn=len(idx))
                if scheduler is not None:
                    scheduler.step()
                if ema is not None:
                    ema.update_parameters(plain)
            log.end_epoch(epoch, recipe.steps // recipe.steps_per_epoch, progress)
    if log.steps != recipe.steps:
        raise RuntimeError(f"training took {log.steps} steps but the recipe (and its accounting) has T = {recipe.steps}")
    spent = math.inf
    if recipe.private:
        spent = epsilon_spent(recipe.noise_multiplier, recipe.sample_rate, log.steps, recipe.delta, recipe.accountant)
        if hasattr(run.model, "_close"):
            run.model._close()  # remove Opacus hooks so the plain module can be reused
    if ema is not None:
        if frozen is not None:
            full.head = ema.module
        else:
            full = ema.module
    full.eval()
    return log.result(full, recipe, spent)


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

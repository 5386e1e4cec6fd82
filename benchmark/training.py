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
import time
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

OPTIMIZERS = ("sgd", "adam", "nadam")
LR_SCHEDULES = ("constant", "cosine")
AUGMENTATIONS = ("shift", "hflip")
# Settings of train/ that shape one training run (``nonprivate`` may override any of them).
HYPERPARAMETERS = ("epochs", "batch_size", "optimizer", "lr", "momentum", "weight_decay", "lr_schedule",
                   "ema_decay", "augmult", "augmentations")


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
    epsilon: float = math.inf  # ε of the whole run at (σ, q, T) by ``accountant``

    @property
    def private(self) -> bool:
        return is_private(self.epsilon_target)

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
    if not is_private(privacy_cfg.epsilon):
        return DPRecipe(
            epsilon_target=math.inf, delta=privacy_cfg.delta, sample_rate=q, steps=steps, steps_per_epoch=k,
            noise_multiplier=0.0, max_grad_norm=math.inf, accountant="none",
        )
    sol: NoiseSolution = solve_noise_multiplier(
        epsilon=privacy_cfg.epsilon, delta=privacy_cfg.delta, sample_rate=q, steps=steps, accountant=privacy_cfg.accountant
    )
    return DPRecipe(
        epsilon_target=float(privacy_cfg.epsilon), delta=float(privacy_cfg.delta), sample_rate=q, steps=steps,
        steps_per_epoch=k, noise_multiplier=sol.sigma, max_grad_norm=float(privacy_cfg.max_grad_norm),
        accountant=sol.accountant, accountant_note=sol.note, epsilon=sol.epsilon,
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


def train(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    recipe: DPRecipe,
    hp: dict,
    grad_sample_mode: str = "hooks",
    seed: int = 0,
    device: torch.device | str = "cpu",
    progress: Callable | None = None,
    n_checkpoints: int = 0,
    features: torch.Tensor | None = None,
) -> TrainResult:
    """Train ``model`` on (x, y) with ``recipe``; ``hp`` are the settings of ``effective_train``.

    ``recipe.sample_rate`` and ``recipe.steps`` are used as given, so a shadow model trained on a
    smaller member set with the target's recipe keeps the target's q, T and σ.
    ``n_checkpoints`` > 0 keeps that many copies of the weights, evenly spaced over the steps from
    the initial state on (the model states an informed adversary knows, attacks/prior_aware.py).
    ``hp["ema_decay"]`` keeps an exponential moving average of the weights (post-processing of
    the DP iterates, so it costs no privacy) and returns it as the model.
    A model with fixed ``frozen_features`` (benchmark/models.py) trains only its head, on features
    of ``x`` computed once; pass ``features`` when they are already known (e.g. for shadow models).
    """
    from opacus import PrivacyEngine
    from opacus.data_loader import DPDataLoader
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    device = torch.device(device)
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    full = model.to(device)
    frozen, plain = split_frozen(full)
    if frozen is not None:
        x = features if features is not None else compute_features(frozen, x, device)
        if int(hp.get("augmult") or 0) > 0:
            raise ConfigError("train.augmult is not available for models with fixed features (their features are computed once)")
    model = plain
    model.train()
    aug = Augmentation(int(hp.get("augmult") or 0), list(hp.get("augmentations") or []), torch.Generator().manual_seed(seed + 2))
    if aug.active and recipe.private and grad_sample_mode == "ghost":
        raise ConfigError("train.augmult needs per-sample gradients; ghost clipping never forms them, use model.grad_sample_mode=hooks or ew")
    ema = AveragedModel(plain, multi_avg_fn=get_ema_multi_avg_fn(float(hp["ema_decay"]))) if hp.get("ema_decay") else None
    dataset = torch.utils.data.TensorDataset(x, y)
    optimizer = _optimizer(model.parameters(), hp)
    criterion: Callable = nn.CrossEntropyLoss()

    if recipe.private:
        loader = DPDataLoader(dataset, sample_rate=recipe.sample_rate, generator=generator)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Opacus' reminder that its RNG is not cryptographic
            engine = PrivacyEngine(accountant="rdp")  # its accountant is unused: ε comes from privacy.py
            prepared = engine.make_private(
                module=model, optimizer=optimizer, data_loader=loader, criterion=criterion,
                noise_multiplier=recipe.noise_multiplier, max_grad_norm=recipe.max_grad_norm,
                poisson_sampling=False, grad_sample_mode=grad_sample_mode,
                noise_generator=torch.Generator(device=device).manual_seed(seed + 1),
            )
        if grad_sample_mode == "ghost":
            model, optimizer, criterion, loader = prepared
        else:
            model, optimizer, loader = prepared
    else:
        batch = max(1, round(len(dataset) / recipe.steps_per_epoch))
        loader = torch.utils.data.DataLoader(dataset, batch_size=batch, shuffle=True, generator=generator)

    epochs = max(1, recipe.steps // recipe.steps_per_epoch)
    total_steps = epochs * len(loader)
    if hp["lr_schedule"] == "cosine":
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    elif hp["lr_schedule"] == "constant":
        scheduler = None
    else:
        raise ConfigError(f"train.lr_schedule={hp['lr_schedule']!r} is not valid; choose one of {', '.join(LR_SCHEDULES)}")

    snapshots: list[dict] = []
    at = set(np.linspace(0, total_steps, n_checkpoints, endpoint=False).round().astype(int)) if n_checkpoints else set()
    losses: list[float] = []
    steps = samples = 0
    start = time.perf_counter()
    with warnings.catch_warnings():
        # Opacus' reminder about its non-cryptographic RNG, and torch's note that the first layer's
        # input needs no gradient: neither applies to a benchmark run.
        warnings.filterwarnings("ignore", message="Secure RNG turned off")
        warnings.filterwarnings("ignore", message="Full backward hook is firing")
        for epoch in range(epochs):
            running, count = 0.0, 0
            for xb, yb in loader:
                if steps in at:
                    snapshots.append({k: v.detach().cpu().clone() for k, v in full.state_dict().items()})
                xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
                inputs, targets = aug.views(xb, yb) if aug.active else (xb, yb)
                optimizer.zero_grad(set_to_none=True)
                loss = criterion(model(inputs), targets)
                loss.backward()
                if aug.active and recipe.private:
                    aug.average_grad_samples(plain)
                optimizer.step()
                if scheduler is not None:
                    scheduler.step()
                if ema is not None:
                    ema.update_parameters(plain)
                steps += 1
                samples += len(yb)
                if len(yb):
                    running += float(loss.detach()) * len(yb)
                    count += len(yb)
            losses.append(running / max(count, 1))
            if not math.isfinite(losses[-1]):
                raise FloatingPointError(f"training diverged in epoch {epoch + 1} (loss {losses[-1]}); lower train.lr")
            if progress is not None:
                progress(epoch + 1, epochs, losses[-1])
    wall = time.perf_counter() - start

    if recipe.private:
        spent = epsilon_spent(recipe.noise_multiplier, recipe.sample_rate, steps, recipe.delta, recipe.accountant)
        if hasattr(model, "_close"):
            model._close()  # remove Opacus hooks so the plain module can be reused
    else:
        spent = math.inf
    if ema is not None:
        if frozen is not None:
            full.head = ema.module
        else:
            full = ema.module
    full.eval()
    return TrainResult(
        model=full, recipe=recipe, epsilon_spent=spent, steps_taken=steps, wall_time_s=wall,
        samples_per_s=samples / max(wall, 1e-9), loss_history=losses, checkpoints=snapshots,
    )


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

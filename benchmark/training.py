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
from .privacy import NoiseSolution, epsilon_spent, solve_noise_multiplier

OPTIMIZERS = ("sgd", "adam", "nadam")
LR_SCHEDULES = ("constant", "cosine")


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
    values = {
        "epochs": train_cfg.epochs, "batch_size": train_cfg.batch_size, "optimizer": train_cfg.optimizer,
        "lr": train_cfg.lr, "momentum": train_cfg.momentum, "weight_decay": train_cfg.weight_decay,
        "lr_schedule": train_cfg.lr_schedule,
    }
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


@dataclass
class TrainResult:
    model: nn.Module  # the plain module (Opacus wrappers removed), in eval mode
    recipe: DPRecipe
    epsilon_spent: float
    steps_taken: int
    wall_time_s: float
    samples_per_s: float
    loss_history: list[float] = field(default_factory=list)  # mean training loss per epoch


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
) -> TrainResult:
    """Train ``model`` on (x, y) with ``recipe``; ``hp`` are the optimiser settings of ``effective_train``.

    ``recipe.sample_rate`` and ``recipe.steps`` are used as given, so a shadow model trained on a
    smaller member set with the target's recipe keeps the target's q, T and σ.
    """
    from opacus import PrivacyEngine
    from opacus.data_loader import DPDataLoader

    device = torch.device(device)
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = model.to(device)
    model.train()
    dataset = torch.utils.data.TensorDataset(x, y)
    optimizer = _optimizer(model.parameters(), hp)
    criterion: Callable = nn.CrossEntropyLoss()
    n_batches = recipe.steps_per_epoch

    if recipe.private:
        loader = DPDataLoader(dataset, sample_rate=recipe.sample_rate, generator=generator)
        n_batches = len(loader)
        engine = PrivacyEngine(accountant="rdp")  # its accountant is unused: ε comes from privacy.py
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
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
        n_batches = len(loader)

    epochs = max(1, recipe.steps // recipe.steps_per_epoch)
    total_steps = epochs * n_batches
    if hp["lr_schedule"] == "cosine":
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    elif hp["lr_schedule"] == "constant":
        scheduler = None
    else:
        raise ConfigError(f"train.lr_schedule={hp['lr_schedule']!r} is not valid; choose one of {', '.join(LR_SCHEDULES)}")

    with warnings.catch_warnings():
        # Opacus' reminder about its non-cryptographic RNG, and torch's note that the first layer's
        # input needs no gradient: neither applies to a benchmark run.
        warnings.filterwarnings("ignore", message="Secure RNG turned off")
        warnings.filterwarnings("ignore", message="Full backward hook is firing")
        losses, steps, samples, wall = _loop(model, optimizer, criterion, loader, scheduler, epochs, device, progress)

    plain = getattr(model, "_module", model)
    plain.eval()
    if recipe.private:
        spent = epsilon_spent(recipe.noise_multiplier, recipe.sample_rate, steps, recipe.delta, recipe.accountant)
        if hasattr(model, "_close"):
            model._close()  # remove Opacus hooks so the plain module can be reused
    else:
        spent = math.inf
    return TrainResult(
        model=plain, recipe=recipe, epsilon_spent=spent, steps_taken=steps, wall_time_s=wall,
        samples_per_s=samples / max(wall, 1e-9), loss_history=losses,
    )


def _loop(model, optimizer, criterion, loader, scheduler, epochs, device, progress):
    losses: list[float] = []
    steps = 0
    samples = 0
    start = time.perf_counter()
    for epoch in range(epochs):
        running, count = 0.0, 0
        for xb, yb in loader:
            xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
            optimizer.zero_grad(set_to_none=True)
            loss = criterion(model(xb), yb)
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
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
    return losses, steps, samples, time.perf_counter() - start


@torch.no_grad()
def predict_logits(model: nn.Module, x: torch.Tensor, *, batch_size: int = 1024, device: torch.device | str = "cpu") -> np.ndarray:
    model.eval()
    out = [model(x[i : i + batch_size].to(device)).float().cpu() for i in range(0, len(x), batch_size)]
    return torch.cat(out).numpy() if out else np.zeros((0, 0), np.float32)

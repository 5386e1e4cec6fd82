"""The DP recipe of a training run, what an attacker knows of it, and the settings that shape it.

The DP recipe: Poisson sampling at rate q = 1/k with k = round(N/B) steps per epoch (expected
batch B ≈ N·q), per-sample clipping to norm C, Gaussian noise of std σ·C added to the sum of
clipped gradients, which is then divided by the expected batch size; T = epochs·k steps. σ is
solved for the target (ε, δ) before training (benchmark/privacy.py) and the ε actually spent is
recomputed from (σ, q, T) afterwards.

``DPRecipe`` fixes σ, q, T and C so that shadow/reference models can be trained with exactly
the target's recipe on a different (e.g. half-size) member set: same q and T, hence the same σ
and the same ε. ``AttackerView`` is the part of it every attacker is granted.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Callable

import torch

from .config import TUNED, is_private
from .privacy import NoiseSolution, solve_noise_multiplier

OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "sgd": lambda params, hp: torch.optim.SGD(params, lr=hp["lr"], momentum=hp["momentum"], weight_decay=hp["weight_decay"]),
    "adam": lambda params, hp: torch.optim.Adam(params, lr=hp["lr"], weight_decay=hp["weight_decay"]),
    "nadam": lambda params, hp: torch.optim.NAdam(params, lr=hp["lr"], weight_decay=hp["weight_decay"]),
}
LR_SCHEDULES = ("constant", "cosine")
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


def make_optimizer(params, hp: dict) -> torch.optim.Optimizer:
    """The optimiser that ``hp["optimizer"]`` names, with ``hp``'s learning rate and decay."""
    return OPTIMIZERS[hp["optimizer"]](params, hp)

"""Reconstructing a client's training images from its DP-SGD update by gradient inversion.

The threat model and the update the server observes are those of
:mod:`medprivbench.attacks.client_update` (:class:`ClientUpdate`: the DP-SGD update ḡ of one batch
of B images, with B, the image shape, σ and C public, and the labels given or recovered by
:func:`medprivbench.attacks.label_recovery.recover_labels`). The true images never enter this
module; they are scored in ``image_metrics.py``.

:func:`invert_gradients` — optimisation-based gradient inversion: find images x̂ whose gradient
matches ḡ. With the defaults of Geiping, Bauermeister, Dröge & Moeller, "Inverting gradients —
how easy is it to break privacy in federated learning?", NeurIPS 2020 (cosine distance + total
variation, Adam on the signed gradient, box constraint, step decay, restarts scored by the
matching loss), or of Zhu, Liu & Han, "Deep leakage from gradients", NeurIPS 2019 (squared
Euclidean distance, L-BFGS) via :data:`DLG_2019`. Options are table entries keyed by name
(:data:`GRADIENT_DISTANCES`, :data:`INITS`), so a new one does not touch the attack loop.

This module is the attack loop and its result; the parts it looks up are in
:mod:`medprivbench.attacks.inversion_parts`, the settings and presets in
:mod:`medprivbench.attacks.inversion_config`; all of them are importable from here.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import grad, vmap

from .client_update import (
    ClientUpdate,
    batch_loss_function,
    check_update_matches_model,
    simulate_client_update,
    trainable_parameters,
)
from .inversion_config import LR_DECAY_FRACTIONS, InversionConfig
from .inversion_parts import GRADIENT_DISTANCES, INITS, total_variation
from .label_recovery import recover_labels

# The engine imports the whole attack from here: the presets, settings and parts are re-exported.
from .inversion_config import DLG_2019, FAST, GEIPING_2020, OPTIMIZERS, GradientInversionConfig  # noqa: F401
from .inversion_parts import DETERMINISTIC_INITS, cosine_distance, l2_distance  # noqa: F401

Progress = Callable[[int, int, float], None]  # (iteration done, total iterations, current mean loss)


@dataclass
class InversionResult:
    """Output of :func:`run_gradient_inversion` for U updates.

    ``images`` (U, B, C, H, W): the best trial per update, clipped to the pixel range [0, 1]
    (known to the attacker; ``boxed`` also projects after every step); ``matching_loss`` (U,): its final
    gradient distance; ``labels`` (U, B): the labels used (given or recovered); ``iterations``
    per trial, ``n_trials`` = U · restarts and ``seconds`` of optimisation wall time.
    """

    images: torch.Tensor
    matching_loss: torch.Tensor
    labels: torch.Tensor
    iterations: int
    n_trials: int
    seconds: float
    config: InversionConfig = field(default_factory=InversionConfig)

    @property
    def iterations_per_second(self) -> float:
        """Optimiser iterations per second (all trials of an Adam run advance in one iteration)."""
        steps = self.iterations if self.config.optimizer == "adam" else self.iterations * self.n_trials
        return steps / self.seconds if self.seconds > 0 else math.inf

    @property
    def trial_iterations_per_second(self) -> float:
        """Single-trial iterations per second: what one-image-at-a-time attacks would need to match."""
        return self.iterations * self.n_trials / self.seconds if self.seconds > 0 else math.inf

    def summary(self) -> dict:
        return {
            "config": asdict(self.config),
            "matching_loss": [float(v) for v in self.matching_loss],
            "iterations": self.iterations,
            "n_trials": self.n_trials,
            "seconds": self.seconds,
            "iterations_per_second": self.iterations_per_second,
            "trial_iterations_per_second": self.trial_iterations_per_second,
        }


# --------------------------------------------------------------------------------------------
# Gradient inversion: the attack loop
# --------------------------------------------------------------------------------------------
class _Objective:
    """Gradient distance (+ α·TV) of T trials, each a dummy batch (B, C, H, W) with its own target.

    The dummy gradients are vectorised over trials with ``vmap(grad(·))`` and stay differentiable
    with respect to the dummy images (the double backward of gradient inversion).
    """

    def __init__(self, model: nn.Module, targets: list[torch.Tensor], labels: torch.Tensor, config: InversionConfig,
                 loss_fn: Callable = F.cross_entropy):
        named = trainable_parameters(model)
        self.params = tuple(p.detach() for _, p in named)
        self.trial_gradients = vmap(grad(batch_loss_function(model, [name for name, _ in named], loss_fn)), in_dims=(None, 0, 0))
        self.targets = targets  # per parameter: (T, *shape)
        self.labels = labels  # (T, B)
        self.distance = GRADIENT_DISTANCES[config.loss]
        self.tv_weight = config.tv_weight

    def subset(self, index: slice) -> "_Objective":
        sub = object.__new__(_Objective)
        sub.__dict__.update(self.__dict__)
        sub.targets = [t[index] for t in self.targets]
        sub.labels = self.labels[index]
        return sub

    def matching(self, dummy: torch.Tensor) -> torch.Tensor:
        return self.distance(self.trial_gradients(self.params, dummy, self.labels), self.targets)

    def __call__(self, dummy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(total loss per trial, gradient distance per trial)."""
        matching = self.matching(dummy)
        if self.tv_weight == 0:
            return matching, matching
        return matching + self.tv_weight * total_variation(dummy), matching


def _milestones(iterations: int) -> list[int]:
    return [max(1, int(iterations * f)) for f in LR_DECAY_FRACTIONS]


def _schedule(optimizer: torch.optim.Optimizer, config: InversionConfig):
    gamma = 0.1 if config.lr_decay else 1.0
    return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=_milestones(config.iterations), gamma=gamma)


def _run_adam(dummy: torch.Tensor, objective: _Objective, config: InversionConfig, progress: Optional[Progress]) -> None:
    """All trials in one Adam: its update is elementwise, so this equals independent runs."""
    optimizer = torch.optim.Adam([dummy], lr=config.lr)
    scheduler = _schedule(optimizer, config)
    for iteration in range(config.iterations):
        optimizer.zero_grad(set_to_none=True)
        total, _ = objective(dummy)
        total.sum().backward()
        if config.signed:
            dummy.grad.sign_()
        optimizer.step()
        scheduler.step()
        if config.boxed:
            with torch.no_grad():
                dummy.clamp_(0.0, 1.0)
        if progress is not None:
            progress(iteration + 1, config.iterations, float(total.detach().mean()))


def _run_lbfgs(dummy: torch.Tensor, objective: _Objective, config: InversionConfig, progress: Optional[Progress]) -> None:
    """One L-BFGS per trial (lr, no line search, as DLG); a trial that diverges keeps its last finite iterate."""
    n_trials = dummy.shape[0]
    for trial in range(n_trials):
        image = dummy[trial : trial + 1].detach().clone().requires_grad_(True)
        trial_objective = objective.subset(slice(trial, trial + 1))
        optimizer = torch.optim.LBFGS([image], lr=config.lr, max_iter=1, history_size=100)
        scheduler = _schedule(optimizer, config)
        last_loss = math.inf

        def closure():
            optimizer.zero_grad(set_to_none=True)
            total, _ = trial_objective(image)
            total.sum().backward()
            return total.sum().detach()

        for iteration in range(config.iterations):
            previous = image.detach().clone()
            last_loss = float(optimizer.step(closure))
            scheduler.step()
            if not (math.isfinite(last_loss) and torch.isfinite(image).all()):
                with torch.no_grad():
                    image.copy_(previous)
                break
            if config.boxed:
                with torch.no_grad():
                    image.clamp_(0.0, 1.0)
            if progress is not None:
                progress(trial * config.iterations + iteration + 1, n_trials * config.iterations, last_loss)
        with torch.no_grad():
            dummy[trial : trial + 1] = image.detach()


def _stack_targets(updates: Sequence[ClientUpdate], restarts: int, reference: torch.Tensor) -> list[torch.Tensor]:
    """Per parameter, the targets of all trials (U · restarts, *shape); trials of one update adjacent."""
    targets = []
    for tensors in zip(*(u.gradients for u in updates)):
        stacked = torch.stack([t.to(device=reference.device, dtype=reference.dtype) for t in tensors])
        targets.append(stacked.repeat_interleave(restarts, dim=0))
    return targets


def _validate_updates(model: nn.Module, updates: Sequence[ClientUpdate]) -> None:
    if not updates:
        raise ValueError("updates is empty; pass at least one ClientUpdate")
    first = updates[0]
    for update in updates:
        if (update.batch_size, update.image_shape) != (first.batch_size, first.image_shape):
            raise ValueError(
                f"updates mix batch size/image shape {update.batch_size}/{update.image_shape} with {first.batch_size}/{first.image_shape}; "
                "invert updates of different shapes in separate calls"
            )
        check_update_matches_model(model, update)


def _labels_for(model: nn.Module, update: ClientUpdate, seed: int, reference_images: Optional[torch.Tensor]) -> torch.Tensor:
    """The labels the update grants, else those recovered from it (:mod:`.label_recovery`)."""
    if update.labels is not None:
        return update.labels
    return recover_labels(model, update, reference_images=reference_images, seed=seed)


def run_gradient_inversion(
    model: nn.Module,
    updates: Sequence[ClientUpdate],
    config: InversionConfig = InversionConfig(),
    *,
    seed: int = 0,
    progress: Optional[Progress] = None,
    reference_images: Optional[torch.Tensor] = None,
    loss_fn: Callable = F.cross_entropy,
) -> InversionResult:
    """Invert U client updates (same B and image shape) with ``config.restarts`` trials each.

    Solves  x̂ = argmin_{x ∈ [0,1]^{B×C×H×W}}  d(∇θ ℓ(x, ŷ), ḡ) + α·TV(x)  per trial, with d the
    configured gradient distance, ŷ the given or recovered labels and ∇θ ℓ the gradient of the
    batch-mean training loss ``loss_fn`` (cross-entropy; a segmenter's per-image loss of masks ŷ,
    which must then be given) at the model's current weights. With Adam all U · restarts trials
    are optimised at once (vectorised), which is several times faster on CPU than one at a time
    and gives the same result. Labels missing from an update are recovered with
    :func:`recover_labels` (on ``reference_images`` when given). The model is not modified.
    """
    _validate_updates(model, updates)
    reference = next(model.parameters())
    restarts = config.restarts
    labels = torch.stack([_labels_for(model, u, seed, reference_images).to(reference.device) for u in updates])  # (U, B)
    trial_labels = labels.repeat_interleave(restarts, dim=0)
    objective = _Objective(model, _stack_targets(updates, restarts, reference), trial_labels, config, loss_fn)

    shape = (len(updates) * restarts, updates[0].batch_size, *updates[0].image_shape)
    dummy = INITS[config.init](shape, torch.Generator().manual_seed(seed)).to(device=reference.device, dtype=reference.dtype)
    if config.boxed:
        dummy = dummy.clamp(0.0, 1.0)
    dummy.requires_grad_(True)

    start = time.perf_counter()
    (_run_adam if config.optimizer == "adam" else _run_lbfgs)(dummy, objective, config, progress)
    seconds = time.perf_counter() - start

    with torch.no_grad():
        final = objective.matching(dummy.detach()).view(len(updates), restarts)
    final = torch.where(torch.isfinite(final), final, torch.full_like(final, math.inf))
    best = final.argmin(dim=1)
    images = dummy.detach().view(len(updates), restarts, *shape[1:])[torch.arange(len(updates)), best]
    return InversionResult(
        images=images.clamp(0.0, 1.0),
        matching_loss=final[torch.arange(len(updates)), best].cpu(),
        labels=labels.cpu(),
        iterations=config.iterations,
        n_trials=shape[0],
        seconds=seconds,
        config=config,
    )


def invert_gradients(
    model: nn.Module,
    update: ClientUpdate,
    config: InversionConfig = InversionConfig(),
    *,
    seed: int = 0,
    progress: Optional[Progress] = None,
    reference_images: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Reconstruct the batch (B, C, H, W) behind one client update (see :func:`run_gradient_inversion`)."""
    return run_gradient_inversion(model, [update], config, seed=seed, progress=progress, reference_images=reference_images).images[0]


__all__ = [
    "DLG_2019",
    "FAST",
    "GEIPING_2020",
    "GRADIENT_DISTANCES",
    "INITS",
    "InversionConfig",
    "GradientInversionConfig",
    "InversionResult",
    "cosine_distance",
    "invert_gradients",
    "l2_distance",
    "run_gradient_inversion",
    "total_variation",
    # the client's side, with the attack for the engine's convenience (defined in client_update.py)
    "ClientUpdate",
    "simulate_client_update",
]

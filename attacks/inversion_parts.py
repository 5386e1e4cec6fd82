"""The interchangeable parts of gradient inversion: gradient distances, the image prior, starting points.

Each kind of part is a table keyed by name (:data:`GRADIENT_DISTANCES`, :data:`INITS`), as in
Geiping et al.'s and Zhu et al.'s attacks (see :mod:`medprivbench.attacks.reconstruction`): the
settings (:mod:`medprivbench.attacks.inversion_config`) choose an entry by its key and the attack
loop looks it up, so a new distance or initialisation is one entry here and touches neither.
The total-variation prior (:func:`total_variation`) is the one prior the attack uses, weighted by
the settings' ``tv_weight``.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch


def _per_trial_dot(a: Sequence[torch.Tensor], b: Sequence[torch.Tensor]) -> torch.Tensor:
    return sum((x * y).flatten(1).sum(1) for x, y in zip(a, b))


def cosine_distance(trial: Sequence[torch.Tensor], target: Sequence[torch.Tensor]) -> torch.Tensor:
    """1 − cos(g, ḡ) over all parameters jointly, per trial (Geiping et al. 2020, eq. 4).

    Evaluated as ½‖g/‖g‖ − ḡ/‖ḡ‖‖², which equals 1 − cos but keeps its precision near a match:
    1 − cos computed directly is lost below float32's resolution (≈ 6·10⁻⁸).
    """
    trial_norm = _per_trial_dot(trial, trial).sqrt().clamp(min=1e-30)
    target_norm = _per_trial_dot(target, target).sqrt().clamp(min=1e-30)
    shape = lambda g, n: n.view(-1, *([1] * (g.ndim - 1)))  # noqa: E731
    return 0.5 * sum((g / shape(g, trial_norm) - t / shape(t, target_norm)).pow(2).flatten(1).sum(1) for g, t in zip(trial, target))


def l2_distance(trial: Sequence[torch.Tensor], target: Sequence[torch.Tensor]) -> torch.Tensor:
    """‖g − ḡ‖² / ‖ḡ‖² per trial: DLG's squared Euclidean distance (Zhu et al. 2019), divided by
    the constant ‖ḡ‖² so that its scale (and L-BFGS' tolerances) do not depend on the model."""
    difference = [g - t for g, t in zip(trial, target)]
    return _per_trial_dot(difference, difference) / _per_trial_dot(target, target).clamp(min=1e-30)


GRADIENT_DISTANCES: dict[str, Callable[[Sequence[torch.Tensor], Sequence[torch.Tensor]], torch.Tensor]] = {
    "cosine": cosine_distance,
    "l2": l2_distance,
}


def total_variation(images: torch.Tensor) -> torch.Tensor:
    """Anisotropic total variation per trial: mean |Δx| + mean |Δy| (+ mean |Δz| for volumes) over a
    (T, B, C, H, W) or (T, B, C, D, H, W) batch (the TV prior of Geiping et al. 2020, as in their
    code, extended to 3D by the third axis' differences)."""
    total = 0.0
    for axis in range(3, images.ndim):
        n = images.shape[axis]
        step = images.narrow(axis, 1, n - 1) - images.narrow(axis, 0, n - 1)
        total = total + step.abs().flatten(1).mean(1)
    return total


def _init_randn(shape, generator):
    """N(0.5, 0.25²): Geiping et al.'s standard-normal start in normalised space (pixel std ≈ 0.25)."""
    return 0.5 + 0.25 * torch.randn(shape, generator=generator)


INITS: dict[str, Callable[[tuple, torch.Generator], torch.Tensor]] = {
    "randn": _init_randn,
    "rand": lambda shape, generator: torch.rand(shape, generator=generator),
    "half": lambda shape, generator: torch.full(shape, 0.5),
}
DETERMINISTIC_INITS = frozenset({"half"})

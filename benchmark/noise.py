"""DP-SGD's optimiser: Opacus' clipping, with the noise drawn from the run's own sources.

Opacus' ``DPOptimizer`` clips every per-sample gradient to norm C, sums, adds N(0, σ²C²·I) and
divides by the expected batch size. Two things about the noise differ here, and Opacus offers
``add_noise`` as the method to override for them:

* **Secure runs** (``privacy.secure_rng``) draw the noise from the operating system's CSPRNG
  (:func:`~.secure_rng.secure_gaussian`); Opacus' own secure mode needs torchcsprng.
* **Parameters with a generator of their own** draw from it instead of the optimiser's: the
  gradient canaries' block (benchmark/canaries.py) is the optimiser's last parameter, and with its
  own generator it takes nothing from the classifier's noise stream, so the classifier's run is
  the same with or without an audit.

Every other parameter draws exactly as Opacus' non-secure path does (:func:`gaussian_noise`), from
the same generator in the same order, so a run without either is Opacus' run to the bit
(tests/benchmark/test_noise.py compares the two).

The optimiser subclasses Opacus' own (``DPOptimizer``, and ``DPOptimizerFastGradientClipping``
for ghost clipping, which clips before the sum and hands ``add_noise`` the clipped sum all the
same), and :func:`make_private` assembles module, optimiser and loss from Opacus' public parts,
as ``PrivacyEngine.make_private`` would: Opacus' accountant is not needed, since ε comes from
benchmark/privacy.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import torch
import torch.nn as nn
from opacus.grad_sample import AbstractGradSampleModule, prepare_module
from opacus.optimizers import DPOptimizer, DPOptimizerFastGradientClipping
from opacus.utils.fast_gradient_clipping_utils import DPLossFastGradientClipping
from opacus.validators import ModuleValidator

from .secure_rng import secure_gaussian
from .vmap_engine import VmapGradSampleModule

# Set on a parameter's clipped sum once noise was added to it: a second ``add_noise`` on the same
# sum (no ``zero_grad`` in between) would reuse its gradients and void the privacy analysis.
NOISED = "medprivbench_noised"


def gaussian_noise(std: float, reference: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """N(0, std²) noise shaped like ``reference``, drawn as Opacus' non-secure path draws it: one
    ``torch.normal`` call of the reference's shape, device and dtype; zeros (and no draw) for std = 0."""
    if std == 0:
        return torch.zeros(reference.shape, device=reference.device, dtype=reference.dtype)
    return torch.normal(mean=0, std=std, size=reference.shape, device=reference.device, generator=generator,
                        dtype=reference.dtype)


class StreamNoise:
    """``add_noise`` for Opacus' DP optimisers: std σ·C on every parameter's clipped sum, drawn
    from the CSPRNG (``secure_rng``), from the parameter's own generator (``own_generators``, by
    ``id`` of the parameter), or from the optimiser's ``generator``, in that order of precedence."""

    def __init__(self, optimizer: torch.optim.Optimizer, *, secure_rng: bool = False,
                 own_generators: Mapping[int, torch.Generator] | None = None, **opacus_settings):
        super().__init__(optimizer, **opacus_settings)
        self.secure_rng = secure_rng
        self.own_generators = dict(own_generators or {})

    def add_noise(self) -> None:
        std = self.noise_multiplier * self.max_grad_norm
        for p in self.params:
            summed = p.summed_grad
            if getattr(summed, NOISED, False):
                raise ValueError("noise was already added to these gradients: call zero_grad() between two optimiser "
                                 "steps, or the privacy analysis does not hold")
            if self.secure_rng:
                noise = secure_gaussian(summed.shape, std, summed.dtype, summed.device)
            else:
                noise = gaussian_noise(std, summed, self.own_generators.get(id(p), self.generator))
            p.grad = (summed + noise).view_as(p)
            setattr(summed, NOISED, True)


class StreamNoiseDPOptimizer(StreamNoise, DPOptimizer):
    """Opacus' ``DPOptimizer`` (per-sample gradients clipped in the optimiser) with :class:`StreamNoise`."""


class StreamNoiseGhostDPOptimizer(StreamNoise, DPOptimizerFastGradientClipping):
    """Opacus' ghost-clipping optimiser (the loss clips, the optimiser sums) with :class:`StreamNoise`."""


# The optimiser for each per-sample gradient engine (Opacus' ``get_optimizer_class``, flat clipping).
DP_OPTIMIZERS: dict[str, type[DPOptimizer]] = {
    "hooks": StreamNoiseDPOptimizer,
    "functorch": StreamNoiseDPOptimizer,
    "ew": StreamNoiseDPOptimizer,
    "ghost": StreamNoiseGhostDPOptimizer,
    "vmap": StreamNoiseDPOptimizer,  # torch.func per-sample gradients of the whole model (benchmark/vmap_engine.py)
}


@dataclass
class PrivateParts:
    """What DP-SGD trains with: the module that records per-sample gradients (or their norms), the
    optimiser that clips and noises them, and the loss to call (ghost clipping's two-pass loss).
    The ``vmap`` engine's module computes them in ``per_sample_backward(inputs, targets)`` instead
    of a backward pass of the loss."""

    module: AbstractGradSampleModule | VmapGradSampleModule
    optimizer: DPOptimizer
    criterion: Callable


def make_private(module: nn.Module, optimizer: torch.optim.Optimizer, criterion: Callable, *, grad_sample_mode: str,
                 noise_multiplier: float, max_grad_norm: float, expected_batch_size: int,
                 generator: torch.Generator | None, secure_rng: bool = False,
                 own_generators: Mapping[int, torch.Generator] | None = None) -> PrivateParts:
    """Opacus' DP-SGD on ``module``: checked for per-sample gradients (no BatchNorm), wrapped by the
    ``grad_sample_mode`` engine, its ``optimizer`` wrapped in the matching :data:`DP_OPTIMIZERS`
    class, which divides the noisy sum by ``expected_batch_size`` (a mean loss); ``generator``
    draws the noise (None with ``secure_rng``). The ``vmap`` engine is not Opacus': its module
    (:class:`~.vmap_engine.VmapGradSampleModule`) differentiates ``criterion`` per sample itself.
    The module's ``cleanup()`` leaves ``module`` plain again."""
    ModuleValidator.validate(module, strict=True)
    ghost = grad_sample_mode == "ghost"
    if grad_sample_mode == "vmap":
        wrapped = VmapGradSampleModule(module, criterion)
    else:
        wrapped = prepare_module(module, grad_sample_mode=grad_sample_mode, batch_first=True, loss_reduction="mean",
                                 **({"max_grad_norm": max_grad_norm} if ghost else {}))
    dp_optimizer = DP_OPTIMIZERS[grad_sample_mode](
        optimizer, noise_multiplier=noise_multiplier, max_grad_norm=max_grad_norm,
        expected_batch_size=expected_batch_size, loss_reduction="mean", generator=generator,
        secure_rng=secure_rng, own_generators=own_generators,
    )
    if ghost:  # the loss runs ghost clipping's two backward passes
        criterion = DPLossFastGradientClipping(wrapped, dp_optimizer, criterion, "mean")
    return PrivateParts(wrapped, dp_optimizer, criterion)

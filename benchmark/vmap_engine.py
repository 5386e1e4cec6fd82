"""The ``vmap`` per-sample gradient engine: the whole model differentiated per sample by ``torch.func``.

Opacus' engines compute per-sample gradients layer by layer (hooks, expanded weights, functorch
per layer) during one batched backward pass. This engine instead takes the gradient of each
sample's own loss with respect to all trainable parameters at once,

    g_i = ∇_θ ℓ(f_θ(x_i), y_i),    ℓ the criterion on a batch of one (its "mean" over one sample),

vectorised over the batch with ``torch.func.vmap(torch.func.grad_and_value(...))`` over
``torch.func.functional_call`` (the JAX approach of Subramani et al. 2021, "Enabling fast
differentially private SGD via just-in-time compilation and vectorization"). g_i is what Opacus'
engines store with ``loss_reduction="mean"``: sample i's gradient of its own loss, shape
(B, *p.shape) in ``p.grad_sample``; Opacus' public ``DPOptimizer`` then clips each to norm C, sums,
noises and divides by the expected batch size exactly as for the other engines (benchmark/noise.py).

Any layer torch.func can batch works (weight-standardised convolutions included), without a
per-layer registry; buffers are read from the module as they are (never differentiated). On a
CPU it costs about 1.4× a non-private step for the U-Net segmenter, where Opacus' engines cost
2.2× or more (``medprivbench-bench --phases privacy-cost --models unet``).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn
from opacus.grad_sample.gsm_base import OPACUS_PARAM_MONKEYPATCH_ATTRS
from torch.func import functional_call, grad_and_value, vmap


class VmapGradSampleModule(nn.Module):
    """``module`` as it computes, plus :meth:`per_sample_backward`, which leaves each trainable
    parameter's per-sample gradients in ``p.grad_sample`` for Opacus' ``DPOptimizer``.

    ``criterion(logits, targets)`` is the training loss; each sample's loss is the criterion
    applied to that sample alone (a batch of one), so a mean-reduced criterion gives ℓ_i.
    """

    def __init__(self, module: nn.Module, criterion: Callable):
        super().__init__()
        self.wrapped = module
        self.criterion = criterion
        # (trainable parameters, inputs, targets) → (per-sample gradients, per-sample losses)
        self._per_sample = vmap(grad_and_value(self._sample_loss), in_dims=(None, 0, 0))

    def forward(self, *args, **kwargs):
        return self.wrapped(*args, **kwargs)

    def _sample_loss(self, params: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """ℓ_i: the criterion on sample i alone (parameters not in ``params`` and buffers: the module's own)."""
        return self.criterion(functional_call(self.wrapped, params, (x.unsqueeze(0),)), y.unsqueeze(0))

    def trainable(self) -> dict[str, nn.Parameter]:
        """The parameters DP-SGD updates (those that require gradients), by name."""
        return {name: p for name, p in self.wrapped.named_parameters() if p.requires_grad}

    def per_sample_backward(self, inputs: torch.Tensor, targets: torch.Tensor) -> float:
        """Set ``p.grad_sample`` = (∇ℓ_1, …, ∇ℓ_B) on every trainable parameter; returns the mean loss.

        Stands in for ``criterion(module(inputs), targets).backward()`` under an Opacus engine with
        a mean loss: the same per-sample gradients, and no ``p.grad`` (the optimiser forms it).
        """
        trainable = self.trainable()
        grads, losses = self._per_sample({name: p.detach() for name, p in trainable.items()}, inputs, targets)
        for name, p in trainable.items():
            p.grad_sample = grads[name]
        return float(losses.mean())

    def cleanup(self) -> None:
        """Remove the per-sample attributes from the parameters: the module is plain again (as
        Opacus' ``GradSampleModule.cleanup`` leaves it; this engine installs no hooks)."""
        for p in self.wrapped.parameters():
            for attr in OPACUS_PARAM_MONKEYPATCH_ATTRS:
                if hasattr(p, attr):
                    delattr(p, attr)

"""One client's DP-SGD update: what the client computes, and all that the server sees of it.

Threat model (DESIGN.md, "gradient inversion"). An honest-but-curious server knows the model's
architecture and its weights θ at the step (passed to every attack as an ``nn.Module``) and
observes one client's update for a batch of B images — nothing else:

    ḡ = ( Σ_n clip_C(∇θ ℓ(x_n, y_n)) + N(0, σ²C² I) ) / B,       clip_C(g) = g · min(1, C / ‖g‖₂),

the gradient of one DP-SGD step (Abadi et al., "Deep learning with differential privacy", CCS
2016) with ℓ the cross-entropy loss, C the per-sample clipping norm (``max_grad_norm``; ∞: no
clipping) and σ the noise multiplier (0: no noise). B, the image shape, σ and C are public in
DP-SGD, so :class:`ClientUpdate` carries them; the labels are optional (given, or inferred from the
update by :func:`medprivbench.attacks.label_recovery.recover_labels`). The true images stay with the
client: they enter only :func:`dp_sgd_update` / :func:`simulate_client_update` (the client's side)
and the scoring code in ``image_metrics.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call, grad, vmap

GRAD_METHODS = ("vmap", "loop")


# --------------------------------------------------------------------------------------------
# The client's side: per-sample gradients and the DP-SGD update
# --------------------------------------------------------------------------------------------
def trainable_parameters(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """(name, parameter) of every parameter that requires grad, in ``named_parameters`` order.

    This order is the order of the tensors in an update.
    """
    return [(name, p) for name, p in model.named_parameters() if p.requires_grad]


def batch_loss_function(model: nn.Module, names: Sequence[str], loss_fn: Callable = F.cross_entropy):
    """ℓ(θ; x, y) = mean training loss of the batch (``loss_fn``: cross-entropy, or a segmenter's
    per-image loss of masks y), as a function of the trainable tensors θ."""
    frozen = {name: p.detach() for name, p in model.named_parameters() if not p.requires_grad}
    buffers = dict(model.named_buffers())

    def loss(param_values: tuple[torch.Tensor, ...], images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        params = {**dict(zip(names, param_values)), **frozen}
        return loss_fn(functional_call(model, (params, buffers), (images,)), labels)

    return loss


def per_sample_gradients(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, method: str = "vmap",
                         loss_fn: Callable = F.cross_entropy) -> list[torch.Tensor]:
    """∇θ ℓ(x_n, y_n) for every sample n: one tensor (B, *shape) per trainable parameter.

    ``method="vmap"`` vectorises ``torch.func.grad`` over the batch; ``"loop"`` runs one backward
    pass per sample (slow; for modules that ``torch.func`` cannot transform).
    """
    if method not in GRAD_METHODS:
        raise ValueError(f"method={method!r} is not valid; choose one of {', '.join(GRAD_METHODS)}")
    named = trainable_parameters(model)
    if method == "vmap":
        names = [name for name, _ in named]
        values = tuple(p.detach() for _, p in named)
        loss = batch_loss_function(model, names, loss_fn)

        def sample_loss(param_values, image, label):
            return loss(param_values, image.unsqueeze(0), label.unsqueeze(0))

        return list(vmap(grad(sample_loss), in_dims=(None, 0, 0))(values, images, labels))
    params = [p for _, p in named]
    rows = [torch.autograd.grad(loss_fn(model(images[n : n + 1]), labels[n : n + 1]), params) for n in range(len(images))]
    return [torch.stack(column) for column in zip(*rows)]


def clip_factors(norms: torch.Tensor, max_grad_norm: float) -> torch.Tensor:
    """min(1, C / (‖g_n‖ + 1e-6)) per sample, as Opacus computes it; 1 when C = ∞."""
    if math.isinf(max_grad_norm):
        return torch.ones_like(norms)
    return (max_grad_norm / (norms + 1e-6)).clamp(max=1.0)


def per_sample_norms(per_sample: Sequence[torch.Tensor]) -> torch.Tensor:
    """‖g_n‖₂ over all parameters jointly, per sample, from one (B, *shape) tensor per parameter."""
    return torch.sqrt(sum(g.flatten(1).pow(2).sum(1) for g in per_sample))


def _validate_dp_parameters(noise_multiplier: float, max_grad_norm: float) -> None:
    if not (math.isfinite(noise_multiplier) and noise_multiplier >= 0):
        raise ValueError(f"noise_multiplier={noise_multiplier!r} is not valid; expected a finite σ ≥ 0")
    if not max_grad_norm > 0:
        raise ValueError(f"max_grad_norm={max_grad_norm!r} is not valid; expected C > 0 (math.inf: no clipping)")
    if noise_multiplier > 0 and math.isinf(max_grad_norm):
        raise ValueError(f"noise_multiplier={noise_multiplier} needs a finite max_grad_norm: the noise has standard deviation σ·C")


def _validate_batch(images: torch.Tensor, labels: torch.Tensor) -> None:
    if images.ndim not in (4, 5) or not images.is_floating_point():
        raise ValueError(f"images have shape {tuple(images.shape)} and dtype {images.dtype}; "
                         "expected float (B, C, H, W), or (B, C, D, H, W) for volumes")
    if labels.shape not in ((images.shape[0],), (images.shape[0], *images.shape[2:])):
        raise ValueError(f"labels have shape {tuple(labels.shape)}; expected ({images.shape[0]},), one class index per image, "
                         f"or masks {(images.shape[0], *images.shape[2:])}")


def dp_sgd_update(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    noise_multiplier: float,
    max_grad_norm: float,
    generator: Optional[torch.Generator] = None,
    method: str = "vmap",
    chunk_size: int = 64,
    loss_fn: Callable = F.cross_entropy,
) -> list[torch.Tensor]:
    """The gradient of one DP-SGD step for this batch (Abadi et al. 2016), one tensor per parameter.

    ḡ = (Σ_n g_n · min(1, C/(‖g_n‖ + 10⁻⁶)) + σ·C·z) / B with g_n = ∇θ ℓ(x_n, y_n) the per-sample
    gradient of the cross-entropy loss over all trainable parameters, z ~ N(0, I) per coordinate
    (drawn from ``generator``), C = ``max_grad_norm`` (math.inf: no clipping) and σ =
    ``noise_multiplier`` (0: no noise). With σ = 0 and C = ∞ this is the plain mean gradient.
    The batch size B is fixed here (Opacus divides by the *expected* batch size under Poisson
    sampling). Samples are processed ``chunk_size`` at a time to bound memory.
    """
    _validate_dp_parameters(noise_multiplier, max_grad_norm)
    _validate_batch(images, labels)
    if not (isinstance(chunk_size, int) and chunk_size >= 1):
        raise ValueError(f"chunk_size={chunk_size!r} is not valid; expected an integer ≥ 1")
    params = [p for _, p in trainable_parameters(model)]
    total = [torch.zeros_like(p, dtype=p.dtype) for p in params]
    for start in range(0, len(images), chunk_size):
        per_sample = per_sample_gradients(model, images[start : start + chunk_size], labels[start : start + chunk_size],
                                          method=method, loss_fn=loss_fn)
        factors = clip_factors(per_sample_norms(per_sample), max_grad_norm)
        for acc, g in zip(total, per_sample):
            acc += torch.einsum("n,n...->...", factors.to(g.dtype), g.detach())
    if noise_multiplier > 0:
        std = noise_multiplier * max_grad_norm
        for acc in total:
            device = generator.device if generator is not None else acc.device
            acc += std * torch.randn(acc.shape, generator=generator, device=device, dtype=acc.dtype).to(acc.device)
    return [acc / len(images) for acc in total]


# --------------------------------------------------------------------------------------------
# The attacker's view
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class ClientUpdate:
    """Everything the server observes of one client's step — never the images.

    ``gradients``: the DP-SGD update ḡ, one tensor per trainable parameter of the model in
    ``named_parameters`` order; ``batch_size`` B; ``image_shape`` (C, H, W) or (C, D, H, W); the DP parameters
    σ (``noise_multiplier``) and C (``max_grad_norm``, math.inf: no clipping), public in DP-SGD;
    ``labels`` (B,) when the threat model grants them, else None (the attacker infers them).
    """

    gradients: tuple[torch.Tensor, ...]
    batch_size: int
    image_shape: tuple[int, int, int]
    noise_multiplier: float = 0.0
    max_grad_norm: float = math.inf
    labels: Optional[torch.Tensor] = None

    def __post_init__(self):
        object.__setattr__(self, "gradients", tuple(g.detach() for g in self.gradients))
        object.__setattr__(self, "image_shape", tuple(int(s) for s in self.image_shape))
        if not (isinstance(self.batch_size, int) and self.batch_size >= 1):
            raise ValueError(f"batch_size={self.batch_size!r} is not valid; expected an integer ≥ 1")
        if len(self.image_shape) not in (3, 4) or min(self.image_shape) < 1:
            raise ValueError(f"image_shape={self.image_shape} is not valid; expected (C, H, W), or (C, D, H, W) for volumes")
        _validate_dp_parameters(self.noise_multiplier, self.max_grad_norm)
        if self.labels is not None:
            labels = torch.as_tensor(self.labels, dtype=torch.long).detach()
            if labels.shape not in ((self.batch_size,), (self.batch_size, *self.image_shape[1:])):
                raise ValueError(f"labels have shape {tuple(labels.shape)}; expected ({self.batch_size},), masks "
                                 f"{(self.batch_size, *self.image_shape[1:])}, or None")
            object.__setattr__(self, "labels", labels)

    def threat_model(self) -> dict:
        """A JSON-friendly description of what the attacker sees, to print beside the results."""
        return {
            "observes": "one client's DP-SGD update (per-sample clipped, noised, averaged) and the model weights",
            "batch_size": self.batch_size,
            "image_shape": list(self.image_shape),
            "noise_multiplier": self.noise_multiplier,
            "max_grad_norm": self.max_grad_norm,
            "labels": "given" if self.labels is not None else "inferred from the update",
        }


def simulate_client_update(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    noise_multiplier: float,
    max_grad_norm: float,
    reveal_labels: bool = False,
    generator: Optional[torch.Generator] = None,
    method: str = "vmap",
    loss_fn: Callable = F.cross_entropy,
) -> ClientUpdate:
    """The client's side: compute :func:`dp_sgd_update` and package what the server sees."""
    gradients = dp_sgd_update(
        model, images, labels, noise_multiplier=noise_multiplier, max_grad_norm=max_grad_norm, generator=generator, method=method,
        loss_fn=loss_fn,
    )
    return ClientUpdate(
        gradients=tuple(gradients),
        batch_size=len(images),
        image_shape=tuple(images.shape[1:]),
        noise_multiplier=noise_multiplier,
        max_grad_norm=max_grad_norm,
        labels=labels.detach().clone() if reveal_labels else None,
    )


def check_update_matches_model(model: nn.Module, update: ClientUpdate) -> None:
    """Raise a ValueError unless the update has one tensor of the right shape per trainable parameter."""
    named = trainable_parameters(model)
    if len(named) != len(update.gradients):
        raise ValueError(f"the update has {len(update.gradients)} tensors but the model has {len(named)} trainable parameters")
    for (name, p), g in zip(named, update.gradients):
        if g.shape != p.shape:
            raise ValueError(f"update tensor for {name!r} has shape {tuple(g.shape)}; the model's parameter has {tuple(p.shape)}")


__all__ = [
    "GRAD_METHODS",
    "ClientUpdate",
    "batch_loss_function",
    "check_update_matches_model",
    "clip_factors",
    "dp_sgd_update",
    "per_sample_gradients",
    "per_sample_norms",
    "simulate_client_update",
    "trainable_parameters",
]

"""Recovering a batch's labels from the classification head's gradient in a client update.

The server of :mod:`medprivbench.attacks.client_update` sees the update ḡ but not the labels;
gradient inversion needs them. For cross-entropy with softmax, ∂ℓ/∂z_j = p_j − y_j, so the last
layer's gradient carries the label counts:

* B = 1, iDLG (Zhao, Mopuri & Bilen, "iDLG: improved deep leakage from gradients", 2020): the true
  class is the only one with a negative bias gradient.
* B > 1, the count estimate of Geng et al. 2021 ("Towards general deep leakage in federated
  learning", arXiv 2110.09074), from public (or noise) reference images.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from .client_update import (
    ClientUpdate,
    check_update_matches_model,
    clip_factors,
    per_sample_gradients,
    per_sample_norms,
    trainable_parameters,
)


def _classifier_head(model: nn.Module) -> tuple[nn.Linear, int, Optional[int]]:
    """The last nn.Linear and the positions of its weight and bias in the update."""
    heads = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not heads:
        raise ValueError("label recovery needs a final nn.Linear classification layer; the model has none (pass the labels instead)")
    head = heads[-1]
    position = {id(p): i for i, (_, p) in enumerate(trainable_parameters(model))}
    if id(head.weight) not in position:
        raise ValueError("label recovery needs the gradient of the last nn.Linear's weight, which is frozen in this model")
    bias_index = position.get(id(head.bias)) if head.bias is not None else None
    return head, position[id(head.weight)], bias_index


def _reference_batch(image_shape, n_dummy: int, reference_images: Optional[torch.Tensor], generator: torch.Generator) -> torch.Tensor:
    """Public images when the attacker has them (up to ``n_dummy``, drawn at random), else U[0, 1] noise."""
    if reference_images is None:
        return torch.rand((n_dummy, *image_shape), generator=generator)
    reference_images = torch.as_tensor(reference_images, dtype=torch.float32)
    if reference_images.ndim == 3:
        reference_images = reference_images.unsqueeze(1)
    if tuple(reference_images.shape[1:]) != tuple(image_shape):
        raise ValueError(f"reference_images have shape {tuple(reference_images.shape[1:])} per image; expected {tuple(image_shape)}")
    chosen = torch.randperm(len(reference_images), generator=generator)[:n_dummy]
    return reference_images[chosen]


def _dummy_statistics(model: nn.Module, head: nn.Linear, dummy: torch.Tensor):
    """Mean softmax output p̄ and mean head input h̄ of the model on the reference images."""
    captured: list[torch.Tensor] = []
    hook = head.register_forward_hook(lambda module, inputs, output: captured.append(inputs[0].detach()))
    try:
        with torch.no_grad():
            probabilities = F.softmax(model(dummy), dim=1)
    finally:
        hook.remove()
    return probabilities.mean(0), captured[0].flatten(1).mean(0)


def _mean_clip_factor(model: nn.Module, dummy: torch.Tensor, n_classes: int, max_grad_norm: float, generator: torch.Generator) -> float:
    """E[min(1, C/‖g‖)] over dummy inputs with random labels: how much clipping shrinks a sample."""
    if math.isinf(max_grad_norm):
        return 1.0
    labels = torch.randint(n_classes, (len(dummy),), generator=generator).to(dummy.device)
    factors = []
    for start in range(0, len(dummy), 16):
        per_sample = per_sample_gradients(model, dummy[start : start + 16], labels[start : start + 16])
        factors.append(clip_factors(per_sample_norms(per_sample), max_grad_norm))
    return float(torch.cat(factors).mean())


def _round_counts(counts: torch.Tensor, total: int) -> torch.Tensor:
    """Non-negative integers summing to ``total`` closest to ``counts`` (largest remainders)."""
    counts = counts.clamp(min=0)
    counts = counts * (total / counts.sum()) if counts.sum() > 0 else torch.full_like(counts, total / len(counts))
    whole = counts.floor()
    missing = total - int(whole.sum())
    order = torch.argsort(counts - whole, descending=True)
    whole[order[:missing]] += 1
    return whole.long()


def recover_labels(
    model: nn.Module,
    update: ClientUpdate,
    *,
    reference_images: Optional[torch.Tensor] = None,
    n_dummy: int = 64,
    seed: int = 0,
) -> torch.Tensor:
    """Infer the batch's labels (B,) from the classification head's gradient.

    For cross-entropy with softmax, ∂ℓ/∂z_j = p_j − y_j, so the head's gradients are
    ∇b_j = (1/B) Σ_n c_n (p_nj − y_nj) and ∇W_j = (1/B) Σ_n c_n (p_nj − y_nj) h_n, with h_n the
    head's input and c_n the clipping factor of sample n.

    * B = 1, iDLG (Zhao et al. 2020): the true class is the only j with p_j − y_j < 0, so
      ŷ = argmin_j ∇b_j; without a bias, argmin_j ⟨∇W_j, h̄⟩ with h̄ the mean head input of the
      reference images below (this needs ⟨h, h̄⟩ > 0 for the true image's features h, which
      holds for non-negative, e.g. ReLU, features).
    * B > 1, Geng et al. 2021: n_j ≈ B·p̄_j − B·∇b_j / c̄ per class, where p̄ is the model's mean
      softmax output on ``n_dummy`` reference images (standing in for the unknown p_n) and
      c̄ the mean clipping factor min(1, C/‖g‖) of those images' per-sample gradients (1 without
      clipping). Without a bias, ∇b_j is replaced by ⟨∇W_j, h̄⟩/‖h̄‖² with h̄ the mean head input
      of the reference images. The counts are rounded to integers summing to B (largest remainders).
      Exact in expectation for an untrained model without clipping; DP noise of std σC/B on
      every coordinate makes the estimate as noisy as it should.

    The reference images are public images of the same kind (N, C, H, W) in [0, 1] when the
    attacker has them (``reference_images``, e.g. another split or a public dataset: the
    estimate of p̄ and c̄ is much better on real images), else uniform noise.
    Returns the recovered labels sorted ascending (the order of a batch carries no information).
    """
    check_update_matches_model(model, update)
    head, weight_index, bias_index = _classifier_head(model)
    if not (isinstance(n_dummy, int) and n_dummy >= 1):
        raise ValueError(f"n_dummy={n_dummy!r} is not valid; expected an integer ≥ 1")
    generator = torch.Generator().manual_seed(seed)
    reference = next(model.parameters())
    dummy = _reference_batch(update.image_shape, n_dummy, reference_images, generator).to(device=reference.device, dtype=reference.dtype)
    mean_probability, mean_feature = _dummy_statistics(model, head, dummy)
    weight_grad = update.gradients[weight_index].to(mean_feature.dtype)
    if bias_index is not None:
        signal = update.gradients[bias_index].to(mean_feature.dtype)
    else:
        signal = weight_grad @ mean_feature / mean_feature.pow(2).sum().clamp(min=1e-12)
    if update.batch_size == 1:
        return signal.argmin().reshape(1).cpu()
    clip = _mean_clip_factor(model, dummy, head.out_features, update.max_grad_norm, generator)
    counts = update.batch_size * (mean_probability - signal / clip)
    rounded = _round_counts(counts.cpu().double(), update.batch_size)
    return torch.repeat_interleave(torch.arange(len(rounded)), rounded)

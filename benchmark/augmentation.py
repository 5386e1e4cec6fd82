"""Data augmentation, and augmentation multiplicity under DP (De et al. 2022).

Views are drawn from the model's own ``augmentation`` stream (benchmark/streams.py), so that they
depend neither on the initial weights nor on the batches.
"""

from __future__ import annotations

import torch
import torch.nn as nn

AUGMENTATIONS = ("shift", "hflip")


def augment(x: torch.Tensor, names: list[str], generator: torch.Generator, max_shift: int = 2,
            masks: torch.Tensor | None = None):
    """Random views of a batch of images (B, C, H, W) or volumes (B, C, D, H, W): integer shifts
    of up to ``max_shift`` pixels along every spatial axis (zero fill) and/or left–right flips
    (of the last axis), drawn independently per image. With segmentation ``masks`` (B, *spatial)
    each mask is moved exactly as its image (zero fill: background) and ``(views, masks)`` is returned."""
    n, spatial = len(x), x.shape[2:]
    m = None if masks is None else masks.unsqueeze(1)
    if "hflip" in names:
        flip = torch.rand(n, generator=generator) < 0.5
        x, m = _where(flip, x), _where(flip, m)
    if "shift" in names:
        x, m = (None if t is None else nn.functional.pad(t, (max_shift,) * (2 * len(spatial))) for t in (x, m))
        for axis, size in enumerate(spatial, start=2):
            offset = torch.randint(0, 2 * max_shift + 1, (n,), generator=generator).to(x.device)
            shape = [n] + [1] * (x.ndim - 1)
            shape[axis] = size
            index = (offset.view(n, 1) + torch.arange(size, device=x.device)).view(shape)
            x, m = (None if t is None else _gather(t, axis, index, size) for t in (x, m))
    return x if masks is None else (x, m[:, 0])


def _where(flip: torch.Tensor, t: torch.Tensor | None) -> torch.Tensor | None:
    """``t`` with the images where ``flip`` holds mirrored along the last axis."""
    if t is None:
        return None
    return torch.where(flip.view(-1, *([1] * (t.ndim - 1))).to(t.device), t.flip(-1), t)


def _gather(t: torch.Tensor, axis: int, index: torch.Tensor, size: int) -> torch.Tensor:
    out_shape = list(t.shape)
    out_shape[axis] = size
    return torch.gather(t, axis, index.expand(out_shape))


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
        """K views of each image; labels repeated, or segmentation masks (``y`` with the images'
        spatial shape) moved with their images."""
        x, y = x.repeat_interleave(self.k, 0), y.repeat_interleave(self.k, 0)
        if y.ndim == x.ndim - 1:
            return augment(x, self.names, self.generator, masks=y)
        return augment(x, self.names, self.generator), y

    def average_grad_samples(self, module: nn.Module) -> None:
        """Per-view per-sample gradients (B·K, …) → per-image means (B, …), before Opacus clips them."""
        for p in module.parameters():
            gs = getattr(p, "grad_sample", None)
            if gs is None:
                continue
            if isinstance(gs, list):  # accumulated over several backward passes: one pass here
                gs = gs[-1]
            p.grad_sample = gs.reshape(gs.shape[0] // self.k, self.k, *gs.shape[1:]).mean(1)

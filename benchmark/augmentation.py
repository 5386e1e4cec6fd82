"""Data augmentation, and augmentation multiplicity under DP (De et al. 2022).

Views are drawn from the model's own ``augmentation`` stream (benchmark/streams.py), so that they
depend neither on the initial weights nor on the batches.
"""

from __future__ import annotations

import torch
import torch.nn as nn

AUGMENTATIONS = ("shift", "hflip")


def augment(x: torch.Tensor, names: list[str], generator: torch.Generator, max_shift: int = 2) -> torch.Tensor:
    """Random views of a batch of images (B, C, H, W) or volumes (B, C, D, H, W): integer shifts
    of up to ``max_shift`` pixels along every spatial axis (zero fill) and/or left–right flips
    (of the last axis), drawn independently per image."""
    n, spatial = len(x), x.shape[2:]
    if "hflip" in names:
        flip = torch.rand(n, generator=generator) < 0.5
        x = torch.where(flip.view(-1, *([1] * (x.ndim - 1))).to(x.device), x.flip(-1), x)
    if "shift" in names:
        x = nn.functional.pad(x, (max_shift,) * (2 * len(spatial)))
        for axis, size in enumerate(spatial, start=2):
            offset = torch.randint(0, 2 * max_shift + 1, (n,), generator=generator).to(x.device)
            shape = [n] + [1] * (x.ndim - 1)
            shape[axis] = size
            index = (offset.view(n, 1) + torch.arange(size, device=x.device)).view(shape)
            out_shape = list(x.shape)
            out_shape[axis] = size
            x = torch.gather(x, axis, index.expand(out_shape))
    return x


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

"""``medprivbench-bench``'s privacy-cost cases for segmenters: the U-Net under DP-SGD.

A segmenter's step differs from a classifier's in its inputs (integer masks (B, *spatial) for
labels), its loss (:class:`~.segmentation.SegmentationLoss`: per image the mean pixel cross-entropy
plus the soft Dice loss) and its assembly: it is timed through :func:`~.noise.make_private`, the
assembly that training runs, rather than Opacus' ``PrivacyEngine``. The timing, the interleaved
rounds and the correctness check are benchmark/bench.py's, shared through :class:`SegmenterStepper`.

Sizes: 2D 32×32 images, batch 64, 3 classes; 3D (``--volumes``) 16³ volumes, batch 8.
"""

from __future__ import annotations

import warnings

from .bench import _Stepper

SEGMENTERS = ("unet",)
SEGMENTER_SETTINGS = {"unet": dict(width=16, activation="relu", norm_groups=4)}
SEGMENTER_SIDE = {2: 32, 3: 16}  # image side per spatial dimensionality (divisible by 4: two poolings)
SEGMENTER_BATCH = {2: 64, 3: 8}
SEGMENTER_CLASSES = 3


def segmenter_cfg(name: str, mode: str = "auto"):
    from omegaconf import OmegaConf

    from .config import ModelConfig

    return OmegaConf.structured(ModelConfig(name=name, grad_sample_mode=mode, **SEGMENTER_SETTINGS[name]))


def input_label(dims: int) -> str:
    return f"{SEGMENTER_SIDE[dims]}{'²' if dims == 2 else '³'}"


class SegmenterStepper(_Stepper):
    """A segmenter set up for non-private (``mode`` None) or DP training (σ = 0, C = 1) with one engine."""

    def __init__(self, name: str, mode: str | None, device, spatial_dims: int = 2):
        import torch

        from .models import build_model
        from .noise import make_private
        from .segmentation import SegmentationLoss

        side, batch = SEGMENTER_SIDE[spatial_dims], SEGMENTER_BATCH[spatial_dims]
        torch.manual_seed(0)
        model = build_model(segmenter_cfg(name), in_channels=1, n_classes=SEGMENTER_CLASSES, image_size=side,
                            spatial_dims=spatial_dims).to(device)
        shape = (batch, *(side,) * spatial_dims)
        x = torch.rand(batch, 1, *shape[1:], generator=torch.Generator().manual_seed(1))
        y = torch.randint(0, SEGMENTER_CLASSES, shape, generator=torch.Generator().manual_seed(2))
        self.x, self.y, self.device = x.to(device), y.to(device), device
        self.trainable = self.module = model
        self.opt = torch.optim.SGD(model.parameters(), lr=0.0)
        self.crit = SegmentationLoss()
        if mode is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                parts = make_private(model, self.opt, self.crit, grad_sample_mode=mode, noise_multiplier=0.0,
                                     max_grad_norm=1.0, expected_batch_size=batch, generator=None)
            self.module, self.opt, self.crit = parts.module, parts.optimizer, parts.criterion
        self.times: list[float] = []
        self.first_update = None

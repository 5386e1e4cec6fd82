"""U-Net segmenter that DP-SGD can train, for images (2D) and volumes (3D).

The layout follows the DP U-Nets of Ziller et al. 2024 ("Reconciling privacy and accuracy in AI
for medical imaging", the RePrAAIMI code: a width-16 3D U-Net with GroupNorm and weight-standardised
convolutions) and Ronneberger et al. 2015's encoder–decoder with skip connections, three levels:

* encoder: at each level two 3×3 (3×3×3) convolutions, each followed by GroupNorm and the
  activation, with w, 2w, 4w channels (w = ``model.width``), ``model.pool`` (max or average)
  between levels;
* decoder: parameter-free nearest-neighbour upsampling (×2), concatenation with the encoder's
  feature map of that resolution, and the level's two convolutions;
* a 1×1 convolution to ``n_classes`` logits per pixel: (B, K, *spatial), the input's size.

Every parametrised layer is a convolution or a GroupNorm, which all four per-sample gradient
engines (Opacus' hooks and ghost clipping, expanded weights, functorch) differentiate per sample;
a transposed convolution for upsampling would add a layer that expanded weights do not know.
No BatchNorm (it mixes the samples of a batch) and no in-place operation (Opacus' hooks fail on
them). Two poolings halve each side twice: the image side must be divisible by 4.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .errors import ConfigError
from .models import _conv, _conv_block, _pool, check_options, register

DOWNSAMPLINGS = 2  # poolings between the three levels: the side must be divisible by 2**DOWNSAMPLINGS


def _double_conv(c_in: int, c_out: int, cfg, dims: int) -> nn.Sequential:
    """One U-Net level: (conv → GroupNorm → activation) twice; weight-standardised if configured."""
    return nn.Sequential(_conv_block(c_in, c_out, cfg, dims=dims), _conv_block(c_out, c_out, cfg, dims=dims))


class UNet(nn.Module):
    """Three-level U-Net (channels w, 2w, 4w) mapping (B, C, *spatial) to logits (B, K, *spatial)."""

    def __init__(self, in_channels: int, n_classes: int, cfg, spatial_dims: int = 2):
        super().__init__()
        w, d = cfg.width, spatial_dims
        self.enc1 = _double_conv(in_channels, w, cfg, d)
        self.pool1 = _pool(cfg, dims=d)
        self.enc2 = _double_conv(w, 2 * w, cfg, d)
        self.pool2 = _pool(cfg, dims=d)
        self.bottom = _double_conv(2 * w, 4 * w, cfg, d)
        self.up2 = nn.Upsample(scale_factor=2, mode="nearest")
        self.dec2 = _double_conv(4 * w + 2 * w, 2 * w, cfg, d)
        self.up1 = nn.Upsample(scale_factor=2, mode="nearest")
        self.dec1 = _double_conv(2 * w + w, w, cfg, d)
        self.head = _conv(d)(w, n_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip1 = self.enc1(x)
        skip2 = self.enc2(self.pool1(skip1))
        bottom = self.bottom(self.pool2(skip2))
        up2 = self.dec2(torch.cat([self.up2(bottom), skip2], dim=1))
        up1 = self.dec1(torch.cat([self.up1(up2), skip1], dim=1))
        return self.head(up1)


def check_size(image_size: int) -> None:
    """Reject an image side that the two poolings cannot halve twice."""
    step = 2**DOWNSAMPLINGS
    if image_size < step or image_size % step:
        raise ConfigError(f"image size {image_size} is not valid for model 'unet': its {DOWNSAMPLINGS} poolings need "
                          f"a side divisible by {step} (e.g. {max(step, image_size // step * step)})")


@register("unet")
def unet(in_channels: int, n_classes: int, image_size: int, cfg, spatial_dims: int = 2) -> nn.Module:
    """The :class:`UNet` segmenter (logits per pixel or voxel); 3D convolutions for volumes."""
    check_options(cfg)
    check_size(image_size)
    return UNet(in_channels, n_classes, cfg, spatial_dims)

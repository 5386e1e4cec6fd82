"""Making networks trainable with DP-SGD: GroupNorm for BatchNorm, no in-place arithmetic.

DP-SGD needs per-sample gradients, which rules out BatchNorm (it mixes the samples of a batch,
so one sample's gradient depends on the others) and in-place operations on tensors that Opacus'
backward hooks see (``out += identity``, ``ReLU(inplace=True)``). Third-party networks
(torchvision's and MONAI's ResNets, MONAI's DenseNet) have both: :func:`make_dp_compatible`
converts them; the models written here (benchmark/models.py) avoid them from the start.
"""

from __future__ import annotations

import torch.nn as nn

from .errors import ConfigError


def group_count(channels: int, wanted: int) -> int:
    """The largest group count ≤ wanted that divides ``channels`` (GroupNorm needs a divisor)."""
    g = max(1, min(wanted, channels))
    while channels % g:
        g -= 1
    return g


def _out_of_place_basic_block_forward(self, x):
    identity = x if self.downsample is None else self.downsample(x)
    out = self.relu(self.bn1(self.conv1(x)))
    out = self.bn2(self.conv2(out))
    return self.relu(out + identity)


def _out_of_place_bottleneck_forward(self, x):
    identity = x if self.downsample is None else self.downsample(x)
    out = self.relu(self.bn1(self.conv1(x)))
    out = self.relu(self.bn2(self.conv2(out)))
    out = self.bn3(self.conv3(out))
    return self.relu(out + identity)


def _out_of_place_monai_block_forward(self, x):
    identity = x if self.downsample is None else self.downsample(x)
    out = self.act(self.bn1(self.conv1(x)))
    out = self.bn2(self.conv2(out))
    return self.act(out + identity)


def make_dp_compatible(model: nn.Module, norm_groups: int = 32) -> nn.Module:
    """Make a third-party network trainable with Opacus.

    * BatchNorm → GroupNorm (Opacus' ModuleValidator.fix);
    * every ``inplace=True`` activation → out of place;
    * torchvision and MONAI residual blocks (``out += identity``) → out-of-place forward.
    """
    from monai.networks.nets.resnet import ResNetBlock
    from opacus.validators import ModuleValidator
    from torchvision.models.resnet import BasicBlock, Bottleneck

    def to_group_norm(module: nn.Module) -> None:
        for name, child in module.named_children():
            if isinstance(child, nn.modules.batchnorm._BatchNorm):
                c = child.num_features
                setattr(module, name, nn.GroupNorm(group_count(c, norm_groups), c, affine=child.affine))
            else:
                to_group_norm(child)

    to_group_norm(model)
    for module in model.modules():
        if hasattr(module, "inplace"):
            module.inplace = False
        if isinstance(module, BasicBlock):
            module.forward = _out_of_place_basic_block_forward.__get__(module)
        elif isinstance(module, Bottleneck):
            module.forward = _out_of_place_bottleneck_forward.__get__(module)
        elif isinstance(module, ResNetBlock):
            module.forward = _out_of_place_monai_block_forward.__get__(module)
    errors = ModuleValidator.validate(model, strict=False)
    if errors:
        raise ConfigError(f"model still not DP-compatible after conversion: {errors[0]}")
    return model

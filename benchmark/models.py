"""Model factory: a registry of DP-compatible image classifiers.

DP-SGD needs per-sample gradients, which rules out BatchNorm (it mixes the samples of a batch,
so one sample's gradient depends on the others) and in-place operations on tensors that Opacus'
backward hooks see (``out += identity``, ``ReLU(inplace=True)``). Every model here uses
GroupNorm and out-of-place arithmetic; third-party networks are converted by
:func:`~.dp_compatible.make_dp_compatible` (benchmark/dp_compatible.py).

Each builder takes ``(in_channels, n_classes, image_size, cfg, spatial_dims)`` and returns an
``nn.Module`` that maps float images in [0, 1] of shape (B, C, H, W), or volumes (B, C, D, H, W)
where ``spatial_dims=3``, to logits (B, K). Every model but ScatterNet (a 2D transform) builds
for volumes: the small CNN and ResNet-9 with 3D convolutions, ResNet-18 and DenseNet121 from
MONAI's 3D networks. The U-Net segmenter (benchmark/unet.py, registered here as ``unet``) returns
logits per pixel, (B, K, *spatial).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from .dp_compatible import group_count, make_dp_compatible
from .errors import ConfigError
from .grad_samplers import install as install_grad_samplers

MODELS: dict[str, Callable[..., nn.Module]] = {}

# The per-sample gradient engine that is fastest *and* correct for each model on CPU, measured
# by ``medprivbench-bench`` (benchmark/bench.py); tests/benchmark/test_models.py checks each
# engine against brute-force per-sample gradients.
FASTEST_GRAD_SAMPLE_MODE = {"cnn": "ew", "resnet9": "hooks", "resnet18": "hooks", "densenet121": "hooks", "scatternet": "ew",
                            "unet": "vmap"}
# Models that build for 2D images only.
ONLY_2D = {"scatternet": "the scattering transform here is two-dimensional"}
# Opacus' engines, and ``vmap``: torch.func per-sample gradients of the whole model (benchmark/vmap_engine.py).
GRAD_SAMPLE_MODES = ("hooks", "ghost", "functorch", "ew", "vmap")
# Models whose feature extractor is fixed (never trained): only their head is trained, on features
# computed once, so per-image augmentation cannot act.
FROZEN_FEATURES = {"scatternet": True}

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "tanh": nn.Tanh,
    "relu": lambda: nn.ReLU(inplace=False),
    "elu": lambda: nn.ELU(inplace=False),
    "silu": lambda: nn.SiLU(inplace=False),
}


def register(name: str):
    def decorator(fn):
        MODELS[name] = fn
        return fn

    return decorator


def check_options(cfg) -> None:
    """Reject a ``model.activation`` or ``model.pool`` that no model knows (preflight and build share it)."""
    if cfg.activation not in ACTIVATIONS:
        raise ConfigError(f"model.activation={cfg.activation!r} is not valid; choose one of {', '.join(ACTIVATIONS)}")
    if cfg.pool not in POOLS:
        raise ConfigError(f"model.pool={cfg.pool!r} is not valid; choose one of {', '.join(POOLS)}")


def _activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ConfigError(f"model.activation={name!r} is not valid; choose one of {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


POOLS = ("max", "avg")


def _pool(cfg, size: int = 2, dims: int = 2) -> nn.Module:
    """The downsampling layer that ``model.pool`` names (max or average over size^dims windows)."""
    check_options(cfg)
    if cfg.pool == "max":
        return (nn.MaxPool2d if dims == 2 else nn.MaxPool3d)(size)
    return (nn.AvgPool2d if dims == 2 else nn.AvgPool3d)(size)


def _conv(dims: int) -> type[nn.Module]:
    return nn.Conv2d if dims == 2 else nn.Conv3d


def _adaptive_pool(dims: int, kind: str, size: int) -> nn.Module:
    if kind == "max":
        return (nn.AdaptiveMaxPool2d if dims == 2 else nn.AdaptiveMaxPool3d)(size)
    return (nn.AdaptiveAvgPool2d if dims == 2 else nn.AdaptiveAvgPool3d)(size)


def _require(cfg, model: str, **fixed) -> None:
    """Reject options this architecture cannot honour (an option must act or be rejected)."""
    for key, value in fixed.items():
        if getattr(cfg, key) != value:
            raise ConfigError(
                f"model.{key}={getattr(cfg, key)!r} is not supported by model {model!r}, which fixes it at {value!r}"
            )


# --------------------------------------------------------------------------------------------
@register("cnn")
def small_cnn(in_channels: int, n_classes: int, image_size: int, cfg, spatial_dims: int = 2) -> nn.Module:
    """Three conv stages (w, 2w, 2w channels) with GroupNorm, then a linear head: fast under DP.

    For volumes the first convolution has stride 2 (as the stems of 3D ResNets do): a 3×3×3 stage
    at full resolution costs 28× a 2D one at 28 px, and the stride makes the 3D CNN about ten
    times cheaper (``medprivbench-bench --volumes``) at the cost of resolution.
    """
    _require(cfg, "cnn", weight_standardization=False)
    w = cfg.width
    chans = (w, 2 * w, 2 * w)
    conv = _conv(spatial_dims)
    layers: list[nn.Module] = []
    prev = in_channels
    for i, c in enumerate(chans):
        stride = 2 if (i == 0 and spatial_dims == 3) else 1
        layers += [conv(prev, c, 3, padding=1, stride=stride), nn.GroupNorm(group_count(c, cfg.norm_groups), c),
                   _activation(cfg.activation)]
        layers.append(_pool(cfg, dims=spatial_dims) if i < len(chans) - 1 else _adaptive_pool(spatial_dims, "avg", 2))
        prev = c
    layers += [nn.Flatten(), nn.Linear(prev * 2**spatial_dims, n_classes)]
    return nn.Sequential(*layers)


# --------------------------------------------------------------------------------------------
def _standardised(w: torch.Tensor) -> torch.Tensor:
    dims = tuple(range(1, w.ndim))
    mean = w.mean(dim=dims, keepdim=True)
    var = w.var(dim=dims, keepdim=True, unbiased=False)
    return (w - mean) / torch.sqrt(var + 1e-5)


class WSConv2d(nn.Conv2d):
    """Conv2d with weight standardisation (Qiao et al. 2019): each filter has zero mean, unit variance.

    Used with GroupNorm in DP ResNets (Klause et al. 2022; Ziller et al. 2024). Opacus has no
    per-sample-gradient hook for it, so DP training of models containing it uses functorch.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, _standardised(self.weight), self.bias, self.stride, self.padding, self.dilation, self.groups)


class WSConv3d(nn.Conv3d):
    """The 3D :class:`WSConv2d`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv3d(x, _standardised(self.weight), self.bias, self.stride, self.padding, self.dilation, self.groups)


def _conv_block(c_in: int, c_out: int, cfg, pool: bool = False, dims: int = 2) -> nn.Sequential:
    if cfg.weight_standardization:
        kind = WSConv2d if dims == 2 else WSConv3d
    else:
        kind = _conv(dims)
    conv = kind(c_in, c_out, 3, padding=1, bias=False)
    layers = [conv, nn.GroupNorm(group_count(c_out, cfg.norm_groups), c_out), _activation(cfg.activation)]
    if pool:
        layers.append(_pool(cfg, dims=dims))
    return nn.Sequential(*layers)


class _Residual(nn.Module):
    def __init__(self, channels: int, cfg, dims: int = 2):
        super().__init__()
        self.body = nn.Sequential(_conv_block(channels, channels, cfg, dims=dims), _conv_block(channels, channels, cfg, dims=dims))

    def forward(self, x):
        return x + self.body(x)  # out of place: Opacus' hooks fail on in-place addition


@register("resnet9")
def resnet9(in_channels: int, n_classes: int, image_size: int, cfg, spatial_dims: int = 2) -> nn.Module:
    """ResNet-9 (Myrtle/DAWNBench layout) with GroupNorm, as in Klause et al. 2022 and Ziller et al. 2024.

    Channels w, 2w, 4w, 8w (w = 64 in the papers; ``model.width``); 3D convolutions for volumes.
    """
    w, d = cfg.width, spatial_dims
    return nn.Sequential(
        _conv_block(in_channels, w, cfg, dims=d),
        _conv_block(w, 2 * w, cfg, pool=True, dims=d),
        _Residual(2 * w, cfg, dims=d),
        _conv_block(2 * w, 4 * w, cfg, pool=True, dims=d),
        _conv_block(4 * w, 8 * w, cfg, pool=True, dims=d),
        _Residual(8 * w, cfg, dims=d),
        _adaptive_pool(d, cfg.pool, 1),
        nn.Flatten(),
        nn.Linear(8 * w, n_classes),
    )


# --------------------------------------------------------------------------------------------
@register("resnet18")
def resnet18(in_channels: int, n_classes: int, image_size: int, cfg, spatial_dims: int = 2) -> nn.Module:
    """torchvision ResNet-18, DP-compatible; small inputs (≤ 64 px) get a 3×3 stride-1 stem, no max-pool.

    Volumes: MONAI's 3D ResNet-18 (``monai.networks.nets.resnet18(spatial_dims=3)``, the network of
    the MedMNIST v2 3D baselines), GroupNorm instead of BatchNorm, a 3×3×3 stride-1 stem without
    max-pool for volumes of ≤ 64 voxels a side.
    """
    _require(cfg, "resnet18", weight_standardization=False, activation="relu", width=64, pool="max")
    if spatial_dims == 3:
        from monai.networks.nets import resnet18 as monai_resnet18

        small = image_size <= 64
        net = monai_resnet18(spatial_dims=3, n_input_channels=in_channels, num_classes=n_classes,
                             conv1_t_size=3 if small else 7, conv1_t_stride=1 if small else 2, no_max_pool=small,
                             norm=("group", {"num_groups": cfg.norm_groups}), act=("relu", {"inplace": False}))
        return make_dp_compatible(net, cfg.norm_groups)
    from torchvision.models import resnet18 as tv_resnet18

    model = tv_resnet18(weights=None, num_classes=n_classes)
    if image_size <= 64:
        model.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
        model.maxpool = nn.Identity()
    elif in_channels != 3:
        model.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
    return make_dp_compatible(model, cfg.norm_groups)


class _MinSize(nn.Module):
    """Upsample inputs smaller than ``size`` (DenseNet121's four pooling stages need ≥ 32 px)."""

    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def forward(self, x):
        if x.shape[-1] < self.size:
            dims = x.ndim - 2
            x = F.interpolate(x, size=(self.size,) * dims, mode="bilinear" if dims == 2 else "trilinear", align_corners=False)
        return x


@register("densenet121")
def densenet121(in_channels: int, n_classes: int, image_size: int, cfg, spatial_dims: int = 2) -> nn.Module:
    """MONAI DenseNet121 (2D, or 3D for volumes) with GroupNorm and out-of-place ReLU."""
    from monai.networks.nets import DenseNet121

    _require(cfg, "densenet121", weight_standardization=False, activation="relu", width=64, pool="max")
    net = DenseNet121(
        spatial_dims=spatial_dims, in_channels=in_channels, out_channels=n_classes,
        act=("relu", {"inplace": False}), norm=("group", {"num_groups": cfg.norm_groups}),
    )
    return make_dp_compatible(nn.Sequential(_MinSize(32), net), cfg.norm_groups)


# --------------------------------------------------------------------------------------------
class ScatteringFeatures(nn.Module):
    """Fixed 2D scattering transform (Bruna & Mallat 2013; kymatio), J = 2 scales, L = 8 angles.

    Hand-crafted, data-independent features: computing them costs no privacy, so DP training
    only has to fit the small head on top (Tramèr & Boneh 2021, "Differentially Private Learning
    Needs Better Features"). Output: (B, C·81, H/4, W/4).
    """

    def __init__(self, in_channels: int, image_size: int, J: int = 2, L: int = 8):
        super().__init__()
        # kymatio.torch imports its 3D module too, which needs a SciPy function removed in SciPy
        # 1.15; the 2D frontend alone is all that is used here.
        from kymatio.scattering2d.frontend.torch_frontend import ScatteringTorch2D

        self.scattering = ScatteringTorch2D(J=J, shape=(image_size, image_size), L=L)
        self.out_channels = in_channels * (1 + J * L + L * L * J * (J - 1) // 2)

    def forward(self, x):
        out = self.scattering(x)  # (B, C, K, H', W')
        return out.reshape(out.shape[0], -1, *out.shape[-2:])


class FrozenFeatureClassifier(nn.Module):
    """A fixed feature extractor followed by a trainable head.

    Training code fits only ``head`` on features computed once per dataset (``frozen_features``);
    attacks and evaluation use the whole model on images.
    """

    def __init__(self, features: nn.Module, head: nn.Module):
        super().__init__()
        self.frozen_features = features
        self.head = head
        for p in self.frozen_features.parameters():
            p.requires_grad_(False)

    def forward(self, x):
        return self.head(self.frozen_features(x))


@register("scatternet")
def scatternet(in_channels: int, n_classes: int, image_size: int, cfg, spatial_dims: int = 2) -> nn.Module:
    """ScatterNet + GroupNorm + small CNN head (Tramèr & Boneh 2021); ``width`` = head channels.

    The features are normalised per group of scattering channels (GroupNorm), as in the paper.
    """
    _require(cfg, "scatternet", weight_standardization=False)
    features = ScatteringFeatures(in_channels, image_size)
    c = features.out_channels
    w = cfg.width
    head = nn.Sequential(
        nn.GroupNorm(group_count(c, cfg.norm_groups), c),
        nn.Conv2d(c, w, 3, padding=1), nn.GroupNorm(group_count(w, 4), w), _activation(cfg.activation), _pool(cfg),
        nn.Conv2d(w, w, 3, padding=1), nn.GroupNorm(group_count(w, 4), w), _activation(cfg.activation),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(w, n_classes),
    )
    return FrozenFeatureClassifier(features, head)


def split_frozen(model: nn.Module) -> tuple[nn.Module | None, nn.Module]:
    """(fixed feature extractor or None, the part that training updates)."""
    features = getattr(model, "frozen_features", None)
    return (features, model.head) if features is not None else (None, model)


def check_spatial_dims(name: str, spatial_dims: int) -> None:
    """Reject a model that cannot take inputs of this dimensionality (preflight and build share it)."""
    if spatial_dims not in (2, 3):
        raise ConfigError(f"inputs with {spatial_dims} spatial dimensions are not supported; images are 2D, volumes 3D")
    if spatial_dims == 3 and name in ONLY_2D:
        able = ", ".join(sorted(m for m in MODELS if m not in ONLY_2D))
        raise ConfigError(f"model={name!r} cannot train on volumes ({ONLY_2D[name]}); for 3D data choose one of {able}")


def build_model(cfg, *, in_channels: int, n_classes: int, image_size: int, spatial_dims: int = 2) -> nn.Module:
    if cfg.name not in MODELS:
        raise ConfigError(f"model={cfg.name!r} is not valid; choose one of {', '.join(sorted(MODELS))}")
    check_spatial_dims(cfg.name, spatial_dims)  # refuses volumes for the 2D-only models before they build
    # Opacus' Conv2d grad sampler misreads channels-last activations (benchmark/grad_samplers.py):
    # register the corrected one before any model of ours meets Opacus.
    install_grad_samplers()
    return MODELS[cfg.name](in_channels, n_classes, image_size, cfg, spatial_dims=spatial_dims)


def grad_sample_mode(cfg) -> str:
    """The configured per-sample gradient engine, ``auto`` resolved per model.

    Expanded weights (``ew``) only know torch's own layers: weight-standardised convolutions
    compute with a transformed weight, which ``ew`` cannot differentiate per sample.
    """
    valid = ("auto",) + GRAD_SAMPLE_MODES
    if cfg.grad_sample_mode not in valid:
        raise ConfigError(f"model.grad_sample_mode={cfg.grad_sample_mode!r} is not valid; choose one of {', '.join(valid)}")
    mode = cfg.grad_sample_mode if cfg.grad_sample_mode != "auto" else FASTEST_GRAD_SAMPLE_MODE.get(cfg.name, "hooks")
    if mode == "ew" and cfg.weight_standardization:
        raise ConfigError(
            "model.grad_sample_mode='ew' cannot differentiate weight-standardised convolutions per sample; "
            "use hooks, functorch or vmap, or model.weight_standardization=false"
        )
    return mode


from . import unet  # noqa: E402,F401  (registers the U-Net segmenter; it builds on the blocks above)

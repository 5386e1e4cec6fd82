"""benchmark/unet.py: the U-Net segments at the input's size, and every per-sample gradient engine
differentiates it per image as one backward pass per image does (2D and 3D, segmentation loss)."""

import pytest
import torch
import torch.nn as nn
from omegaconf import OmegaConf

from medprivbench.benchmark.config import ModelConfig
from medprivbench.benchmark.errors import ConfigError
from medprivbench.benchmark.models import WSConv2d, WSConv3d, build_model, grad_sample_mode
from medprivbench.benchmark.noise import make_private
from medprivbench.benchmark.segmentation import SegmentationLoss

BATCH, CLASSES = 3, 3
SIDE = {2: 16, 3: 8}
TOLERANCE = dict(rtol=1e-4, atol=1e-5)


def _cfg(**kw):
    return OmegaConf.structured(ModelConfig(**{**dict(name="unet", width=4, activation="relu", norm_groups=4), **kw}))


def _unet(dims, seed=0, **kw):
    torch.manual_seed(seed)
    return build_model(_cfg(**kw), in_channels=1, n_classes=CLASSES, image_size=SIDE[dims], spatial_dims=dims)


def _batch(dims, seed=1):
    g = torch.Generator().manual_seed(seed)
    shape = (BATCH, *(SIDE[dims],) * dims)
    return torch.rand(BATCH, 1, *shape[1:], generator=g), torch.randint(0, CLASSES, shape, generator=g)


def _brute_force_grads(model, x, y):
    """One backward pass per image: (B, number of parameters)."""
    out = []
    for i in range(len(x)):
        model.zero_grad()
        SegmentationLoss("mean")(model(x[i : i + 1]), y[i : i + 1]).backward()
        out.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    model.zero_grad()
    return torch.stack(out)


@pytest.mark.parametrize("dims", [2, 3])
def test_logits_have_the_input_size(dims):
    x, _ = _batch(dims)
    model = _unet(dims)
    assert model(x).shape == (BATCH, CLASSES, *x.shape[2:])
    assert not any(isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.ConvTranspose2d, nn.ConvTranspose3d))
                   for m in model.modules())


@pytest.mark.parametrize("size", [30, 2])
def test_a_side_the_poolings_cannot_halve_twice_is_refused(size):
    with pytest.raises(ConfigError, match=f"image size {size} is not valid for model 'unet'.*divisible by 4"):
        build_model(_cfg(), in_channels=1, n_classes=2, image_size=size)


def test_options_act():
    """Weight standardisation and the pooling kind change the layers (an option acts or is rejected)."""
    for dims, ws in ((2, WSConv2d), (3, WSConv3d)):
        assert any(isinstance(m, ws) for m in _unet(dims, weight_standardization=True).modules())
    kinds = {type(m) for m in _unet(2, pool="avg").modules()}
    assert nn.AvgPool2d in kinds and nn.MaxPool2d not in kinds
    with pytest.raises(ConfigError, match="model.activation='swish' is not valid"):
        _unet(2, activation="swish")


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("mode, ws", [("hooks", False), ("ew", False), ("functorch", False),
                                      ("hooks", True), ("functorch", True)])
def test_per_sample_gradients_match_brute_force(mode, ws, dims):
    """hooks, expanded weights and functorch: each image's gradient of its segmentation loss."""
    from opacus.grad_sample.utils import wrap_model

    model = _unet(dims, weight_standardization=ws)
    x, y = _batch(dims)
    expected = _brute_force_grads(model, x, y)
    gsm = wrap_model(model, grad_sample_mode=mode, loss_reduction="sum")
    SegmentationLoss("sum")(gsm(x), y).backward()
    got = torch.cat([p.grad_sample.reshape(BATCH, -1) for p in model.parameters()], dim=1)
    torch.testing.assert_close(got, expected, **TOLERANCE)


@pytest.mark.parametrize("dims", [2, 3])
def test_ghost_clipping_norms_match_brute_force(dims):
    """Ghost clipping never forms per-sample gradients: its per-image norms (the clipping factors)."""
    model = _unet(dims)
    x, y = _batch(dims)
    expected = _brute_force_grads(model, x, y).norm(dim=1)
    parts = make_private(model, torch.optim.SGD(model.parameters(), lr=0.0), SegmentationLoss(), grad_sample_mode="ghost",
                         noise_multiplier=0.0, max_grad_norm=1.0, expected_batch_size=BATCH, generator=None)
    parts.criterion(parts.module(x), y).backward()
    torch.testing.assert_close(parts.module.per_sample_gradient_norms, expected, **TOLERANCE)


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("mode", ["hooks", "ew", "functorch", "ghost"])
def test_one_dp_step_is_the_clipped_mean_update(mode, dims):
    """With σ = 0, DP-SGD's step is Σ_i clip_C(g_i) / B (lr = 1), C set so that clipping binds for some images."""
    model = _unet(dims)
    x, y = _batch(dims)
    per_image = _brute_force_grads(model, x, y)
    norms = per_image.norm(dim=1)
    clip = float(norms.median())
    expected = (per_image * (clip / norms).clamp(max=1.0)[:, None]).sum(0) / BATCH
    before = torch.cat([p.detach().flatten() for p in model.parameters()])
    parts = make_private(model, torch.optim.SGD(model.parameters(), lr=1.0), SegmentationLoss(), grad_sample_mode=mode,
                         noise_multiplier=0.0, max_grad_norm=clip, expected_batch_size=BATCH, generator=None)
    parts.optimizer.zero_grad()
    parts.criterion(parts.module(x), y).backward()
    parts.optimizer.step()
    parts.module.cleanup()
    after = torch.cat([p.detach().flatten() for p in model.parameters()])
    torch.testing.assert_close(before - after, expected, **TOLERANCE)


def test_expanded_weights_refused_with_weight_standardisation():
    assert grad_sample_mode(_cfg(weight_standardization=True, grad_sample_mode="functorch")) == "functorch"
    with pytest.raises(ConfigError, match="grad_sample_mode='ew' cannot differentiate weight-standardised"):
        grad_sample_mode(_cfg(weight_standardization=True, grad_sample_mode="ew"))

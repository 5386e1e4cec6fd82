"""Every model takes a DP step, and per-sample gradients are what their name says."""

import math

import pytest
import torch
import torch.nn as nn
from omegaconf import OmegaConf

from medprivbench.benchmark.config import ModelConfig
from medprivbench.benchmark.errors import ConfigError
from medprivbench.benchmark.streams import Streams
from medprivbench.benchmark.models import MODELS, build_model, grad_sample_mode
from medprivbench.benchmark.recipe import DPRecipe
from medprivbench.benchmark.training import train

CONFIGS = {
    "cnn": dict(name="cnn", width=8, activation="tanh", norm_groups=4),
    "resnet9": dict(name="resnet9", width=8, activation="relu", norm_groups=4, weight_standardization=True),
    "resnet18": dict(name="resnet18", width=64, activation="relu", norm_groups=32),
    "densenet121": dict(name="densenet121", width=64, activation="relu", norm_groups=32),
    "scatternet": dict(name="scatternet", width=8, activation="tanh", norm_groups=27),
}


def _cfg(name, **kw):
    return OmegaConf.structured(ModelConfig(**{**CONFIGS[name], **kw}))


# Segmenters (logits per pixel) have their own tests: tests/benchmark/test_unet.py.
SEGMENTERS = {"unet"}


def test_every_registered_model_has_a_test_config():
    assert set(MODELS) == set(CONFIGS) | SEGMENTERS


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_model_takes_a_dp_step(name):
    torch.manual_seed(0)
    size = 16 if name in ("resnet18", "densenet121") else 28
    if name == "scatternet":  # the fixed scattering features cost no privacy: only the head trains
        frozen_before = {k: v.clone() for k, v in build_model(_cfg(name), in_channels=1, n_classes=3, image_size=size).frozen_features.state_dict().items()}
    model = build_model(_cfg(name), in_channels=1, n_classes=3, image_size=size)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    before = [p.detach().clone() for p in model.parameters()]
    x, y = torch.rand(6, 1, size, size), torch.tensor([0, 1, 2, 0, 1, 2])
    recipe = DPRecipe(epsilon_target=1.0, delta=1e-5, sample_rate=0.5, steps=2, steps_per_epoch=2,
                      noise_multiplier=1.0, max_grad_norm=1.0, accountant="rdp")
    hp = dict(optimizer="sgd", lr=0.01, momentum=0.0, weight_decay=0.0, lr_schedule="constant")
    result = train(model, x, y, recipe=recipe, hp=hp, grad_sample_mode=grad_sample_mode(_cfg(name)), streams=Streams(0))
    assert result.steps_taken == 2 and math.isfinite(result.epsilon_spent)
    after = list(result.model.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, after))
    assert result.model(x).shape == (6, 3)
    if name == "scatternet":
        assert all(torch.equal(v, result.model.frozen_features.state_dict()[k]) for k, v in frozen_before.items())
        assert not any(p.requires_grad for p in result.model.frozen_features.parameters())


def _brute_force_grads(model, x, y):
    out = []
    for i in range(len(x)):
        model.zero_grad()
        nn.functional.cross_entropy(model(x[i : i + 1]), y[i : i + 1]).backward()
        out.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    return torch.stack(out)


@pytest.mark.parametrize(
    "name, mode, dims",
    [("cnn", "hooks", 2), ("cnn", "ew", 2), ("cnn", "functorch", 2), ("resnet9", "hooks", 2), ("resnet9", "functorch", 2),
     ("cnn", "hooks", 3), ("cnn", "ew", 3), ("cnn", "functorch", 3), ("resnet9", "functorch", 3)],
)
def test_per_sample_gradients_match_brute_force(name, mode, dims):
    """Images (16²) and volumes (8³): each engine's per-sample gradients equal one backward pass per sample."""
    from opacus.grad_sample.utils import wrap_model

    torch.manual_seed(0)
    side = 16 if dims == 2 else 8
    model = build_model(_cfg(name), in_channels=1, n_classes=2, image_size=side, spatial_dims=dims)
    x, y = torch.rand(4, 1, *(side,) * dims), torch.tensor([0, 1, 1, 0])
    expected = _brute_force_grads(model, x, y)
    gsm = wrap_model(model, grad_sample_mode=mode, loss_reduction="sum")
    nn.functional.cross_entropy(gsm(x), y, reduction="sum").backward()
    got = torch.cat([p.grad_sample.reshape(4, -1) for p in model.parameters()], dim=1)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def _ghost_step(model, x, y):
    """Opacus' ghost clipping (C = 1, no noise) through one backward pass; returns the module and optimiser."""
    from opacus import PrivacyEngine

    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=len(x))
    gsm, opt, crit, _ = PrivacyEngine().make_private(
        module=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.0), data_loader=loader,
        criterion=nn.CrossEntropyLoss(), noise_multiplier=0.0, max_grad_norm=1.0, grad_sample_mode="ghost",
        poisson_sampling=False,
    )
    opt.zero_grad()
    crit(gsm(x), y).backward()
    return gsm, opt


def test_ghost_clipping_gives_the_same_clipped_update():
    """Ghost clipping never forms per-sample gradients; its clipped sum must equal the brute-force one."""
    torch.manual_seed(0)
    x, y = torch.rand(5, 1, 16, 16), torch.tensor([0, 1, 1, 0, 1])
    model = build_model(_cfg("cnn"), in_channels=1, n_classes=2, image_size=16)
    per_sample = _brute_force_grads(model, x, y)
    factors = (1.0 / per_sample.norm(dim=1)).clamp(max=1.0)  # C = 1
    expected = (per_sample * factors[:, None]).sum(0) / len(x)
    gsm, opt = _ghost_step(model, x, y)
    opt.step()
    got = torch.cat([p.grad.flatten() for p in model.parameters()])
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6)


def test_expanded_weights_rejected_with_weight_standardisation():
    with pytest.raises(ConfigError, match="grad_sample_mode='ew' cannot differentiate weight-standardised"):
        grad_sample_mode(_cfg("resnet9", grad_sample_mode="ew"))


def test_options_a_model_cannot_honour_are_rejected():
    with pytest.raises(ConfigError, match="model.weight_standardization=True is not supported by model 'cnn'"):
        build_model(_cfg("cnn", weight_standardization=True), in_channels=1, n_classes=2, image_size=28)
    with pytest.raises(ConfigError, match="model='vgg' is not valid; choose one of"):
        build_model(OmegaConf.structured(ModelConfig(name="vgg")), in_channels=1, n_classes=2, image_size=28)
    with pytest.raises(ConfigError, match="model.activation='swish' is not valid"):
        build_model(_cfg("cnn", activation="swish"), in_channels=1, n_classes=2, image_size=28)


def test_pool_option_acts_or_is_rejected():
    for name in ("cnn", "resnet9", "scatternet"):
        for pool, layer in (("max", nn.MaxPool2d), ("avg", nn.AvgPool2d)):
            model = build_model(_cfg(name, pool=pool), in_channels=1, n_classes=2, image_size=28)
            kinds = {type(m) for m in model.modules()}
            assert layer in kinds and ({nn.MaxPool2d, nn.AvgPool2d} - {layer}).isdisjoint(kinds), (name, pool)
    with pytest.raises(ConfigError, match="model.pool='min' is not valid; choose one of max, avg"):
        build_model(_cfg("cnn", pool="min"), in_channels=1, n_classes=2, image_size=28)
    with pytest.raises(ConfigError, match="model.pool='avg' is not supported by model 'resnet18'"):
        build_model(_cfg("resnet18", pool="avg"), in_channels=1, n_classes=2, image_size=28)


def _channels_last_images(n, channels, side, seed=0):
    """Images stored channels-last (N, H, W, C) and viewed as (N, C, H, W), as in a decoded batch.

    For one channel these are the strides (H·W, 1, W, 1) that NumPy's fancy indexing hands over for
    a (N, 1, H, W) array (the datasets' ``train_x[keep]``): torch reads them as channels-last, so
    every convolution output after the first is channels-last too (on CPU and CUDA alike).
    """
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, side, side, channels, generator=g).permute(0, 3, 1, 2)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("mode", ["hooks", "ew", "functorch"])
def test_dp_gradient_matches_plain_backward_on_channels_last_images(mode, channels):
    """Without noise or clipping, Opacus' step is the plain mean-loss gradient, whatever the memory layout.

    Opacus 1.6's Conv2d grad sampler (unfold2d) assumed NCHW strides and read the zero padding of
    channels-last activations instead: hooks (and ghost) gave the 2nd and 3rd convolutions of the
    CNN a zero per-sample gradient. benchmark/grad_samplers.py registers the corrected sampler.
    """
    from opacus import PrivacyEngine

    x, y = _channels_last_images(8, channels, 28), torch.tensor([0, 1] * 4)
    torch.manual_seed(0)
    plain = build_model(_cfg("cnn"), in_channels=channels, n_classes=2, image_size=28)
    nn.functional.cross_entropy(plain(x), y).backward()
    torch.manual_seed(0)
    model = build_model(_cfg("cnn"), in_channels=channels, n_classes=2, image_size=28)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=len(x))
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    private, opt, _ = PrivacyEngine().make_private(
        module=model, optimizer=opt, data_loader=loader, noise_multiplier=0.0, max_grad_norm=1e9,
        grad_sample_mode=mode, poisson_sampling=False,
    )
    opt.zero_grad()
    nn.functional.cross_entropy(private(x), y).backward()
    opt.step()
    for (name, want), got in zip(plain.named_parameters(), model.parameters()):
        torch.testing.assert_close(got.grad, want.grad, rtol=1e-4, atol=1e-6, msg=lambda m, name=name: f"{mode} {name}: {m}")


def test_ghost_clipping_norms_on_channels_last_images():
    """Ghost clipping's per-sample norms (its clipping factors: the privacy guarantee) on channels-last images."""
    x, y = _channels_last_images(5, 1, 16), torch.tensor([0, 1, 1, 0, 1])
    torch.manual_seed(0)
    model = build_model(_cfg("cnn"), in_channels=1, n_classes=2, image_size=16)
    expected = _brute_force_grads(model, x, y).norm(dim=1)
    gsm, _ = _ghost_step(model, x, y)
    torch.testing.assert_close(gsm.per_sample_gradient_norms, expected, rtol=1e-4, atol=1e-6)

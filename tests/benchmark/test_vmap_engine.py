"""benchmark/vmap_engine.py: torch.func per-sample gradients of the whole model (``grad_sample_mode=vmap``)
equal one backward pass per sample, and DP-SGD with them is Opacus' DP-SGD: the clipped mean update,
the hooks engine's noise for the same seed, and the training loop's augmentation multiplicity,
gradient canaries, empty Poisson draws and cleanup."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn as nn
from omegaconf import OmegaConf

from medprivbench.benchmark.augmentation import Augmentation
from medprivbench.benchmark.canaries import GradientCanaries
from medprivbench.benchmark.config import ModelConfig
from medprivbench.benchmark.errors import ConfigError
from medprivbench.benchmark.models import GRAD_SAMPLE_MODES, build_model, grad_sample_mode
from medprivbench.benchmark.noise import make_private
from medprivbench.benchmark.recipe import DPRecipe, make_optimizer
from medprivbench.benchmark.segmentation import SegmentationLoss
from medprivbench.benchmark.streams import Streams
from medprivbench.benchmark.training import _private_engine, train

BATCH, CLASSES = 3, 3
SIDE = {("cnn", 2): 8, ("cnn", 3): 8, ("unet", 2): 16, ("unet", 3): 8}
TOLERANCE = dict(rtol=1e-4, atol=1e-5)
HP = dict(optimizer="sgd", lr=0.1, momentum=0.0, weight_decay=0.0, lr_schedule="constant", ema_decay=None,
          augmult=0, augmentations=["shift", "hflip"])


def _model(name: str, dims: int, seed: int = 0, **kw) -> nn.Module:
    torch.manual_seed(seed)
    cfg = OmegaConf.structured(ModelConfig(**{**dict(name=name, width=4, activation="relu", norm_groups=4), **kw}))
    return build_model(cfg, in_channels=1, n_classes=CLASSES, image_size=SIDE[name, dims], spatial_dims=dims)


def _batch(name: str, dims: int, n: int = BATCH, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    spatial = (SIDE[name, dims],) * dims
    y_shape = (n, *spatial) if name == "unet" else (n,)
    return torch.rand(n, 1, *spatial, generator=g), torch.randint(0, CLASSES, y_shape, generator=g)


def _criterion(name: str) -> nn.Module:
    return SegmentationLoss() if name == "unet" else nn.CrossEntropyLoss()


def _brute_force(model, criterion, x, y) -> tuple[torch.Tensor, torch.Tensor]:
    """One backward pass per sample: (per-sample gradients (B, number of parameters), per-sample losses (B,))."""
    grads, losses = [], []
    for i in range(len(x)):
        model.zero_grad()
        loss = criterion(model(x[i : i + 1]), y[i : i + 1])
        loss.backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
        losses.append(float(loss.detach()))
    model.zero_grad(set_to_none=True)
    return torch.stack(grads), torch.tensor(losses)


def _vmap_parts(model, name, lr=1.0, **kw):
    settings = dict(noise_multiplier=0.0, max_grad_norm=1.0, expected_batch_size=BATCH, generator=None)
    return make_private(model, torch.optim.SGD(model.parameters(), lr=lr), _criterion(name), grad_sample_mode="vmap",
                        **{**settings, **kw})


CASES = [("cnn", 2, False), ("cnn", 3, False), ("unet", 2, False), ("unet", 3, False), ("unet", 2, True)]


@pytest.mark.parametrize("name, dims, ws", CASES)
def test_per_sample_gradients_and_losses_match_brute_force(name, dims, ws):
    """Each sample's gradient of its own loss (weight-standardised convolutions included), and the mean loss."""
    model = _model(name, dims, weight_standardization=ws)
    x, y = _batch(name, dims)
    expected, losses = _brute_force(model, _criterion(name), x, y)
    parts = _vmap_parts(model, name)
    mean_loss = parts.module.per_sample_backward(x, y)
    got = torch.cat([p.grad_sample.reshape(BATCH, -1) for p in model.parameters()], dim=1)
    torch.testing.assert_close(got, expected, **TOLERANCE)
    assert mean_loss == pytest.approx(float(losses.mean()), rel=1e-5)
    assert all(p.grad is None for p in model.parameters())  # no backward pass: the optimiser forms p.grad
    torch.testing.assert_close(parts.module(x), model(x))  # and it forwards as the plain module
    parts.module.cleanup()
    assert all(not hasattr(p, "grad_sample") for p in model.parameters())


@pytest.mark.parametrize("name, dims", [("cnn", 2), ("unet", 2), ("unet", 3)])
def test_one_dp_step_is_the_clipped_mean_update(name, dims):
    """σ = 0: the step is Σ_i clip_C(g_i) / B (lr = 1), with C binding for some samples."""
    model = _model(name, dims)
    x, y = _batch(name, dims)
    per_sample, _ = _brute_force(model, _criterion(name), x, y)
    norms = per_sample.norm(dim=1)
    clip = float(norms.median())
    expected = (per_sample * (clip / norms).clamp(max=1.0)[:, None]).sum(0) / BATCH
    before = torch.cat([p.detach().flatten() for p in model.parameters()])
    parts = _vmap_parts(model, name, max_grad_norm=clip)
    parts.optimizer.zero_grad()
    parts.module.per_sample_backward(x, y)
    parts.optimizer.step()
    after = torch.cat([p.detach().flatten() for p in model.parameters()])
    torch.testing.assert_close(before - after, expected, **TOLERANCE)


def test_frozen_parameters_are_passed_through_and_get_no_per_sample_gradient():
    model = _model("cnn", 2)
    frozen = next(model.parameters())
    frozen.requires_grad_(False)
    x, y = _batch("cnn", 2)
    parts = _vmap_parts(model, "cnn")
    parts.module.per_sample_backward(x, y)
    assert not hasattr(frozen, "grad_sample")
    assert all(p.grad_sample.shape == (BATCH, *p.shape) for p in model.parameters() if p.requires_grad)


def test_a_noisy_step_equals_the_hooks_engine_for_the_same_seed():
    """Same per-sample gradients, same generator seed: the same noise and update as the hooks engine."""
    model = _model("cnn", 2)
    twin = copy.deepcopy(model)
    x, y = _batch("cnn", 2, n=5)
    updates = []
    for net, mode in ((model, "vmap"), (twin, "hooks")):
        parts = make_private(net, torch.optim.SGD(net.parameters(), lr=0.5), nn.CrossEntropyLoss(), grad_sample_mode=mode,
                             noise_multiplier=1.3, max_grad_norm=0.5, expected_batch_size=4,
                             generator=torch.Generator().manual_seed(9))
        parts.optimizer.zero_grad()
        if mode == "vmap":
            parts.module.per_sample_backward(x, y)
        else:
            parts.criterion(parts.module(x), y).backward()
        parts.optimizer.step()
        parts.module.cleanup()
        updates.append([p.grad.detach().clone() for p in net.parameters()])
    for a, b in zip(*updates):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6)
    assert max(float(g.abs().max()) for g in updates[0]) > 0.05  # the noise (std 1.3·0.5/4) is in the update


def _recipe(sigma: float = 1.0, q: float = 0.25, steps: int = 8) -> DPRecipe:
    return DPRecipe(epsilon_target=1.0, delta=1e-5, sample_rate=q, steps=steps, steps_per_epoch=round(1 / q),
                    noise_multiplier=sigma, max_grad_norm=1.0, accountant="rdp")


def _classifier_data(n: int = 40):
    return _batch("cnn", 2, n=n, seed=3)


@pytest.mark.parametrize("augmult", [0, 2])
def test_training_is_the_hooks_engines_run(augmult):
    """A whole run (augmentation multiplicity included) trains the classifier the hooks engine trains,
    spends the same ε, and leaves the module plain."""
    x, y = _classifier_data()
    hp = {**HP, "augmult": augmult}
    runs = {mode: train(_model("cnn", 2, seed=2), x, y, recipe=_recipe(), hp=hp, streams=Streams(4), grad_sample_mode=mode)
            for mode in ("hooks", "vmap")}
    for a, b in zip(runs["vmap"].model.state_dict().values(), runs["hooks"].model.state_dict().values()):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5)
    assert runs["vmap"].epsilon_spent == runs["hooks"].epsilon_spent
    assert np.allclose(runs["vmap"].loss_history, runs["hooks"].loss_history, rtol=1e-4)
    assert all(not hasattr(p, "grad_sample") for p in runs["vmap"].model.parameters())


def test_a_segmenter_trains_with_augmult():
    x, y = _batch("unet", 2, n=8, seed=5)
    result = train(_model("unet", 2), x, y, recipe=_recipe(q=0.5, steps=4), hp={**HP, "augmult": 2}, streams=Streams(1),
                   grad_sample_mode="vmap", task="segmentation")
    assert result.steps_taken == 4 and all(math.isfinite(v) for v in result.loss_history)


def test_gradient_canaries_observe_the_run_as_under_hooks():
    """The white-box instrument appends its rows to the vmap engine's per-sample gradients: the
    classifier and the auditor's observations are those of the hooks engine's audited run."""
    x, y = _classifier_data(60)
    runs = {}
    for mode in ("hooks", "vmap"):
        canaries = GradientCanaries(np.arange(80) % 2 == 0, sample_rate=0.2, noise_multiplier=1.2, max_grad_norm=1.0)
        result = train(_model("cnn", 2, seed=3), x, y, recipe=_recipe(1.2, 0.2, 10), hp=HP, streams=Streams(4),
                       grad_sample_mode=mode, instruments=[canaries])
        runs[mode] = (result, canaries)
    for a, b in zip(runs["vmap"][0].model.state_dict().values(), runs["hooks"][0].model.state_dict().values()):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5)
    assert np.allclose(runs["vmap"][1].sum_observed, runs["hooks"][1].sum_observed, rtol=1e-4, atol=1e-4)
    assert runs["vmap"][1].steps == 10 and sum(runs["vmap"][1].rows_per_step) > 0


def test_an_empty_poisson_draw_still_adds_the_noise():
    """No example drawn: a zero clipped sum plus the noise, the hooks engine's draw for the same streams."""
    x, y = _classifier_data()
    updates = {}
    for mode in ("hooks", "vmap"):
        plain = _model("cnn", 2)
        before = [p.detach().clone() for p in plain.parameters()]
        run = _private_engine(plain, make_optimizer(plain.parameters(), HP), x, y, Augmentation(0, [], None), _recipe(),
                              mode, Streams(5), "cpu", None, _task())
        assert run.step(torch.zeros(0, dtype=torch.long)) == (0.0, 0)
        updates[mode] = [b - p.detach() for b, p in zip(before, plain.parameters())]
    for a, b in zip(updates["vmap"], updates["hooks"]):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-7)
    assert max(float(u.abs().max()) for u in updates["vmap"]) > 1e-3  # noise, not a zero step


def _task():
    from medprivbench.benchmark import tasks

    return tasks.get("classification")


def test_vmap_is_a_configurable_engine():
    assert "vmap" in GRAD_SAMPLE_MODES
    cfg = OmegaConf.structured(ModelConfig(name="unet", grad_sample_mode="vmap", weight_standardization=True))
    assert grad_sample_mode(cfg) == "vmap"
    with pytest.raises(ConfigError, match="vmap"):  # the list of valid engines names it
        grad_sample_mode(OmegaConf.structured(ModelConfig(name="cnn", grad_sample_mode="jit")))

"""DP-SGD training mechanics: augmentation multiplicity, weight averaging, checkpoints, recipes."""

import math

import pytest
import torch
import torch.nn as nn
from omegaconf import OmegaConf

from medprivbench.benchmark.config import ModelConfig, PrivacyConfig, TrainConfig
from medprivbench.benchmark.models import build_model
from medprivbench.benchmark.streams import Streams
from medprivbench.benchmark.augmentation import Augmentation, augment
from medprivbench.benchmark.recipe import DPRecipe, make_recipe
from medprivbench.benchmark.training import train

HP = dict(optimizer="sgd", lr=0.05, momentum=0.0, weight_decay=0.0, lr_schedule="constant", ema_decay=None,
          augmult=0, augmentations=["shift", "hflip"])


def _model(seed=0):
    torch.manual_seed(seed)
    return build_model(OmegaConf.structured(ModelConfig(width=4)), in_channels=1, n_classes=2, image_size=16)


def _recipe(private=True, steps=4, k=2):
    return DPRecipe(epsilon_target=1.0 if private else math.inf, delta=1e-5, sample_rate=1 / k, steps=steps,
                    steps_per_epoch=k, noise_multiplier=1.0 if private else 0.0,
                    max_grad_norm=1.0 if private else math.inf, accountant="rdp" if private else "none")


def test_shift_moves_pixels_with_zero_fill_and_flip_mirrors():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    g = torch.Generator().manual_seed(0)
    shifted = augment(x.repeat(50, 1, 1, 1), ["shift"], g, max_shift=1)
    assert shifted.shape == (50, 1, 4, 4)
    for view in shifted:  # every view is the image moved by at most one pixel, zeros shifted in
        assert any(torch.equal(view, torch.roll(torch.nn.functional.pad(x[0], (1, 1, 1, 1)), (dy, dx), (1, 2))[:, 1:5, 1:5])
                   for dy in (-1, 0, 1) for dx in (-1, 0, 1))
    flipped = augment(x.repeat(50, 1, 1, 1), ["hflip"], torch.Generator().manual_seed(1))
    assert all(torch.equal(v, x[0]) or torch.equal(v, x[0].flip(-1)) for v in flipped)
    assert any(torch.equal(v, x[0].flip(-1)) for v in flipped) and any(torch.equal(v, x[0]) for v in flipped)


@pytest.mark.parametrize("mode", ["hooks", "ew"])
def test_augmentation_multiplicity_averages_view_gradients_before_clipping(mode):
    from opacus.grad_sample.utils import wrap_model

    model = _model()
    x, y = torch.rand(3, 1, 16, 16), torch.tensor([0, 1, 1])
    aug = Augmentation(4, ["shift", "hflip"], torch.Generator().manual_seed(5))
    views, targets = aug.views(x, y)
    expected = []
    for i in range(3):  # per image: mean over its 4 views of the per-view gradient
        grads = []
        for v in range(4):
            model.zero_grad()
            nn.functional.cross_entropy(model(views[4 * i + v : 4 * i + v + 1]), targets[4 * i : 4 * i + 1]).backward()
            grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
        expected.append(torch.stack(grads).mean(0))
    gsm = wrap_model(model, grad_sample_mode=mode, loss_reduction="mean")
    nn.functional.cross_entropy(gsm(views), targets).backward()
    aug.average_grad_samples(model)
    got = torch.cat([p.grad_sample.reshape(3, -1) for p in model.parameters()], dim=1)
    torch.testing.assert_close(got, torch.stack(expected), rtol=1e-4, atol=1e-6)


def test_dp_training_with_augmult_runs_and_spends_the_same_epsilon():
    x, y = torch.rand(40, 1, 16, 16), torch.randint(0, 2, (40,))
    plain = train(_model(), x, y, recipe=_recipe(), hp=HP, grad_sample_mode="hooks", streams=Streams(0))
    views = train(_model(), x, y, recipe=_recipe(), hp={**HP, "augmult": 3}, grad_sample_mode="hooks", streams=Streams(0))
    assert views.epsilon_spent == plain.epsilon_spent and views.steps_taken == plain.steps_taken


def test_ema_with_zero_decay_is_the_last_iterate_and_ema_differs_otherwise():
    x, y = torch.rand(40, 1, 16, 16), torch.randint(0, 2, (40,))
    last = train(_model(), x, y, recipe=_recipe(), hp=HP, streams=Streams(0))
    ema0 = train(_model(), x, y, recipe=_recipe(), hp={**HP, "ema_decay": 0.0}, streams=Streams(0))
    ema9 = train(_model(), x, y, recipe=_recipe(), hp={**HP, "ema_decay": 0.9}, streams=Streams(0))
    for a, b, c in zip(last.model.parameters(), ema0.model.parameters(), ema9.model.parameters()):
        torch.testing.assert_close(a, b)
    assert any(not torch.allclose(a, c) for a, c in zip(last.model.parameters(), ema9.model.parameters()))


def test_checkpoints_start_at_the_initial_weights():
    x, y = torch.rand(40, 1, 16, 16), torch.randint(0, 2, (40,))
    init = {k: v.clone() for k, v in _model().state_dict().items()}
    result = train(_model(), x, y, recipe=_recipe(steps=6, k=2), hp=HP, n_checkpoints=3, streams=Streams(0))
    assert len(result.checkpoints) == 3
    assert all(torch.equal(init[k], result.checkpoints[0][k]) for k in init)
    assert not all(torch.equal(result.checkpoints[1][k], result.checkpoints[2][k]) for k in init)


def test_recipe_keeps_q_and_T_so_half_size_members_get_the_same_sigma():
    privacy = OmegaConf.structured(PrivacyConfig(epsilon=4.0, accountant="rdp"))
    train_cfg = OmegaConf.structured(TrainConfig(epochs=5, batch_size=100))
    recipe = make_recipe(privacy, train_cfg, n_train=2000)
    assert recipe.sample_rate == pytest.approx(1 / 20) and recipe.steps == 100
    assert recipe.epsilon_planned <= 4.0
    nonprivate = make_recipe(OmegaConf.structured(PrivacyConfig(epsilon=math.inf)), train_cfg, n_train=2000)
    assert nonprivate.noise_multiplier == 0.0 and not nonprivate.private


def test_the_same_recipe_reference_trains_with_the_dp_recipe_and_tuned_with_its_own():
    """ε = ∞: same_recipe is the DP recipe without clipping and noise; tuned applies train.nonprivate."""
    from medprivbench.benchmark.recipe import effective_train

    train_cfg = OmegaConf.merge(OmegaConf.structured(TrainConfig), OmegaConf.load("configs/train/default.yaml"))
    dp = effective_train(train_cfg, 8.0, None)
    assert effective_train(train_cfg, math.inf, "same_recipe") == dp
    tuned = effective_train(train_cfg, math.inf, "tuned")
    assert (tuned["optimizer"], tuned["lr"], tuned["epochs"]) == ("adam", 0.001, 60) != (dp["optimizer"], dp["lr"], dp["epochs"])
    assert effective_train(train_cfg, 8.0, "tuned") == dp  # train.nonprivate never touches a DP run
    privacy = OmegaConf.structured(PrivacyConfig(epsilon=math.inf, reference="same_recipe"))
    same = make_recipe(privacy, train_cfg, 1000)
    assert (same.steps, same.noise_multiplier, same.private) == (dp["epochs"] * 8, 0.0, False)  # 1000 / 128 → 8 steps an epoch


@pytest.mark.parametrize("mode", ["hooks", "ew", "ghost"])
def test_a_dp_trained_module_is_plain_again_and_trains_once_more(mode):
    """Opacus' hooks and per-sample attributes leave with the run (``cleanup``): the returned module
    computes as a plain one, and a second run on it is a run like the first."""
    x, y = torch.rand(40, 1, 16, 16), torch.randint(0, 2, (40,))
    model = _model()
    first = train(model, x, y, recipe=_recipe(), hp=HP, grad_sample_mode=mode, streams=Streams(0))
    assert first.model is model
    assert all(not m._forward_hooks and not m._backward_hooks and not m._forward_pre_hooks for m in model.modules())
    assert all(not hasattr(p, "grad_sample") for p in model.parameters())
    again = train(model, x, y, recipe=_recipe(), hp=HP, grad_sample_mode=mode, streams=Streams(1))
    assert again.steps_taken == first.steps_taken and all(math.isfinite(v) for v in again.loss_history)

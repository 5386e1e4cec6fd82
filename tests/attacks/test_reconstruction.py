"""DP-SGD client updates, label recovery and gradient inversion, checked against brute force."""

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from medprivbench.attacks.client_update import (
    ClientUpdate,
    clip_factors,
    dp_sgd_update,
    per_sample_gradients,
    simulate_client_update,
    trainable_parameters,
)
from medprivbench.attacks.image_metrics import psnr
from medprivbench.attacks.label_recovery import recover_labels
from medprivbench.attacks.reconstruction import (
    DLG_2019,
    FAST,
    GEIPING_2020,
    InversionConfig,
    cosine_distance,
    invert_gradients,
    l2_distance,
    run_gradient_inversion,
    total_variation,
)
from tests.conftest import shared_file

# the default CNN (``make_cnn``), the synthetic batches (``make_images``) and ``one_thread``: tests/attacks/conftest.py
pytestmark = pytest.mark.usefixtures("one_thread")

# Light, reliable inversion settings for a small smooth network (a few seconds on one core).
LIGHT = replace(FAST, iterations=300, lr=0.03, tv_weight=0.0)


def _smooth_net(seed: int = 0, *, activation=nn.Tanh, head_bias: bool = True, size: int = 16) -> nn.Module:
    """A small conv net with average pooling: smooth in its input, so inversion converges quickly."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), activation(), nn.AvgPool2d(2),
        nn.Conv2d(16, 16, 3, padding=1), activation(), nn.Flatten(),
        nn.Linear(16 * (size // 2) ** 2, 2, bias=head_bias),
    )


def _mean_gradient(model, images, labels):
    params = [p for _, p in trainable_parameters(model)]
    return torch.autograd.grad(F.cross_entropy(model(images), labels), params)


# --------------------------------------------------------------------------------------------
# The client's DP-SGD update
# --------------------------------------------------------------------------------------------
def test_per_sample_gradients_vmap_equals_loop(make_images, make_cnn):
    model = make_cnn()
    x, y = make_images(4, seed=1)
    vectorised = per_sample_gradients(model, x, y, method="vmap")
    looped = per_sample_gradients(model, x, y, method="loop")
    for a, b in zip(vectorised, looped):
        assert a.shape[0] == 4 and torch.allclose(a, b, atol=1e-5, rtol=1e-4)


def test_update_without_noise_or_clipping_is_the_mean_gradient(make_images, make_cnn):
    model = make_cnn()
    x, y = make_images(6, seed=2)
    update = dp_sgd_update(model, x, y, noise_multiplier=0.0, max_grad_norm=math.inf)
    for a, b in zip(update, _mean_gradient(model, x, y)):
        assert torch.allclose(a, b, atol=1e-6, rtol=1e-4)


def test_clipping_matches_a_brute_force_loop(make_images, make_cnn):
    model = make_cnn()
    x, y = make_images(5, seed=3)
    params = [p for _, p in trainable_parameters(model)]
    rows = [torch.autograd.grad(F.cross_entropy(model(x[n : n + 1]), y[n : n + 1]), params) for n in range(5)]
    norms = torch.stack([torch.sqrt(sum(g.pow(2).sum() for g in row)) for row in rows])
    clip = float(norms.median())  # some samples clipped, some not
    expected = [sum(min(1.0, clip / (float(norms[n]) + 1e-6)) * rows[n][i] for n in range(5)) / 5 for i in range(len(params))]
    update = dp_sgd_update(model, x, y, noise_multiplier=0.0, max_grad_norm=clip, chunk_size=2)
    for a, b in zip(update, expected):
        assert torch.allclose(a, b, atol=1e-6, rtol=1e-4)
    clipped = norms * clip_factors(norms, clip)
    assert torch.all(clipped <= clip) and torch.isclose(clipped.max(), torch.tensor(clip), rtol=1e-5)


def test_noise_has_standard_deviation_sigma_c_over_b(make_images, make_cnn):
    model = make_cnn()
    x, y = make_images(4, seed=4)
    sigma, clip = 2.0, 0.5
    clean = dp_sgd_update(model, x, y, noise_multiplier=0.0, max_grad_norm=clip)
    noisy = dp_sgd_update(model, x, y, noise_multiplier=sigma, max_grad_norm=clip, generator=torch.Generator().manual_seed(0))
    again = dp_sgd_update(model, x, y, noise_multiplier=sigma, max_grad_norm=clip, generator=torch.Generator().manual_seed(0))
    z = torch.cat([((n - c) * 4 / (sigma * clip)).flatten() for n, c in zip(noisy, clean)])
    assert z.numel() > 10_000 and abs(float(z.mean())) < 0.05 and abs(float(z.std()) - 1.0) < 0.03
    assert all(torch.equal(a, b) for a, b in zip(noisy, again))


@pytest.mark.parametrize(
    "sigma, clip, match",
    [(1.0, math.inf, "finite max_grad_norm"), (-0.1, 1.0, "noise_multiplier"), (math.nan, 1.0, "noise_multiplier"), (0.0, 0.0, "max_grad_norm")],
)
def test_invalid_dp_parameters_are_rejected(sigma, clip, match, make_images, make_cnn):
    x, y = make_images(2, seed=5)
    with pytest.raises(ValueError, match=match):
        dp_sgd_update(make_cnn(), x, y, noise_multiplier=sigma, max_grad_norm=clip)


def test_client_update_is_the_attackers_view_only(make_images, make_cnn):
    model = make_cnn()
    x, y = make_images(3, seed=6)
    update = simulate_client_update(model, x, y, noise_multiplier=0.5, max_grad_norm=1.0, generator=torch.Generator().manual_seed(0))
    assert update.labels is None and update.batch_size == 3 and update.image_shape == (1, 28, 28)
    assert not any(torch.is_tensor(v) and v.shape == x.shape for v in vars(update).values())
    view = update.threat_model()
    assert view["labels"] == "inferred from the update" and json.dumps(view)
    with pytest.raises(ValueError, match="labels have shape"):
        ClientUpdate(gradients=update.gradients, batch_size=3, image_shape=(1, 28, 28), labels=torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="batch_size"):
        ClientUpdate(gradients=update.gradients, batch_size=0, image_shape=(1, 28, 28))


# --------------------------------------------------------------------------------------------
# Label recovery
# --------------------------------------------------------------------------------------------
def test_idlg_recovers_the_label_of_a_single_image(make_images, make_cnn):
    model = make_cnn()
    x, y = make_images(8, seed=7)
    assert set(y.tolist()) == {0, 1}
    for n in range(8):
        update = simulate_client_update(model, x[n : n + 1], y[n : n + 1], noise_multiplier=0.0, max_grad_norm=math.inf)
        assert recover_labels(model, update).tolist() == [int(y[n])]


def test_idlg_without_a_head_bias_uses_the_weight_rows(make_images):
    model = _smooth_net(activation=nn.ReLU, head_bias=False)
    x, y = make_images(6, seed=8, size=16)
    for n in range(6):
        update = simulate_client_update(model, x[n : n + 1], y[n : n + 1], noise_multiplier=0.0, max_grad_norm=1.0)
        assert recover_labels(model, update).tolist() == [int(y[n])]


def test_label_counts_of_a_batch_from_public_reference_images(make_images, make_cnn):
    model = make_cnn()
    x, y = make_images(12, seed=9)
    public, _ = make_images(64, seed=10)
    update = simulate_client_update(model, x, y, noise_multiplier=0.0, max_grad_norm=math.inf)
    recovered = recover_labels(model, update, reference_images=public)
    assert recovered.tolist() == sorted(y.tolist())


# --------------------------------------------------------------------------------------------
# Configuration and parts
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "changes, match",
    [
        ({"loss": "l1"}, "loss="), ({"optimizer": "sgd"}, "optimizer="), ({"iterations": 0}, "iterations="),
        ({"lr": 0.0}, "lr="), ({"optimizer": "lbfgs", "signed": True}, "signed=True"), ({"tv_weight": -1.0}, "tv_weight="),
        ({"restarts": 0}, "restarts="), ({"init": "zeros"}, "init="), ({"init": "half", "restarts": 2}, "repeats one identical trial"),
    ],
)
def test_every_invalid_option_is_rejected(changes, match):
    with pytest.raises(ValueError, match=match):
        InversionConfig(**changes)


def test_presets_follow_the_papers():
    assert (GEIPING_2020.loss, GEIPING_2020.optimizer, GEIPING_2020.signed, GEIPING_2020.iterations, GEIPING_2020.lr) == ("cosine", "adam", True, 24_000, 0.1)
    assert (DLG_2019.loss, DLG_2019.optimizer, DLG_2019.boxed, DLG_2019.tv_weight) == ("l2", "lbfgs", False, 0.0)


def test_gradient_distances_equal_their_definitions():
    generator = torch.Generator().manual_seed(0)
    trial = [torch.randn(3, 4, 5, generator=generator, dtype=torch.float64), torch.randn(3, 7, generator=generator, dtype=torch.float64)]
    target = [torch.randn(3, 4, 5, generator=generator, dtype=torch.float64), torch.randn(3, 7, generator=generator, dtype=torch.float64)]
    flat_trial = torch.cat([t.flatten(1) for t in trial], 1)
    flat_target = torch.cat([t.flatten(1) for t in target], 1)
    cosine = F.cosine_similarity(flat_trial, flat_target, dim=1)
    assert torch.allclose(cosine_distance(trial, target), 1 - cosine)
    assert torch.allclose(l2_distance(trial, target), (flat_trial - flat_target).pow(2).sum(1) / flat_target.pow(2).sum(1))
    assert torch.allclose(cosine_distance(trial, trial), torch.zeros(3, dtype=torch.float64), atol=1e-12)


def test_total_variation_is_mean_absolute_neighbour_difference():
    image = torch.tensor([[0.0, 1.0], [1.0, 1.0]]).view(1, 1, 1, 2, 2)
    assert torch.allclose(total_variation(image), torch.tensor([0.5 + 0.5]))


# --------------------------------------------------------------------------------------------
# Gradient inversion
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_image(make_images):
    x, y = make_images(1, seed=12, size=16)
    return x, y


def test_inversion_reconstructs_a_single_image_without_dp(small_image):
    x, y = small_image
    model = _smooth_net()
    update = simulate_client_update(model, x, y, noise_multiplier=0.0, max_grad_norm=math.inf)
    calls = []
    result = run_gradient_inversion(model, [update], LIGHT, progress=lambda i, n, loss: calls.append((i, n)))
    assert result.images.shape == (1, 1, 1, 16, 16) and result.labels.tolist() == [y.tolist()]
    assert psnr(x, result.images[0])[0] >= 25.0
    assert calls[-1] == (300, 300) and len(calls) == 300
    assert result.iterations_per_second > 0 and json.dumps(result.summary())


def test_inversion_fails_under_heavy_dp_noise(small_image):
    x, y = small_image
    model = _smooth_net()
    update = simulate_client_update(model, x, y, noise_multiplier=1.0, max_grad_norm=1.0, generator=torch.Generator().manual_seed(0))
    reconstruction = invert_gradients(model, update, LIGHT)
    blank = psnr(x, torch.full_like(x, 0.5))[0]
    assert psnr(x, reconstruction)[0] < min(blank, 18.0)


def test_dlg_baseline_reconstructs_without_dp(small_image):
    x, y = small_image
    model = _smooth_net()
    update = simulate_client_update(model, x, y, noise_multiplier=0.0, max_grad_norm=math.inf, reveal_labels=True)
    reconstruction = invert_gradients(model, update, replace(DLG_2019, iterations=150))
    assert torch.isfinite(reconstruction).all() and psnr(x, reconstruction)[0] >= 25.0


def test_vectorised_trials_equal_separate_runs(make_images):
    x, y = make_images(2, seed=13, size=16)
    model = _smooth_net()
    updates = [simulate_client_update(model, x[n : n + 1], y[n : n + 1], noise_multiplier=0.0, max_grad_norm=math.inf) for n in range(2)]
    config = replace(LIGHT, iterations=25, init="half", signed=False)  # unsigned: no sign flips of ~0 gradients
    together = run_gradient_inversion(model, updates, config).images
    alone = run_gradient_inversion(model, updates[1:], config).images
    assert torch.allclose(together[1], alone[0], atol=1e-4)


def test_restarts_keep_the_trial_with_the_lowest_matching_loss(small_image):
    x, y = small_image
    model = _smooth_net()
    update = simulate_client_update(model, x, y, noise_multiplier=0.0, max_grad_norm=math.inf)
    config = replace(LIGHT, iterations=40)
    single = run_gradient_inversion(model, [update], config, seed=3)
    several = run_gradient_inversion(model, [update], replace(config, restarts=3), seed=3)  # trial 0 = the single run
    assert several.n_trials == 3 and float(several.matching_loss[0]) <= float(single.matching_loss[0]) + 1e-9


def test_updates_of_another_model_are_rejected(small_image, make_cnn):
    x, y = small_image
    update = simulate_client_update(_smooth_net(), x, y, noise_multiplier=0.0, max_grad_norm=math.inf)
    with pytest.raises(ValueError, match="trainable parameters|has shape"):
        invert_gradients(make_cnn(), update, LIGHT)


@pytest.mark.realdata
def test_default_cnn_inversion_on_a_pneumoniamnist_image(make_cnn):
    data = np.load(shared_file("pneumoniamnist.npz"))
    x = torch.tensor(data["train_images"][:1], dtype=torch.float32).unsqueeze(1) / 255.0
    y = torch.tensor(data["train_labels"][:1, 0]).long()
    model = make_cnn()
    update = simulate_client_update(model, x, y, noise_multiplier=0.0, max_grad_norm=math.inf)
    reconstruction = invert_gradients(model, update, replace(FAST, iterations=300))
    assert psnr(x, reconstruction)[0] >= 22.0  # ≈ 25.6 dB measured; the default 3000 iterations reach ≈ 27.5

"""benchmark/audit_training.py on a tiny model: the audit canaries made from held-out images, and the
one-run audit's extra training run (which canaries it includes, what it trains on, how it scores)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from medprivbench.attacks.membership import loss_attack
from medprivbench.benchmark import audit_training
from medprivbench.benchmark.recipe import DPRecipe
from medprivbench.benchmark.streams import Streams
from medprivbench.benchmark.training import predict_logits

from ..conftest import record_train_calls

HP = dict(optimizer="sgd", lr=0.5, momentum=0.0, weight_decay=0.0, lr_schedule="constant", ema_decay=None,
          augmult=0, augmentations=[])
N, SIDE = 40, 4  # training images of 1×4×4 pixels
RECIPE = DPRecipe(epsilon_target=1.0, delta=1e-5, sample_rate=0.25, steps=8, steps_per_epoch=4,
                  noise_multiplier=1.0, max_grad_norm=1.0, accountant="rdp")


def _build(streams: Streams) -> nn.Module:
    """A linear classifier whose initial weights depend only on the model's ``init`` stream."""
    torch.manual_seed(streams.seed_for("init"))
    return nn.Sequential(nn.Flatten(), nn.Linear(SIDE * SIDE, 2))


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(0)
    return {"x": torch.rand(N, 1, SIDE, SIDE, generator=g), "y": torch.randint(0, 2, (N,), generator=g)}


@pytest.fixture
def recorded_training(monkeypatch):
    """Every call of audit_training.py's ``train``: its inputs and the trained model (training itself unchanged)."""
    return record_train_calls(monkeypatch, audit_training)


# ----------------------------------------------------------------------------- make_canaries
def _held_out(n: int, n_classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Held-out images that each carry their index in their pixels (so a canary names its source)."""
    x = np.broadcast_to((np.arange(n, dtype=np.float32) / (2 * n))[:, None, None, None], (n, 1, SIDE, SIDE)).copy()
    y = np.random.default_rng(seed).integers(0, n_classes, size=n)
    return x, y


def _source(canary_x: np.ndarray, n: int) -> np.ndarray:
    """The held-out index of each canary image (see :func:`_held_out`)."""
    value = canary_x.reshape(len(canary_x), -1)
    assert np.all(value == value[:, :1])  # one held-out image each, untouched
    index = value[:, 0] * (2 * n)
    assert np.allclose(index, np.round(index))
    return np.round(index).astype(int)


@pytest.mark.parametrize("n_classes", [2, 5])
def test_mislabelled_canaries_are_held_out_images_with_a_changed_label(n_classes):
    hx, hy = _held_out(300, n_classes)
    cx, cy = audit_training.make_canaries("mislabelled", hx, hy, 200, n_classes, np.random.default_rng(1))
    assert cx.shape == (200, 1, SIDE, SIDE) and cy.shape == (200,)
    source = _source(cx, 300)
    assert len(set(source)) == 200  # drawn without replacement
    assert np.all(cy != hy[source]) and np.all((0 <= cy) & (cy < n_classes))
    if n_classes == 2:
        assert np.array_equal(cy, 1 - hy[source])
    else:  # a random other class: every shift 1 … K−1 occurs
        assert set((cy - hy[source]) % n_classes) == set(range(1, n_classes))
    cx[:] = -1.0
    assert hx.min() >= 0.0  # the canaries are copies


def test_ood_canaries_are_inverted_held_out_images():
    hx, hy = _held_out(100, 3)
    cx, cy = audit_training.make_canaries("ood", hx, hy, 60, 3, np.random.default_rng(2))
    assert cx.dtype == np.float32 and cx.shape == (60, 1, SIDE, SIDE)
    source = _source(1.0 - cx, 100)
    assert len(set(source)) == 60
    np.testing.assert_allclose(cx, 1.0 - hx[source])
    assert set(cy.tolist()) <= {0, 1, 2}


def test_canaries_never_exceed_the_held_out_images():
    hx, hy = _held_out(10, 2)
    cx, cy = audit_training.make_canaries("mislabelled", hx, hy, 50, 2, np.random.default_rng(3))
    assert len(cx) == len(cy) == 10 and sorted(_source(cx, 10)) == list(range(10))


# ----------------------------------------------------------------------------- train_audit_run
def test_audit_run_includes_each_canary_with_probability_half_and_scores_all(data, recorded_training):
    m = 400
    hx, hy = _held_out(m, 2)
    cx, cy = audit_training.make_canaries("mislabelled", hx, hy, m, 2, np.random.default_rng(4))
    streams = Streams(5).of("audit")
    result = audit_training.train_audit_run(build=_build, x=data["x"], y=data["y"], canary_x=cx, canary_y=cy, recipe=RECIPE,
                                            hp=HP, grad_sample_mode="hooks", streams=streams, device="cpu", score=loss_attack)
    included = result.included
    assert included.shape == (m,) and included.dtype == np.bool_
    assert np.array_equal(included, streams.numpy("membership").random(m) < 0.5)  # the documented stream
    assert abs(included.mean() - 0.5) < 5 * 0.5 / math.sqrt(m)
    # trained once, on the training set followed by exactly the included canaries
    (call,) = recorded_training
    assert len(call["x"]) == N + included.sum()
    assert torch.equal(call["x"][:N], data["x"]) and torch.equal(call["x"][N:], torch.from_numpy(cx[included]))
    assert torch.equal(call["y"][N:], torch.from_numpy(cy[included]).long())
    assert call["streams"] == streams
    # every canary scored by the trained model's outputs on it
    assert result.scores.shape == (m,)
    np.testing.assert_allclose(result.scores, loss_attack(predict_logits(call["result"].model, torch.from_numpy(cx)), cy),
                               rtol=1e-6)


def test_audit_run_reuses_fixed_features_of_the_training_set(data, recorded_training):
    hx, hy = _held_out(20, 2)
    cx, cy = audit_training.make_canaries("ood", hx, hy, 20, 2, np.random.default_rng(5))
    features = torch.arange(N * 3, dtype=torch.float32).view(N, 3)
    feature_fn = lambda images: images.flatten(1)[:, :3] + 1000.0  # noqa: E731
    result = audit_training.train_audit_run(build=_build, x=data["x"], y=data["y"], canary_x=cx, canary_y=cy, recipe=RECIPE,
                                            hp=HP, grad_sample_mode="hooks", streams=Streams(6).of("audit"), device="cpu",
                                            score=loss_attack, feature_fn=feature_fn, features=features)
    (call,) = recorded_training
    expected = torch.cat([features, feature_fn(torch.from_numpy(cx[result.included]))])
    assert torch.equal(call["features"], expected)

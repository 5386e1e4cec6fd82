"""benchmark/shadow.py on a tiny model: the pool's membership draw, what each pool model trains on and
is queried with, and reproducibility from the run's streams (the audit run: test_audit_training.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn as nn
from scipy.stats import binom, chisquare

from medprivbench.benchmark import shadow
from medprivbench.benchmark.recipe import DPRecipe
from medprivbench.benchmark.streams import Streams
from medprivbench.benchmark.training import predict_logits

from ..conftest import record_train_calls

HP = dict(optimizer="sgd", lr=0.5, momentum=0.0, weight_decay=0.0, lr_schedule="constant", ema_decay=None,
          augmult=0, augmentations=[])
N, P, N_TEST, SIDE = 40, 12, 16, 4  # training, population and test images of 1×4×4 pixels
RECIPE = DPRecipe(epsilon_target=1.0, delta=1e-5, sample_rate=0.25, steps=8, steps_per_epoch=4,
                  noise_multiplier=1.0, max_grad_norm=1.0, accountant="rdp")


def _build(streams: Streams) -> nn.Module:
    """A linear classifier whose initial weights depend only on the model's ``init`` stream."""
    torch.manual_seed(streams.seed_for("init"))
    return nn.Sequential(nn.Flatten(), nn.Linear(SIDE * SIDE, 2))


def _images(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, SIDE, SIDE, generator=g), torch.randint(0, 2, (n,), generator=g)


@pytest.fixture(scope="module")
def data():
    x, y = _images(N, 0)
    x_test, y_test = _images(N_TEST, 1)
    x_pop, y_pop = _images(P, 2)
    return {"x": x, "y": y, "x_test": x_test, "y_test": y_test.numpy(), "x_population": x_pop, "y_population": y_pop.numpy()}


def _pool(data, *, seed: int = 3, num_models: int = 3, queries=("identity", "hflip"), progress=None) -> shadow.PoolResult:
    return shadow.train_pool(build=_build, **data, recipe=RECIPE, hp=HP, grad_sample_mode="hooks", num_models=num_models,
                             queries=list(queries), streams=Streams(seed), device="cpu", progress=progress)


@pytest.fixture
def recorded_training(monkeypatch):
    """Every call of shadow.py's ``train``: its inputs and the trained model (training itself unchanged)."""
    return record_train_calls(monkeypatch, shadow)


# ----------------------------------------------------------------------------- draw_membership
def test_draw_membership_is_bool_of_the_requested_shape_and_reproducible():
    a = shadow.draw_membership(5, 7, np.random.default_rng(1))
    assert a.shape == (5, 7) and a.dtype == np.bool_
    assert np.array_equal(a, shadow.draw_membership(5, 7, np.random.default_rng(1)))
    assert not np.array_equal(shadow.draw_membership(50, 70, np.random.default_rng(1)),
                              shadow.draw_membership(50, 70, np.random.default_rng(2)))


def test_membership_is_bernoulli_half_independently_per_model_and_image():
    m, n = 8, 20_000
    member = shadow.draw_membership(m, n, np.random.default_rng(0))
    # every entry Bernoulli(½): the overall share within 5 standard errors of ½
    assert abs(member.mean() - 0.5) < 5 * 0.5 / math.sqrt(m * n)
    # independent across models: each image is in Binomial(M, ½) models — not exactly M/2 of them,
    # which would make the shadows' membership tell the target's
    counts = np.bincount(member.sum(0), minlength=m + 1)
    expected = n * binom.pmf(np.arange(m + 1), m, 0.5)
    assert chisquare(counts, expected).pvalue > 1e-4
    assert counts[0] > 0 and counts[m] > 0  # images in no model and in every model occur
    # and no pair of models is correlated
    corr = np.corrcoef(member.astype(float))
    assert np.abs(corr[~np.eye(m, dtype=bool)]).max() < 5 / math.sqrt(n)


# ----------------------------------------------------------------------------- train_pool
def test_each_pool_model_trains_on_exactly_its_row_of_the_matrix(data, recorded_training):
    pool = _pool(data)
    expected = shadow.draw_membership(3, N, Streams(3).of("pool").numpy("membership"))  # the documented stream
    assert np.array_equal(pool.member, expected)
    assert len(recorded_training) == 3
    for m, call in enumerate(recorded_training):
        rows = np.flatnonzero(pool.member[m])
        assert torch.equal(call["x"], data["x"][rows]) and torch.equal(call["y"], data["y"][rows])
        assert call["streams"] == Streams(3, "pool", m)  # model m draws from its own streams
        assert call["recipe"] is RECIPE  # the target's recipe unchanged
    assert not all(np.array_equal(pool.member[0], pool.member[m]) for m in (1, 2))


def test_reference_models_draw_from_the_reference_role_streams(data, recorded_training):
    # medprivbench-audit's reference models: model k from Streams(seed).of("reference", k), never a pool model's
    pool = shadow.train_pool(build=_build, **data, recipe=RECIPE, hp=HP, grad_sample_mode="hooks", num_models=2,
                             queries=["identity"], streams=Streams(3), device="cpu", role="reference")
    assert np.array_equal(pool.member, shadow.draw_membership(2, N, Streams(3).of("reference").numpy("membership")))
    assert [call["streams"] for call in recorded_training] == [Streams(3, "reference", 0), Streams(3, "reference", 1)]


def test_pool_logits_have_one_entry_per_model_image_query_and_class(data):
    calls = []
    pool = _pool(data, num_models=2, progress=lambda done, total: calls.append((done, total)))
    assert pool.num_models == 2
    assert pool.logits.shape == (2, N, 2, 2) and pool.logits.dtype == np.float32
    assert pool.population_logits.shape == (2, P, 2, 2) and pool.population_logits.dtype == np.float32
    assert np.array_equal(pool.labels, data["y"].numpy())
    assert np.array_equal(pool.population_labels, data["y_population"])
    assert pool.queries == ["identity", "hflip"]
    assert len(pool.test_accuracy) == 2 and all(0.0 <= a <= 1.0 for a in pool.test_accuracy)
    assert calls == [(1, 2), (2, 2)]
    assert pool.wall_time_s > 0


def test_queries_are_the_trained_models_logits_on_the_image_and_its_mirror(data, recorded_training):
    pool = _pool(data)
    for m, call in enumerate(recorded_training):
        model = call["result"].model
        for images, logits in ((data["x"], pool.logits[m]), (data["x_population"], pool.population_logits[m])):
            np.testing.assert_allclose(logits[:, 0], predict_logits(model, images), rtol=1e-6, atol=1e-6)
            np.testing.assert_allclose(logits[:, 1], predict_logits(model, images.flip(-1)), rtol=1e-6, atol=1e-6)
            assert not np.allclose(logits[:, 0], logits[:, 1])  # the mirror is another input
        accuracy = (predict_logits(model, data["x_test"]).argmax(1) == data["y_test"]).mean()
        assert pool.test_accuracy[m] == pytest.approx(accuracy)


def test_only_the_requested_queries_are_made(data):
    pool = _pool(data, num_models=2, queries=("hflip",))
    both = _pool(data, num_models=2)
    assert pool.logits.shape == (2, N, 1, 2)
    assert np.array_equal(pool.logits[:, :, 0], both.logits[:, :, 1])


def test_a_pool_is_bit_identical_when_rerun_with_the_same_streams(data):
    first, again, other = _pool(data), _pool(data), _pool(data, seed=4)
    for name in ("logits", "population_logits", "member"):
        assert np.array_equal(getattr(first, name), getattr(again, name)), name
    assert first.test_accuracy == again.test_accuracy
    assert not np.array_equal(first.member, other.member)
    assert not np.array_equal(first.logits, other.logits)


def test_pool_trained_by_two_workers_is_bit_identical_to_one_after_another():
    """Workers train each model from its own streams with one thread: the logits (and so every
    membership score and record) equal those of a serial run with one thread."""
    from omegaconf import OmegaConf

    from medprivbench.benchmark.config import ModelConfig
    from medprivbench.benchmark.experiment import ModelBuilder

    builder = ModelBuilder(OmegaConf.to_container(OmegaConf.structured(ModelConfig(name="cnn", width=4))), 1, 2, 12, 2)
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(48, 1, 12, 12, generator=g), torch.randint(0, 2, (48,), generator=g)
    arrays = dict(x=x, y=y, x_test=x[:8], y_test=y[:8].numpy(), x_population=x[:6], y_population=y[:6].numpy())
    hp = {**HP, "augmult": 1, "augmentations": ["shift", "hflip"]}  # augmentation draws from the model's streams too
    pools = {}
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        for workers in (1, 2):
            done = []
            pools[workers] = shadow.train_pool(build=builder, **arrays, recipe=RECIPE, hp=hp, grad_sample_mode="ew",
                                               num_models=3, queries=["identity", "hflip"], streams=Streams(5), device="cpu",
                                               progress=lambda i, n: done.append(i), workers=workers)
            assert done == [1, 2, 3]
    finally:
        torch.set_num_threads(threads)
    assert np.array_equal(pools[1].member, pools[2].member)
    assert np.array_equal(pools[1].logits, pools[2].logits)
    assert np.array_equal(pools[1].population_logits, pools[2].population_logits)
    assert pools[1].test_accuracy == pools[2].test_accuracy
    assert not np.array_equal(pools[1].logits[0], pools[1].logits[1])  # the models do differ from each other


def test_pool_workers_default_to_one_per_core_on_a_cpu_and_one_on_a_gpu(monkeypatch):
    monkeypatch.setattr(shadow, "cpu_cores", lambda: 8)
    assert shadow.pool_workers(0, 16, "cpu") == 8
    assert shadow.pool_workers(0, 3, "cpu") == 3  # never more workers than models
    assert shadow.pool_workers(0, 16, "cuda") == 1
    assert shadow.pool_workers(2, 16, "cuda") == 2
    with pytest.raises(ValueError, match="shadow_workers"):
        shadow.pool_workers(-1, 16, "cpu")

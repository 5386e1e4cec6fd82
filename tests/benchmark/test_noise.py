"""benchmark/noise.py: the DP optimiser adds the noise Opacus' own optimiser adds, lets a parameter
block with a generator of its own take nothing from the classifier's noise stream, refuses to noise
the same gradients twice, and its assembly trains as ``PrivacyEngine.make_private`` does."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn
from opacus import PrivacyEngine
from opacus.optimizers import DPOptimizer, DPOptimizerFastGradientClipping

from medprivbench.benchmark.noise import (StreamNoiseDPOptimizer, StreamNoiseGhostDPOptimizer, gaussian_noise,
                                          make_private)

SIGMA, CLIP, BATCH = 1.3, 1.0, 4
# Two code paths that draw the same numbers: equal up to float rounding (they are equal to the bit
# on one machine, but the test does not rely on it); a noise draw of std σ·C/B ≈ 0.3 is far outside.
TOLERANCE = dict(rtol=0, atol=1e-6)


def _params(seed: int = 0) -> list[nn.Parameter]:
    g = torch.Generator().manual_seed(seed)
    return [nn.Parameter(torch.randn(3, 5, generator=g)), nn.Parameter(torch.randn(5, generator=g))]


def _per_sample_gradients(params: list[nn.Parameter], seed: int = 1) -> None:
    """Per-sample gradients of BATCH examples, as a grad-sample module would leave them: those of
    :func:`_params`, and zeros for any parameter after them (a block the examples never touch)."""
    g = torch.Generator().manual_seed(seed)
    for i, p in enumerate(params):
        p.grad_sample = 3.0 * torch.randn(BATCH, *p.shape, generator=g) if i < 2 else torch.zeros(BATCH, *p.shape)


def _step(optimizer_class, params: list[nn.Parameter], generator: torch.Generator, **kwargs) -> list[torch.Tensor]:
    """One step of ``optimizer_class`` (SGD, lr 1) on fixed per-sample gradients; the noisy mean gradients."""
    optimizer = optimizer_class(torch.optim.SGD(params, lr=1.0), noise_multiplier=SIGMA, max_grad_norm=CLIP,
                                expected_batch_size=BATCH, generator=generator, **kwargs)
    optimizer.zero_grad()
    _per_sample_gradients(params)
    optimizer.step()
    return [p.grad.detach().clone() for p in params]


def test_the_noise_is_opacus_own_for_the_same_generator_seed():
    ours = _step(StreamNoiseDPOptimizer, _params(), torch.Generator().manual_seed(7))
    opacus = _step(DPOptimizer, _params(), torch.Generator().manual_seed(7))
    other_seed = _step(StreamNoiseDPOptimizer, _params(), torch.Generator().manual_seed(8))
    for a, b, c in zip(ours, opacus, other_seed):
        torch.testing.assert_close(a, b, **TOLERANCE)
        assert (a - c).abs().max() > 1e-2  # the noise is there: another seed gives another update


def test_ghost_clipping_noise_is_opacus_own_for_the_same_generator_seed():
    def ghost_step(optimizer_class) -> list[torch.Tensor]:
        params = _params()
        optimizer = optimizer_class(torch.optim.SGD(params, lr=1.0), noise_multiplier=SIGMA, max_grad_norm=CLIP,
                                    expected_batch_size=BATCH, generator=torch.Generator().manual_seed(7))
        optimizer.zero_grad()
        for p in params:  # ghost clipping's loss leaves the clipped sum in p.grad
            p.grad = torch.ones_like(p)
        optimizer.step()
        return [p.grad.detach().clone() for p in params]

    for a, b in zip(ghost_step(StreamNoiseGhostDPOptimizer), ghost_step(DPOptimizerFastGradientClipping)):
        torch.testing.assert_close(a, b, **TOLERANCE)
        assert (a - 1.0 / BATCH).abs().max() > 1e-2


def test_a_block_with_its_own_generator_draws_nothing_from_the_classifier_stream():
    classifier_alone = torch.Generator().manual_seed(7)
    without = _step(StreamNoiseDPOptimizer, _params(), classifier_alone)

    classifier, block_stream = torch.Generator().manual_seed(7), torch.Generator().manual_seed(11)
    params = _params()
    block = nn.Parameter(torch.zeros(6))
    grads = _step(StreamNoiseDPOptimizer, params + [block], classifier, own_generators={id(block): block_stream})
    # the classifier's noise, and what is left of its stream, are those of a run without the block
    for a, b in zip(grads[:-1], without):
        torch.testing.assert_close(a, b, **TOLERANCE)
    assert torch.equal(classifier.get_state(), classifier_alone.get_state())
    # and the block's noise is the first draw of its own stream (its per-sample gradients: zero)
    expected = torch.normal(mean=0, std=SIGMA * CLIP, size=(6,), generator=torch.Generator().manual_seed(11)) / BATCH
    torch.testing.assert_close(grads[-1], expected, **TOLERANCE)


def test_secure_noise_draws_from_the_os_and_nothing_from_the_generator():
    generator = torch.Generator().manual_seed(7)
    before = generator.get_state()
    a = _step(StreamNoiseDPOptimizer, _params(), generator, secure_rng=True)
    b = _step(StreamNoiseDPOptimizer, _params(), generator, secure_rng=True)
    assert torch.equal(generator.get_state(), before)
    assert all((x - y).abs().max() > 1e-3 for x, y in zip(a, b))  # fresh noise every time


def test_noise_is_never_added_twice_to_the_same_gradients():
    params = _params()
    optimizer = StreamNoiseDPOptimizer(torch.optim.SGD(params, lr=1.0), noise_multiplier=SIGMA, max_grad_norm=CLIP,
                                       expected_batch_size=BATCH, generator=torch.Generator().manual_seed(7))
    optimizer.zero_grad()
    _per_sample_gradients(params)
    optimizer.step()
    with pytest.raises(ValueError, match="zero_grad"):
        optimizer.add_noise()
    optimizer.zero_grad()  # a new step is fine
    _per_sample_gradients(params)
    optimizer.step()


def test_a_zero_std_draws_nothing():
    generator = torch.Generator().manual_seed(3)
    before = generator.get_state()
    assert torch.equal(gaussian_noise(0.0, torch.ones(4), generator), torch.zeros(4))
    assert torch.equal(generator.get_state(), before)


@pytest.mark.parametrize("mode", ["hooks", "ghost"])
def test_one_step_equals_opacus_make_private(mode):
    """The assembled module, optimiser and loss take the step ``PrivacyEngine.make_private`` takes."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.Tanh(), nn.Linear(8, 2))
    twin = copy.deepcopy(model)
    g = torch.Generator().manual_seed(1)
    x, y = torch.rand(6, 1, 4, 4, generator=g), torch.randint(0, 2, (6,), generator=g)

    parts = make_private(model, torch.optim.SGD(model.parameters(), lr=0.5), nn.CrossEntropyLoss(), grad_sample_mode=mode,
                         noise_multiplier=SIGMA, max_grad_norm=CLIP, expected_batch_size=BATCH,
                         generator=torch.Generator().manual_seed(9))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.zeros(4 * BATCH)), batch_size=4)
    out = PrivacyEngine().make_private(module=twin, optimizer=torch.optim.SGD(twin.parameters(), lr=0.5), data_loader=loader,
                                       criterion=nn.CrossEntropyLoss(), noise_multiplier=SIGMA, max_grad_norm=CLIP,
                                       poisson_sampling=False, grad_sample_mode=mode,
                                       noise_generator=torch.Generator().manual_seed(9))
    assert out[1].expected_batch_size == BATCH  # int(16 · 1/4), the loader's expected batch
    for module, optimizer, criterion in ((parts.module, parts.optimizer, parts.criterion),
                                         (out[0], out[1], out[2] if mode == "ghost" else nn.CrossEntropyLoss())):
        optimizer.zero_grad()
        criterion(module(x), y).backward()
        optimizer.step()
    parts.module.cleanup()
    for a, b in zip(model.parameters(), twin.parameters()):
        torch.testing.assert_close(a, b, **TOLERANCE)
    assert all(not hasattr(p, "grad_sample") for p in model.parameters())  # the plain module again

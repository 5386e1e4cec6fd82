"""The prior-aware reconstruction attack: its limits, its exact Bayes success, and the ReRo bound above it."""

import copy
import json
import math

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from scipy import integrate
from scipy.stats import multivariate_normal, norm

from medprivbench.attacks.bounds import per_step_log_ratio, rero_bound, rero_bound_closed_form
from medprivbench.attacks.prior_aware import (
    PriorAwareResult,
    _log_likelihood_ratios,
    clipped_gradient_gram,
    clipped_gradients,
    prior_aware_attack,
)
from medprivbench.benchmark.config import ModelConfig
from medprivbench.benchmark.models import build_model
from medprivbench.datasets.synthetic import generate_images

N = 10  # candidates in the prior


@pytest.fixture(scope="module")
def cnn_game():
    """Two states of a small CNN and a pool of 30 synthetic images."""
    torch.set_num_threads(1)
    images, labels = generate_images(30, seed=3)
    x = torch.tensor(images, dtype=torch.float32)[:, None] / 255.0
    y = torch.tensor(labels)
    states = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        states.append(build_model(OmegaConf.structured(ModelConfig(width=4)), in_channels=1, n_classes=2, image_size=28).eval())
    return states, x, y


@pytest.fixture(scope="module")
def orthogonal_game():
    """A linear model on one-hot inputs: per-sample gradients have disjoint supports (orthogonal)
    and norm 10/√2 > C = 1, so every clipped gradient has norm C and G = I — the case where the
    attack meets the ReRo bound most closely."""
    pool = 30
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(pool, 2, bias=False))
    torch.nn.init.zeros_(model[1].weight)
    x = 10 * torch.eye(pool)[:, None, :]
    y = torch.arange(pool) % 2
    return [model], x, y


def bayes_success_orthogonal_full_batch(n, mu):
    """q = 1, G = C²·I: the target's statistic is μ + Z, the others' Z_j, so success = ∫ φ(z)·Φ(z + μ)^{n−1} dz."""
    return integrate.quad(lambda z: norm.pdf(z) * norm.cdf(z + mu) ** (n - 1), -np.inf, np.inf)[0]


def play(game, **kw):
    states, x, y = game
    settings = dict(max_grad_norm=1.0, n_candidates=N, n_trials=300, seed=0) | kw
    return prior_aware_attack(states, x, y, **settings)


# ---- gradients ----------------------------------------------------------------------------------
def test_clipped_gradients_match_one_sample_backward(cnn_game):
    states, x, y = cnn_game
    model, clip = states[0], 0.05
    g = clipped_gradients(model, x[:4], y[:4], max_grad_norm=clip)
    for i in range(4):
        model.zero_grad()
        torch.nn.functional.cross_entropy(model(x[i : i + 1]), y[i : i + 1]).backward()
        full = torch.cat([p.grad.reshape(-1) for p in model.parameters()]).double()
        expected = full * min(1.0, clip / (full.norm().item() + 1e-6))
        torch.testing.assert_close(g[i], expected, rtol=1e-4, atol=1e-7)
    gram = clipped_gradient_gram(model, x[:4], y[:4], max_grad_norm=clip)
    np.testing.assert_allclose(gram, (g @ g.T).numpy())
    assert np.all(np.sqrt(np.diag(gram)) <= clip + 1e-9)



def test_an_opacus_wrapper_gives_the_gradients_of_its_network(cnn_game):
    """A GradSampleModule is unwrapped through Opacus' public to_standard_module() on a copy: its
    backward hooks would otherwise break torch.func's vmap of grad, and the caller's wrapper keeps them."""
    from opacus import GradSampleModule

    states, x, y = cnn_game
    plain = clipped_gradients(states[0], x[:4], y[:4], max_grad_norm=0.05)
    wrapped = GradSampleModule(copy.deepcopy(states[0]))
    torch.testing.assert_close(clipped_gradients(wrapped, x[:4], y[:4], max_grad_norm=0.05), plain, rtol=0, atol=0)
    wrapped.train()
    torch.nn.functional.cross_entropy(wrapped(x[:4]), y[:4]).backward()  # still a working wrapper
    assert all(p.grad_sample is not None and len(p.grad_sample) == 4 for p in wrapped.parameters() if p.requires_grad)


def test_scores_are_the_exact_likelihood_ratio():
    """Σ_t log[((1 − q)·N(r_t; 0, σ²C²I) + q·N(r_t; ĝ_j, σ²C²I)) / N(r_t; 0, σ²C²I)], by densities."""
    rng = np.random.default_rng(0)
    sigma, q, clip = 0.7, 0.3, 2.0
    grads = rng.standard_normal((4, 3)) * np.array([[0.2], [0.5], [1.0], [2.0]])  # unequal norms
    residuals = rng.standard_normal((6, 3)) * sigma * clip + grads[2]
    observation = ((residuals @ grads.T)[None], None)  # projections (1 trial, 6 steps, 4 candidates)
    scores = _log_likelihood_ratios(observation, (grads @ grads.T)[None], sigma, q, clip)[0]
    cov = (sigma * clip) ** 2 * np.eye(3)
    absent = multivariate_normal(np.zeros(3), cov).logpdf(residuals)
    expected = [
        np.sum(np.logaddexp(np.log1p(-q) + absent, np.log(q) + multivariate_normal(g, cov).logpdf(residuals)) - absent)
        for g in grads
    ]
    np.testing.assert_allclose(scores, expected, rtol=1e-10)


# ---- limits -------------------------------------------------------------------------------------
@pytest.mark.parametrize("sigma", [0.0, 1e-6])
def test_without_noise_the_target_is_found(cnn_game, sigma):
    result = play(cnn_game, noise_multiplier=sigma, sample_rate=0.5, steps=20, n_trials=200)
    assert result.success_rate == 1.0
    assert result.bound == pytest.approx(1.0)


def test_with_huge_noise_it_is_chance(cnn_game):
    result = play(cnn_game, noise_multiplier=1e4, sample_rate=0.5, steps=20, n_trials=600)
    assert result.ci_low <= 1 / N <= result.ci_high
    assert result.bound == pytest.approx(1 / N, rel=1e-3)


def test_nothing_is_learned_when_the_target_is_never_sampled_without_noise(orthogonal_game):
    # q·T tiny: almost always no step carries the target; then every candidate is equally likely
    result = play(orthogonal_game, noise_multiplier=0.0, sample_rate=1e-4, steps=5, n_trials=400)
    assert result.ci_low <= 1 / N + 5e-4 * (1 - 1 / N) <= result.ci_high


# ---- exactness and the bound --------------------------------------------------------------------
@pytest.mark.parametrize("sigma,steps", [(1.0, 1), (2.0, 9), (3.0, 4)])
def test_full_batch_success_is_the_exact_bayes_success(orthogonal_game, sigma, steps):
    result = play(orthogonal_game, noise_multiplier=sigma, sample_rate=1.0, steps=steps, n_trials=600)
    exact = bayes_success_orthogonal_full_batch(N, math.sqrt(steps) / sigma)
    assert result.ci_low <= exact <= result.ci_high
    assert exact < result.bound  # the n-ary game is harder than the binary test behind the bound


@pytest.mark.parametrize(
    "sigma,q,steps",
    [(1.0, 1.0, 4), (1.0, 0.1, 100), (0.7, 0.02, 100), (2.0, 0.1, 300), (0.5, 0.01, 100)],
)
def test_success_never_exceeds_the_rero_bound(orthogonal_game, cnn_game, sigma, q, steps):
    for game in (orthogonal_game, cnn_game):
        result = play(game, noise_multiplier=sigma, sample_rate=q, steps=steps)
        assert result.bound == rero_bound(1 / N, sigma, q, steps)
        assert result.ci_low <= result.bound
        assert result.success_rate > 1.5 / N  # and it does learn: these settings leak


def test_reported_bound_is_the_closed_form_at_full_batch(cnn_game):
    result = play(cnn_game, noise_multiplier=2.0, sample_rate=1.0, steps=16, n_trials=50)
    assert result.bound == pytest.approx(rero_bound_closed_form(1 / N, 2.0, 16), rel=1e-12)
    assert result.bound == pytest.approx(norm.cdf(norm.ppf(1 / N) + 2.0), rel=1e-12)


def test_projection_simulation_matches_full_dimensional_noise(cnn_game):
    """The game drawn from the candidates' Gram matrix equals the game with d-dimensional noise."""
    states, x, y = cnn_game
    sigma, q, steps, clip, trials = 1.5, 0.3, 30, 1.0, 400
    g = clipped_gradients(states[0], x, y, max_grad_norm=clip).numpy()
    rng = np.random.default_rng(7)
    hits = 0
    for _ in range(trials):
        chosen = rng.choice(len(x), N, replace=False)
        target = rng.integers(N)
        sampled = rng.random(steps) < q
        residual = sampled[:, None] * g[chosen[target]] + sigma * clip * rng.standard_normal((steps, g.shape[1]))
        cand = g[chosen]
        u = (residual @ cand.T - (cand**2).sum(1) / 2) / (sigma * clip) ** 2
        hits += int(np.argmax(per_step_log_ratio(u, q).sum(0)) == target)
    brute = hits / trials
    result = play(([states[0]], x, y), noise_multiplier=sigma, sample_rate=q, steps=steps, n_trials=trials, seed=11)
    spread = math.sqrt(2 * 0.25 / trials)
    assert abs(result.success_rate - brute) <= 4 * spread


# ---- result and interface -----------------------------------------------------------------------
def test_result_record_and_progress(cnn_game):
    calls = []
    result = play(cnn_game, noise_multiplier=1.0, sample_rate=0.2, steps=10, n_trials=40, progress=lambda d, t: calls.append((d, t)))
    assert isinstance(result, PriorAwareResult)
    assert calls[-1] == (40, 40)
    record = json.loads(json.dumps(result.to_record()))
    assert record["trials"] == 40 and record["n_candidates"] == N and record["chance"] == pytest.approx(0.1)
    assert record["success_rate"] == record["successes"] / 40
    assert 0 <= record["ci_low"] <= record["success_rate"] <= record["ci_high"] <= 1
    assert "informed adversary" in record["threat_model"]


def test_same_seed_same_result(cnn_game):
    a = play(cnn_game, noise_multiplier=1.0, sample_rate=0.2, steps=10, n_trials=50, seed=5)
    b = play(cnn_game, noise_multiplier=1.0, sample_rate=0.2, steps=10, n_trials=50, seed=5)
    assert a == b


@pytest.mark.parametrize(
    "kw,name",
    [
        (dict(noise_multiplier=-1.0), "noise_multiplier"),
        (dict(sample_rate=0.0), "sample_rate"),
        (dict(steps=0), "steps"),
        (dict(max_grad_norm=0.0), "max_grad_norm"),
        (dict(n_candidates=1), "n_candidates"),
        (dict(n_candidates=31), "n_candidates"),
        (dict(n_trials=0), "n_trials"),
    ],
)
def test_invalid_arguments_name_the_value(cnn_game, kw, name):
    settings = dict(noise_multiplier=1.0, sample_rate=0.1, steps=10) | kw
    with pytest.raises(ValueError, match=name):
        play(cnn_game, **settings)

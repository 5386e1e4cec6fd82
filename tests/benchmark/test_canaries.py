"""Gradient canaries inside a DP-SGD run: invisible to the classifier, observed exactly, and an
audit that catches a run which uses less noise or more sampling than it claims."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from medprivbench.attacks.canary_audit import IdealisedRuns, analyse, choose_guesses
from medprivbench.benchmark.canaries import GradientCanaries
from medprivbench.benchmark.privacy import solve_noise_multiplier
from medprivbench.benchmark.streams import Streams
from medprivbench.benchmark.augmentation import Augmentation
from medprivbench.benchmark.recipe import DPRecipe, make_optimizer
from medprivbench.benchmark.training import _private_engine, train

HP = dict(optimizer="sgd", lr=0.1, momentum=0.0, weight_decay=0.0, lr_schedule="constant", ema_decay=None,
          augmult=0, augmentations=[])


def _model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.Tanh(), nn.Linear(8, 2))


def _data(n: int = 40, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 4, 4, generator=g), torch.randint(0, 2, (n,), generator=g)


def _recipe(sigma: float, q: float, steps: int, k: int | None = None) -> DPRecipe:
    k = k or round(1 / q)
    return DPRecipe(epsilon_target=1.0, delta=1e-5, sample_rate=q, steps=steps, steps_per_epoch=k,
                    noise_multiplier=sigma, max_grad_norm=1.0, accountant="rdp")


def _one_step(idx: torch.Tensor, canaries: GradientCanaries | None, mode: str) -> list[torch.Tensor]:
    x, y = _data()
    plain = _model()
    run = _private_engine(plain, make_optimizer(plain.parameters(), HP), x, y, Augmentation(0, [], None), _recipe(1.0, 0.25, 4),
                          mode, Streams(5), "cpu", canaries)
    run.step(idx)
    return [p.detach().clone() for p in plain.parameters()]


@pytest.mark.parametrize("mode", ["hooks", "ew"])
def test_the_classifier_gets_the_same_update_with_and_without_canaries(mode):
    real = torch.tensor([1, 4, 7, 9, 20, 33])
    canaries = GradientCanaries(np.arange(50) % 3 == 0, sample_rate=0.25, noise_multiplier=1.0, max_grad_norm=1.0)
    extra = 40 + torch.tensor([0, 2, 5, 11])  # rows of four included canaries after the 40 real examples
    without = _one_step(real, None, mode)
    with_canaries = _one_step(torch.cat([real, extra]), canaries, mode)
    for a, b in zip(without, with_canaries):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-7)  # same clipped sum, noise draw and normalisation
    # the canary block's update: C·e_j for the four sampled canaries, plus N(0, σ²C²), divided by int(N·q)
    observed = canaries.sum_observed
    sampled = canaries.ids[torch.tensor([0, 2, 5, 11])].numpy()
    assert canaries.steps == 1 and np.all(np.abs(observed[sampled] - 1.0) < 5) and np.abs(observed).max() < 8


@pytest.mark.parametrize("mode", ["hooks", "ew"])
def test_a_whole_run_trains_the_same_classifier_with_and_without_an_audit(mode):
    # the canaries draw their Poisson masks and their noise from streams of their own, so the
    # classifier's batches and noise, step after step, are those of the run without them. Equal up to
    # float rounding, not bit for bit: the canaries' rows lengthen the per-sample reductions (norms,
    # clipped sum), whose summation order depends on the CPU's vector unit (1.5e-8 to 3e-8 apart after
    # 25 steps on some machines). A real difference (another batch or noise draw for the classifier)
    # moves the weights by about lr·σ·C/B ≈ 1e-2 per step, far outside the tolerance.
    x, y = _data(60)
    recipe = _recipe(1.2, 0.2, 25)

    def run(canaries):
        return train(_model(3), x, y, recipe=recipe, hp=HP, streams=Streams(4), grad_sample_mode=mode,
                     instruments=[] if canaries is None else [canaries])

    canaries = GradientCanaries(np.arange(80) % 2 == 0, sample_rate=0.2, noise_multiplier=1.2, max_grad_norm=1.0)
    without, audited = run(None), run(canaries)
    for a, b in zip(without.model.state_dict().values(), audited.model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    assert canaries.steps == 25 and sum(canaries.rows_per_step) > 0


def test_observations_are_exact_without_noise_and_scores_separate_the_canaries():
    x, y = _data(200)
    included = np.random.default_rng(1).random(300) < 0.5
    canaries = GradientCanaries(included, sample_rate=0.1, noise_multiplier=1e-4, max_grad_norm=1.0)
    train(_model(), x, y, recipe=_recipe(1e-4, 0.1, 30), hp=HP, streams=Streams(2), grad_sample_mode="hooks", instruments=[canaries])
    counts = canaries.sum_observed
    np.testing.assert_allclose(counts, np.round(counts), atol=1e-2)  # o_t = b_t: whole numbers of samplings
    assert np.all(np.round(counts[~included]) == 0) and np.round(counts[included]).sum() == sum(canaries.rows_per_step)
    assert abs(np.mean(canaries.rows_per_step) - 0.1 * included.sum()) < 0.3 * 0.1 * included.sum()
    assert canaries.scores("all_iterates")[included].min() >= canaries.scores("all_iterates")[~included].max() or \
        np.round(counts[included]).min() == 0


def test_non_private_runs_observe_which_canaries_were_sampled():
    x, y = _data(100)
    included = np.random.default_rng(2).random(200) < 0.5
    canaries = GradientCanaries(included, sample_rate=0.25, noise_multiplier=0.0, max_grad_norm=math.inf)
    nonprivate = DPRecipe(epsilon_target=math.inf, delta=1e-5, sample_rate=0.25, steps=12, steps_per_epoch=4,
                          noise_multiplier=0.0, max_grad_norm=math.inf, accountant="none")
    train(_model(), x, y, recipe=nonprivate, hp=HP, streams=Streams(3), instruments=[canaries])
    assert canaries.steps == 12 and np.all(canaries.sum_observed[~included] == 0)
    assert canaries.sum_observed[included].mean() == pytest.approx(3.0, abs=0.6)  # 12 steps × q = 1/4


def test_a_run_takes_at_most_one_instrument_that_adds_rows():
    # two blocks of rows appended after the real examples would each read the other's rows as their own
    x, y = _data()
    recipe = _recipe(1.0, 0.25, 4)
    two = [GradientCanaries(np.arange(10) % 2 == 0, sample_rate=0.25, noise_multiplier=1.0, max_grad_norm=1.0)
           for _ in range(2)]
    with pytest.raises(ValueError, match="at most one instrument.*got 2 .GradientCanaries, GradientCanaries"):
        train(_model(), x, y, recipe=recipe, hp=HP, streams=Streams(0), instruments=two)
    assert all(c.steps == 0 for c in two)  # refused before anything trained
    train(_model(), x, y, recipe=recipe, hp=HP, streams=Streams(0), instruments=two[:1])
    assert two[0].steps == 4


ANALYSES = ("steinke", "fdp_dpsgd")


def _guesses(claimed_sigma: float, claimed_q: float, steps: int, m: int) -> tuple[int, int]:
    """Guess counts fixed on the idealised mechanism of the claim, before any training."""
    ideal = IdealisedRuns(claimed_sigma, claimed_q, steps, m, "all_iterates", 1, seed=123)
    return choose_guesses(ideal, delta=1e-5, alpha=0.05, analyses=ANALYSES)[:2]


def _audit(claimed_sigma: float, claimed_q: float, steps: int, recipe: DPRecipe, m: int, seed: int,
           guesses: tuple[int, int] | None = None) -> float:
    """Train with ``recipe`` while the canaries and the analysis use the claimed σ and q; the best bound."""
    x, y = _data(40, seed)
    included = np.random.default_rng(seed).random(m) < 0.5
    canaries = GradientCanaries(included, sample_rate=claimed_q, noise_multiplier=claimed_sigma, max_grad_norm=1.0)
    train(_model(seed), x, y, recipe=recipe, hp=HP, streams=Streams(seed), grad_sample_mode="hooks", instruments=[canaries])
    k_plus, k_minus = guesses or _guesses(claimed_sigma, claimed_q, steps, m)
    found = analyse(canaries.scores("all_iterates"), included, delta=1e-5, alpha=0.05, k_plus=k_plus, k_minus=k_minus,
                    sample_rate=claimed_q, steps=steps, analyses=ANALYSES)
    return max(r["epsilon_lb"] for r in found.values())


# A claimed ε = 2 at q = 1/8, T = 40 (solved once: the accountant's σ for that claim).
Q, T = 1 / 8, 40
SIGMA_2 = solve_noise_multiplier(epsilon=2.0, delta=1e-5, sample_rate=Q, steps=T).sigma


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["noise/4", "rate*4"])
def test_the_audit_catches_a_run_that_breaks_its_claim(fault):
    if fault == "noise/4":
        recipe = _recipe(SIGMA_2 / 4, Q, T)
    else:  # four times the sampling rate, the same steps
        recipe = _recipe(SIGMA_2, 4 * Q, T, k=8)
    assert _audit(SIGMA_2, Q, T, recipe, m=2000, seed=0) > 2.0


@pytest.mark.slow
def test_the_true_recipe_never_gives_a_bound_above_its_epsilon():
    for epsilon in (1.0, 2.0, 8.0):
        sigma = solve_noise_multiplier(epsilon=epsilon, delta=1e-5, sample_rate=Q, steps=T).sigma
        guesses = _guesses(sigma, Q, T, 1000)
        bounds = [_audit(sigma, Q, T, _recipe(sigma, Q, T), m=1000, seed=seed, guesses=guesses) for seed in range(20)]
        assert max(bounds) <= epsilon, (epsilon, bounds)


def test_the_ceiling_is_recorded_with_its_spread_and_limits():
    """choose_guesses keeps the mean ceiling as it was and adds its spread over the idealised runs;
    the white-box columns carry both, and flag bounds that are limits of the analysis."""
    from medprivbench.benchmark.families.audit import WhiteboxResult

    ideal = IdealisedRuns(SIGMA_2, Q, T, 400, "all_iterates", 3, seed=11)
    choice = choose_guesses(ideal, delta=1e-5, alpha=0.05, analyses=ANALYSES)
    k_plus, k_minus, ceiling = choice[:3]  # the first three fields, as before
    runs = ideal.bounds(k_plus, k_minus, delta=1e-5, alpha=0.05, analyses=ANALYSES)
    assert choice.n_simulations == 3
    for name in ANALYSES:
        assert ceiling[name] == float(np.mean(runs[name]))
        assert choice.ceiling_sd[name] == pytest.approx(float(np.std(runs[name], ddof=1)))
        assert choice.ceiling_sd[name] > 0.0
        assert 0.0 <= choice.ceiling_at_limit[name] <= 1.0

    result = {"epsilon_lb": 1.0, "observations": {"all_iterates": {
        "k_plus": k_plus, "k_minus": k_minus, "ceiling": ceiling, "ceiling_sd": choice.ceiling_sd,
        "ceiling_at_limit": choice.ceiling_at_limit, "ceiling_runs": choice.n_simulations,
        "bounds": {"steinke": {"epsilon_lb": 1.0, "r": 10, "v": 10, "m": 400},
                   "fdp_dpsgd": {"epsilon_lb": 0.5, "r": 10, "v": 8, "m": 400, "at_search_limit": False}}}}}
    row = WhiteboxResult.from_record(result).columns("whitebox")
    for name in ANALYSES:
        prefix = f"whitebox_all_iterates_{name}"
        assert row[f"{prefix}_ceiling"] == ceiling[name]
        assert row[f"{prefix}_ceiling_sd"] == choice.ceiling_sd[name]
        assert row[f"{prefix}_ceiling_runs"] == 3
    assert row["whitebox_all_iterates_steinke_at_limit"] == 1.0  # every guess right
    assert row["whitebox_all_iterates_fdp_dpsgd_at_limit"] == 0.0
    assert row["whitebox_best_epsilon_lb"] == 1.0

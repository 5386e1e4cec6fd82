"""Tests of the membership inference scores against closed forms and brute force."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from scipy.special import softmax
from scipy.stats import norm
from sklearn.metrics import roc_auc_score

from medprivbench.attacks.lira import lira_attack
from medprivbench.attacks.membership import SCORERS, loss_attack, score_all_targets
from medprivbench.attacks.membership_signals import logit_confidence
from medprivbench.attacks.rmia import rmia_attack


def binary_logits(phi: np.ndarray) -> np.ndarray:
    """Two-class logits [φ, 0] whose scaled confidence for label 0 is exactly φ."""
    return np.stack([phi, np.zeros_like(phi)], axis=-1)


# ----------------------------------------------------------------------------------------------
# logit_confidence and the loss attack
# ----------------------------------------------------------------------------------------------


def test_logit_confidence_matches_log_odds_of_softmax():
    rng = np.random.default_rng(0)
    logits = rng.normal(scale=3.0, size=(4, 50, 2, 7))
    labels = rng.integers(0, 7, size=50)
    p = np.take_along_axis(softmax(logits, axis=-1), labels[None, :, None, None] * np.ones((4, 1, 2, 1), int), axis=-1)[..., 0]
    expected = np.log(p) - np.log1p(-p)
    np.testing.assert_allclose(logit_confidence(logits, labels[:, None]), expected, rtol=1e-9, atol=1e-9)


def test_logit_confidence_is_stable_where_probability_rounds_to_one():
    logits = np.array([[1000.0, 0.0, 0.0], [1000.0, 0.0, 0.0]])
    phi = logit_confidence(logits, np.array([0, 1]))
    np.testing.assert_allclose(phi, [1000.0 - math.log(2.0), -1000.0], rtol=1e-12)


def test_logit_confidence_binary_is_logit_difference():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(30, 2))
    labels = rng.integers(0, 2, size=30)
    expected = logits[np.arange(30), labels] - logits[np.arange(30), 1 - labels]
    np.testing.assert_allclose(logit_confidence(logits, labels), expected, rtol=1e-12)


def test_logit_confidence_rejects_bad_labels():
    with pytest.raises(ValueError, match="broadcastable"):
        logit_confidence(np.zeros((3, 5, 2, 4)), np.zeros(5, dtype=int))
    with pytest.raises(ValueError, match="class indices"):
        logit_confidence(np.zeros((5, 4)), np.full(5, -1))  # would silently pick the last class


def test_loss_attack_is_negative_cross_entropy_averaged_over_queries():
    rng = np.random.default_rng(2)
    logits = rng.normal(scale=2.0, size=(40, 3, 5))
    labels = rng.integers(0, 5, size=40)
    probabilities = softmax(logits, axis=-1)[np.arange(40), :, labels]  # (40, 3)
    np.testing.assert_allclose(loss_attack(logits, labels), np.log(probabilities).mean(axis=1), rtol=1e-10)


def test_loss_attack_auc_is_one_half_on_exchangeable_data_and_high_with_signal():
    rng = np.random.default_rng(3)
    n = 4000
    is_member = rng.random(n) < 0.5
    labels = rng.integers(0, 4, size=n)
    logits = rng.normal(size=(n, 4))
    auc_null = roc_auc_score(is_member, loss_attack(logits, labels))
    assert abs(auc_null - 0.5) < 0.04  # standard error ≈ 0.009
    logits[np.arange(n), labels] += 1.0 * is_member  # members fitted better
    assert roc_auc_score(is_member, loss_attack(logits, labels)) > 0.6


# ----------------------------------------------------------------------------------------------
# LiRA
# ----------------------------------------------------------------------------------------------


def designed_shadows(rng: np.random.Generator, n_samples: int, n_queries: int):
    """Shadows whose per-sample IN/OUT means and unbiased std are known exactly.

    Two IN and two OUT shadows per sample (in a random order): values μ ± σ/√2 have mean μ and
    unbiased standard deviation σ.
    """
    mu_in = rng.normal(2.0, 1.0, size=(n_samples, n_queries))
    mu_out = rng.normal(0.0, 1.0, size=(n_samples, n_queries))
    sd_in = rng.uniform(0.5, 2.0, size=(n_samples, n_queries))
    sd_out = rng.uniform(0.5, 2.0, size=(n_samples, n_queries))
    member = np.zeros((4, n_samples), dtype=bool)
    phi = np.empty((4, n_samples, n_queries))
    for i in range(n_samples):
        order = rng.permutation(4)  # shadows order[0], order[1] are IN
        member[order[:2], i] = True
        phi[order[0], i] = mu_in[i] + sd_in[i] / math.sqrt(2)
        phi[order[1], i] = mu_in[i] - sd_in[i] / math.sqrt(2)
        phi[order[2], i] = mu_out[i] + sd_out[i] / math.sqrt(2)
        phi[order[3], i] = mu_out[i] - sd_out[i] / math.sqrt(2)
    phi_target = rng.normal(1.0, 2.0, size=(n_samples, n_queries))
    return phi_target, phi, member, (mu_in, sd_in, mu_out, sd_out)


def gaussian_log_density(x, mean, sd):  # noqa: ANN001, ANN201
    return -0.5 * ((x - mean) / sd) ** 2 - np.log(sd) - 0.5 * math.log(2 * math.pi)


@pytest.mark.parametrize("n_queries", [1, 2])
def test_lira_online_equals_the_analytic_log_likelihood_ratio(n_queries):
    rng = np.random.default_rng(4)
    phi_target, phi, member, (mu_in, sd_in, mu_out, sd_out) = designed_shadows(rng, 60, n_queries)
    labels = np.zeros(60, dtype=int)
    scores = lira_attack(binary_logits(phi_target), labels, binary_logits(phi), member)
    expected = (gaussian_log_density(phi_target, mu_in, sd_in) - gaussian_log_density(phi_target, mu_out, sd_out)).sum(axis=1)
    np.testing.assert_allclose(scores, expected, rtol=1e-9, atol=1e-9)
    # The ranking of the scores is that of the analytic likelihood ratio.
    np.testing.assert_array_equal(np.argsort(scores), np.argsort(expected))


@pytest.mark.parametrize("n_queries", [1, 2])
def test_lira_offline_is_minus_log_one_sided_p_value(n_queries):
    rng = np.random.default_rng(5)
    phi_target, phi, member, (_, _, mu_out, sd_out) = designed_shadows(rng, 60, n_queries)
    scores = lira_attack(binary_logits(phi_target), np.zeros(60, dtype=int), binary_logits(phi), member, online=False)
    combined = ((phi_target - mu_out) / sd_out).sum(axis=1) / math.sqrt(n_queries)
    survival = np.array([0.5 * math.erfc(t / math.sqrt(2)) for t in combined])  # Pr[Z > T]
    np.testing.assert_allclose(scores, -np.log(survival), rtol=1e-9)


def test_lira_fixed_variance_uses_the_pooled_within_sample_variance():
    rng = np.random.default_rng(6)
    phi_target, phi, member, (mu_in, sd_in, mu_out, sd_out) = designed_shadows(rng, 80, 1)
    scores = lira_attack(binary_logits(phi_target), np.zeros(80, dtype=int), binary_logits(phi), member, fixed_variance=True)
    # One degree of freedom per sample and group: the pooled variance is the mean of the variances.
    global_sd_in = np.sqrt(np.mean(sd_in**2))
    global_sd_out = np.sqrt(np.mean(sd_out**2))
    expected = (gaussian_log_density(phi_target, mu_in, global_sd_in) - gaussian_log_density(phi_target, mu_out, global_sd_out))[:, 0]
    np.testing.assert_allclose(scores, expected, rtol=1e-9)


def synthetic_protocol(seed: int, n_models: int, n_samples: int, shift: float, noise: float, spread: float):
    """φ = difficulty_i + shift·member + noise·N(0, 1), difficulty_i ~ N(0, spread²)."""
    rng = np.random.default_rng(seed)
    member = rng.random((n_models, n_samples)) < 0.5
    difficulty = rng.normal(0.0, spread, size=n_samples)
    phi = difficulty + shift * member + noise * rng.normal(size=(n_models, n_samples))
    return binary_logits(phi), np.zeros(n_samples, dtype=int), member


def test_lira_reaches_the_analytic_auc_and_the_loss_attack_does_not():
    shift, noise, spread = 1.0, 1.0, 2.0
    logits, labels, member = synthetic_protocol(7, 40, 1000, shift, noise, spread)
    # Per sample, member φ ~ N(μ_i + Δ, σ²) vs N(μ_i, σ²): the likelihood ratio test has
    # AUC Φ(Δ/(σ√2)); the loss attack sees the spread of the μ_i too: Φ(Δ/√(2(σ² + τ²))).
    lira_auc = roc_auc_score(member.ravel(), score_all_targets("lira_online", logits, labels, member, fixed_variance=True).ravel())
    loss_auc = roc_auc_score(member.ravel(), score_all_targets("loss", logits, labels, member).ravel())
    assert lira_auc == pytest.approx(norm.cdf(shift / (noise * math.sqrt(2))), abs=0.015)
    assert loss_auc == pytest.approx(norm.cdf(shift / math.sqrt(2 * (noise**2 + spread**2))), abs=0.015)


def test_lira_handles_samples_without_in_or_out_shadows():
    rng = np.random.default_rng(8)
    phi = rng.normal(size=(5, 30))
    member = rng.random((5, 30)) < 0.5
    member[:, 0] = True  # no OUT shadow for sample 0
    member[:, 1] = False  # no IN shadow for sample 1
    member[:, 2] = [True, False, False, False, False]  # one IN shadow: no per-sample variance
    target = binary_logits(rng.normal(size=30))
    labels = np.zeros(30, dtype=int)
    for online in (True, False):
        for fixed_variance in (True, False):
            scores = lira_attack(target, labels, binary_logits(phi), member, online=online, fixed_variance=fixed_variance)
            assert scores.shape == (30,) and np.all(np.isfinite(scores))


def test_lira_with_a_single_shadow_and_identical_outputs_stays_finite():
    target = binary_logits(np.array([0.0, 1.0, 2.0]))
    shadows = binary_logits(np.ones((1, 3)))
    scores = lira_attack(target, np.zeros(3, dtype=int), shadows, np.array([[True, False, True]]))
    assert np.all(np.isfinite(scores))


def test_lira_rejects_impossible_shadow_sets():
    target = binary_logits(np.zeros(4))
    shadows = binary_logits(np.zeros((3, 4)))
    labels = np.zeros(4, dtype=int)
    with pytest.raises(ValueError, match="online=False"):
        lira_attack(target, labels, shadows, np.zeros((3, 4), dtype=bool))
    with pytest.raises(ValueError, match="did not train"):
        lira_attack(target, labels, shadows, np.ones((3, 4), dtype=bool), online=False)
    with pytest.raises(ValueError, match="shadow_member"):
        lira_attack(target, labels, shadows, np.zeros((2, 4), dtype=bool))


# ----------------------------------------------------------------------------------------------
# RMIA
# ----------------------------------------------------------------------------------------------


def rmia_brute_force(target, labels, references, reference_member, population, *, online, a, gamma, temperature):  # noqa: ANN001, ANN201
    """The paper's definitions in probability space with an explicit loop over (x, z) pairs."""
    n = target.shape[0]

    def true_probability(logits):  # noqa: ANN001, ANN202
        p = softmax(logits / temperature, axis=-1)
        return np.take_along_axis(p, labels[:, None, None] * np.ones(p.shape[:-1] + (1,), int), axis=-1)[..., 0].mean(axis=-1)

    p_target = true_probability(target)
    p_references = np.stack([true_probability(r) for r in references])
    if online:
        marginal = p_references.mean(axis=0)
    else:
        out = ~reference_member
        marginal = 0.5 * ((1 + a) * (p_references * out).sum(axis=0) / out.sum(axis=0) + (1 - a))
    ratio = p_target / marginal
    scores = np.empty(n)
    for x in range(n):
        others = [z for z in np.flatnonzero(population) if z != x]
        scores[x] = np.mean([ratio[x] / ratio[z] >= gamma for z in others])
    return scores


@pytest.mark.parametrize(("online", "gamma"), [(False, 2.0), (False, 0.5), (True, 1.0), (True, 2.0)])
def test_rmia_matches_the_pairwise_brute_force(online, gamma):
    rng = np.random.default_rng(9)
    n, n_references = 120, 4
    target = rng.normal(size=(n, 2, 3))
    references = rng.normal(size=(n_references, n, 2, 3))
    labels = rng.integers(0, 3, size=n)
    reference_member = rng.random((n_references, n)) < 0.5
    reference_member[0] = False  # every sample has an OUT reference
    population = rng.random(n) < 0.5
    options = {"online": online, "gamma": gamma, "temperature": 2.0}
    if not online:
        options["offline_a"] = 0.4
    scores = rmia_attack(target, labels, references, reference_member, population, **options)
    expected = rmia_brute_force(target, labels, references, reference_member, population,
                                online=online, a=0.4, gamma=gamma, temperature=2.0)
    # score = (count + tie-break in (0, 1)) / (compared + 1): its integer part is the paper's count
    compared = population.sum() - population
    np.testing.assert_allclose(np.floor(scores * (compared + 1) + 1e-9) / compared, expected, atol=1e-12)
    assert np.all((scores > 0) & (scores < 1))


def test_rmia_score_is_monotone_in_the_target_probability():
    rng = np.random.default_rng(10)
    n = 200
    target = rng.normal(size=(n, 5))
    references = rng.normal(size=(2, n, 5))
    labels = rng.integers(0, 5, size=n)
    reference_member = rng.random((2, n)) < 0.5
    population = np.arange(n) >= 100
    for sample in (3, 42, 150, 199):  # two outside and two inside the population
        logits = target.copy()
        initial = previous = rmia_attack(logits, labels, references, reference_member, population, gamma=2.0)[sample]
        for _ in range(8):
            logits[sample, labels[sample]] += 0.5  # raises Pr(x|θ) of this sample only
            current = rmia_attack(logits, labels, references, reference_member, population, gamma=2.0)[sample]
            assert current >= previous
            previous = current
        assert previous > initial


def protocol_with_population(seed, n_models, n_samples, n_population, shift, noise, spread):  # noqa: ANN001, ANN201
    """The synthetic protocol plus population images that no model trained on."""
    logits, labels, member = synthetic_protocol(seed, n_models, n_samples + n_population, shift, noise, spread)
    logits[:, n_samples:, 0] -= shift * member[:, n_samples:]  # population images: members of no model
    member[:, n_samples:] = False
    return logits[:, :n_samples], labels[:n_samples], member[:, :n_samples], logits[:, n_samples:], labels[n_samples:]


def test_rmia_scores_members_higher_with_signal_and_not_without():
    logits, labels, member, pop, pop_labels = protocol_with_population(11, 12, 1500, 500, 1.0, 1.0, 2.0)
    scores = score_all_targets("rmia", logits, labels, member, population_logits=pop, population_labels=pop_labels,
                               n_references=2)
    assert np.all((scores > 0) & (scores < 1))
    assert roc_auc_score(member.ravel(), scores.ravel()) > 0.6
    null = protocol_with_population(12, 12, 1500, 500, 0.0, 1.0, 2.0)
    null_scores = score_all_targets("rmia", *null[:3], population_logits=null[3], population_labels=null[4], n_references=2)
    assert abs(roc_auc_score(null[2].ravel(), null_scores.ravel()) - 0.5) < 0.02


def test_rmia_scores_reach_low_fpr_where_the_population_is_dominated():
    """Members above the whole population used to tie at score 1, so TPR below FPR 1/|Z| was 0."""
    from medprivbench.attacks.mia_metrics import roc_metrics

    logits, labels, member, pop, pop_labels = protocol_with_population(19, 6, 1000, 100, 3.0, 0.5, 1.0)
    scores = score_all_targets("rmia", logits, labels, member, population_logits=pop, population_labels=pop_labels)
    counts = np.floor(scores * (pop.shape[1] + 1))
    assert (counts == pop.shape[1]).sum() > 50  # many candidates dominate all 100 population images …
    assert np.unique(scores[counts == pop.shape[1]]).size == (counts == pop.shape[1]).sum()  # … without ties
    metrics = roc_metrics(scores.ravel(), member.ravel(), fpr_levels=(0.001,), n_bootstrap=0)
    assert metrics["tpr_at_fpr"][0] > 0.05


def test_rmia_offline_without_out_reference_falls_back_finitely():
    rng = np.random.default_rng(13)
    reference_member = np.array([[True, False, True, False]])
    scores = rmia_attack(rng.normal(size=(4, 3)), np.array([0, 1, 2, 0]), rng.normal(size=(1, 4, 3)),
                         reference_member, np.array([True, True, False, False]))
    assert np.all(np.isfinite(scores))


def test_rmia_is_fast_for_5000_samples_and_2500_population():
    rng = np.random.default_rng(14)
    n = 5000
    target = rng.normal(size=(n, 2, 10))
    references = rng.normal(size=(4, n, 2, 10))
    labels = rng.integers(0, 10, size=n)
    reference_member = rng.random((4, n)) < 0.5
    population = np.arange(n) % 2 == 0
    start = time.perf_counter()
    rmia_attack(target, labels, references, reference_member, population)
    assert time.perf_counter() - start < 0.5


def test_rmia_rejects_options_that_would_do_nothing_or_are_invalid():
    rng = np.random.default_rng(15)
    args = (rng.normal(size=(6, 3)), np.zeros(6, dtype=int), rng.normal(size=(2, 6, 3)),
            np.zeros((2, 6), dtype=bool), np.ones(6, dtype=bool))
    with pytest.raises(ValueError, match="offline_a"):
        rmia_attack(*args, online=True, offline_a=0.5)
    with pytest.raises(ValueError, match="gamma"):
        rmia_attack(*args, gamma=0.0)
    with pytest.raises(ValueError, match="offline_a"):
        rmia_attack(*args, offline_a=1.5)
    with pytest.raises(ValueError, match="population"):
        rmia_attack(*args[:4], np.array([3]))


# ----------------------------------------------------------------------------------------------
# Registry and the protocol loop
# ----------------------------------------------------------------------------------------------


def test_registry_holds_the_attacks_of_the_design():
    assert set(SCORERS) == {"loss", "lira_online", "lira_offline", "rmia"}
    assert not SCORERS["loss"].uses_references and SCORERS["rmia"].uses_references


def test_score_all_targets_uses_each_model_as_target_against_the_others():
    logits, labels, member = synthetic_protocol(16, 6, 50, 1.0, 1.0, 1.0)
    scores = score_all_targets("lira_offline", logits, labels, member)
    assert scores.shape == (6, 50)
    others = [0, 1, 2, 4, 5]
    np.testing.assert_allclose(scores[3], lira_attack(logits[3], labels, logits[others], member[others], online=False))
    pop = logits[:, :10]
    rmia_scores = score_all_targets("rmia", logits, labels, member, population_logits=pop, population_labels=labels[:10],
                                    online=True, gamma=2.0)
    with_pop = np.concatenate([logits, pop], axis=1)
    with_member = np.concatenate([member, np.zeros((6, 10), bool)], axis=1)
    is_population = np.arange(60) >= 50
    expected = rmia_attack(with_pop[3], np.concatenate([labels, labels[:10]]), with_pop[others], with_member[others],
                           is_population, online=True, gamma=2.0)
    np.testing.assert_allclose(rmia_scores[3], expected[:50])
    # a model left out is nobody's target or reference
    held_out = score_all_targets("lira_offline", logits, labels, member, exclude=0)
    assert np.isnan(held_out[0]).all()
    np.testing.assert_allclose(held_out[3], lira_attack(logits[3], labels, logits[[1, 2, 4, 5]], member[[1, 2, 4, 5]], online=False))


def test_score_all_targets_draws_n_references_per_target():
    logits, labels, member = synthetic_protocol(17, 8, 60, 1.0, 1.0, 1.0)
    pop = {"population_logits": logits[:, :10], "population_labels": labels[:10]}
    few = score_all_targets("rmia", logits, labels, member, n_references=1, seed=3, **pop)
    again = score_all_targets("rmia", logits, labels, member, n_references=1, seed=3, **pop)
    every = score_all_targets("rmia", logits, labels, member, **pop)
    np.testing.assert_array_equal(few, again)
    assert not np.allclose(few, every)


def test_score_all_targets_rejects_bad_requests():
    logits, labels, member = synthetic_protocol(18, 4, 20, 1.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="attack_name"):
        score_all_targets("lira", logits, labels, member)
    with pytest.raises(ValueError, match="uses no reference"):
        score_all_targets("loss", logits, labels, member, n_references=2)
    pop = {"population_logits": logits[:, :5], "population_labels": labels[:5]}
    with pytest.raises(ValueError, match="n_references"):
        score_all_targets("rmia", logits, labels, member, n_references=4, **pop)
    with pytest.raises(ValueError, match="member"):
        score_all_targets("rmia", logits, labels, member[:3], **pop)
    with pytest.raises(ValueError, match="population"):  # never the target's own non-members
        score_all_targets("rmia", logits, labels, member)
    with pytest.raises(TypeError):
        score_all_targets("lira_online", logits, labels, member, gamma=2.0)


def test_score_target_scores_a_model_outside_the_protocol_like_its_turn_inside():
    # a target scored against given references equals its turn as target of the protocol where the
    # others are exactly those references; its own membership is no input (changing it changes nothing)
    from medprivbench.attacks.membership import score_target

    logits, labels, member = synthetic_protocol(19, 5, 40, 1.0, 1.0, 1.0)
    pop = logits[:, :8]
    for attack, options in (("lira_offline", {"fixed_variance": True}), ("rmia", {"online": False, "offline_a": 0.3})):
        inside = score_all_targets(attack, logits, labels, member, population_logits=pop, population_labels=labels[:8],
                                   **options)[0]
        outside = score_target(attack, logits[0], labels, logits[1:], member[1:], target_population_logits=pop[0],
                               reference_population_logits=pop[1:], population_labels=labels[:8], **options)
        np.testing.assert_allclose(outside, inside, rtol=1e-12)
    with pytest.raises(ValueError, match="population"):
        score_target("rmia", logits[0], labels, logits[1:], member[1:])
    with pytest.raises(ValueError, match="per-model shape"):
        score_target("lira_offline", logits[0, :30], labels[:30], logits[1:], member[1:])

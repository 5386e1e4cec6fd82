"""The privacy tail (attacks/privacy_tail.py) against closed forms, scipy and planted leaks."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import beta

from medprivbench.attacks.membership_signals import logit_confidence
from medprivbench.attacks.mia_metrics import per_sample_auc
from medprivbench.attacks.privacy_tail import (
    PrivacyTailConfig, fixed_variance_for, per_record_tpr, privacy_tail, record_risk, record_scores, share_above,
)

Z_999 = 3.090232306167813  # Φ⁻¹(0.999)


def phi(x: float) -> float:
    """Standard normal CDF, written out (independent of scipy)."""
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def test_per_record_tpr_is_the_in_gaussians_mass_above_the_out_quantile():
    # one record, 4 models: in-scores 2 and 4 (μ 3, unbiased variance 2), out-scores 0 and 1 (μ 0.5, variance 0.5)
    scores = np.array([[2.0], [4.0], [0.0], [1.0]])
    member = np.array([[True], [True], [False], [False]])
    got = per_record_tpr(scores, member, fpr=0.001, fixed_variance=False)
    expected = 1.0 - phi((0.5 + math.sqrt(0.5) * Z_999 - 3.0) / math.sqrt(2.0))
    assert got[0] == pytest.approx(expected, rel=1e-9)
    assert expected == pytest.approx(0.58810, abs=1e-5)  # by hand: Φ((2.5 − 0.707107·3.090232)/1.414214) = Φ(0.222664)


def test_fixed_variance_pools_the_within_record_residuals_of_each_group():
    # two records; in-scores (2, 4) and (10, 11), out-scores (0, 1) and (5, 8)
    scores = np.array([[2.0, 10.0], [4.0, 11.0], [0.0, 5.0], [1.0, 8.0]])
    member = np.array([[True, True], [True, True], [False, False], [False, False]])
    var_in = (2.0 + 0.5) / 2  # Σ residuals² / Σ (n_in − 1): (1 + 1 + 0.25 + 0.25) / 2
    var_out = (0.5 + 4.5) / 2
    got = per_record_tpr(scores, member, fpr=0.001, fixed_variance=True)
    for j, (mu_in, mu_out) in enumerate([(3.0, 0.5), (10.5, 6.5)]):
        assert got[j] == pytest.approx(1.0 - phi((mu_out + math.sqrt(var_out) * Z_999 - mu_in) / math.sqrt(var_in)), rel=1e-9)
    assert fixed_variance_for("auto", 63) and not fixed_variance_for("auto", 64)
    assert fixed_variance_for("fixed", 100) and not fixed_variance_for("per_record", 4)


def test_a_record_never_out_has_no_risk_and_is_left_out_of_the_shares():
    scores = np.arange(8.0).reshape(4, 2)
    member = np.array([[True, False], [True, False], [True, True], [True, True]])  # record 0 is never out
    risk = record_risk(scores, member, fpr=0.01, fixed_variance=True)
    assert math.isnan(risk.auc[0]) and math.isnan(risk.tpr[0]) and risk.auc[1] == 1.0 and np.isfinite(risk.tpr[1])
    assert share_above(risk.auc, 0.95, 0.95)[1:3] == (1, 1)


def test_per_record_auc_is_per_sample_auc():
    rng = np.random.default_rng(3)
    m, n = 6, 40
    member = rng.random((m, n)) < 0.5
    scores = np.round(rng.normal(size=(m, n)) + member, 1)  # rounded: ties happen
    table = pd.DataFrame({"target_model": np.repeat(np.arange(m), n), "sample": np.tile(np.arange(n), m), "label": 0,
                          "member": member.ravel(), "score_x": scores.ravel()})
    expected = per_sample_auc(table, "score_x")["auc"].to_numpy()
    got = record_risk(scores, member, fpr=0.001, fixed_variance=True).auc
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    np.testing.assert_allclose(got[~np.isnan(got)], expected[~np.isnan(expected)], rtol=1e-12)


@pytest.mark.parametrize("k, n, confidence", [(0, 50, 0.95), (3, 50, 0.975), (50, 50, 0.9), (17, 400, 0.95)])
def test_shares_and_their_clopper_pearson_interval(k, n, confidence):
    values = np.concatenate([np.ones(k), np.zeros(n - k), [np.nan]])  # NaN: a record without a risk
    share, count, total, (lo, hi) = share_above(values, 0.5, confidence)
    a = 1 - confidence
    assert (share, count, total) == (k / n, k, n)
    assert lo == pytest.approx(beta.ppf(a / 2, k, n - k + 1) if k > 0 else 0.0, abs=1e-12)
    assert hi == pytest.approx(beta.ppf(1 - a / 2, k + 1, n - k) if k < n else 1.0, abs=1e-12)


def _pool(m: int, n: int, seed: int, leaky: int = 0, shift: float = 6.0):
    rng = np.random.default_rng(seed)
    member = rng.random((m, n)) < 0.5
    scores = rng.normal(size=(m, n)) + rng.normal(size=n)  # a per-record offset, as records differ in difficulty
    scores[:, :leaky] += shift * member[:, :leaky]
    return scores, member


def test_without_leakage_the_shares_stay_within_what_chance_gives():
    scores, member = _pool(8, 600, seed=1)
    tail = privacy_tail(scores, member, permutations=40, seed=2)
    for s in tail.shares.values():
        assert not s.beats_chance, s
        assert s.ci[0] <= s.null_mean <= s.ci[1]
        assert min(s.null_shares) <= s.share <= max(s.null_shares) or s.share == 0
    # with 8 models a perfect per-record AUC happens by chance: about Σ_k P(n_in = k) / C(8, k)
    auc = tail.shares["auc_ge_0.95"]
    assert auc.null_mean > 0.02


def test_a_planted_leaky_subset_is_found_and_beats_chance():
    m, n, leaky = 8, 400, 40
    scores, member = _pool(m, n, seed=4, leaky=leaky)
    tail = privacy_tail(scores, member, permutations=20, seed=5)
    tpr, auc = tail.shares["tpr_ge_0.5"], tail.shares["auc_ge_0.95"]
    defined = np.isfinite(tail.observed.auc)
    expected = defined[:leaky].sum() / defined.sum()  # the leaky records' share among those with a risk
    assert tpr.ci[0] <= expected <= tpr.ci[1] and tpr.share == pytest.approx(expected, abs=0.02)
    assert auc.share >= expected
    assert tpr.beats_chance and auc.beats_chance
    assert set(tail.most_exposed(10)) <= set(range(leaky))  # the most exposed records are the planted ones


def test_the_null_keeps_each_records_number_of_in_models_and_is_seeded():
    scores, member = _pool(6, 50, seed=6)
    one = privacy_tail(scores, member, permutations=5, seed=7)
    again = privacy_tail(scores, member, permutations=5, seed=7)
    other = privacy_tail(scores, member, permutations=5, seed=8)
    for risk in one.null:
        np.testing.assert_array_equal(risk.n_in, member.sum(0))
    assert [s.null_shares for s in one.shares.values()] == [s.null_shares for s in again.shares.values()]
    assert not all(np.array_equal(a.auc, b.auc, equal_nan=True) for a, b in zip(one.null, other.null))


def test_record_scores_are_the_scaled_confidence_averaged_over_queries():
    rng = np.random.default_rng(0)
    logits, labels = rng.normal(size=(4, 7, 2, 3)), rng.integers(0, 3, 7)
    expected = logit_confidence(logits, labels[:, None]).mean(axis=-1)
    np.testing.assert_allclose(record_scores(logits, labels), expected)
    with pytest.raises(ValueError, match="labels"):
        record_scores(logits, labels[:3])


def test_settings_and_inputs_are_checked():
    with pytest.raises(ValueError, match="tpr_threshold=0.001 is not above fpr=0.01"):
        PrivacyTailConfig(tpr_threshold=0.001, fpr=0.01)
    with pytest.raises(ValueError, match="permutations=1 is not valid"):
        PrivacyTailConfig(permutations=1)
    with pytest.raises(ValueError, match="member has shape"):
        privacy_tail(np.zeros((4, 3)), np.zeros((4, 2), bool))
    with pytest.raises(ValueError, match="NaN or infinite"):
        privacy_tail(np.full((4, 3), np.nan), np.zeros((4, 3), bool))

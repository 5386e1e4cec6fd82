"""Tests of the membership inference metrics against brute force and sklearn."""

from __future__ import annotations

import json
import math
import time
from itertools import combinations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm
from sklearn.metrics import roc_auc_score

from medprivbench.attacks.mia_metrics import _ranked_blocks, _weighted_roc_summary, per_sample_auc, roc_metrics


def brute_force_rates(scores: np.ndarray, is_member: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(FPR, TPR) of the rule "member if score ≥ t" for every distinct t, plus t = +∞ (the origin)."""
    thresholds = np.append(np.unique(scores), np.inf)
    members, nonmembers = np.sort(scores[is_member]), np.sort(scores[~is_member])
    tpr = 1.0 - np.searchsorted(members, thresholds, side="left") / members.size
    fpr = 1.0 - np.searchsorted(nonmembers, thresholds, side="left") / nonmembers.size
    return fpr, tpr


def tied_scores(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    is_member = rng.random(n) < 0.4
    scores = np.round(rng.normal(size=n) + 0.8 * is_member, 1)  # rounding creates many ties
    return scores, is_member


def test_point_metrics_match_brute_force():
    scores, is_member = tied_scores(0, 3000)
    result = roc_metrics(scores, is_member, fpr_levels=(0.001, 0.01, 0.1), n_bootstrap=0)
    fpr, tpr = brute_force_rates(scores, is_member)
    assert result["auc"] == pytest.approx(roc_auc_score(is_member, scores), abs=1e-12)
    assert result["best_balanced_accuracy"] == pytest.approx(np.max((tpr + 1 - fpr) / 2), abs=1e-12)
    for level, value in zip(result["fpr_levels"], result["tpr_at_fpr"], strict=True):
        assert value == pytest.approx(np.max(tpr[fpr <= level]), abs=1e-12)
    assert result["n_members"] == int(is_member.sum())
    assert result["n_nonmembers"] == int((~is_member).sum())
    assert result["auc_ci"] is None and result["tpr_at_fpr_ci"] is None


def test_weighted_summary_with_unit_weights_reproduces_sklearn():
    scores, is_member = tied_scores(1, 2000)
    scores = np.concatenate([scores, np.random.default_rng(6).normal(size=2000)])  # ties and runs
    is_member = np.concatenate([is_member, np.arange(2000) % 3 == 0])
    block, n_blocks = _ranked_blocks(scores, is_member)
    assert n_blocks < np.unique(scores).size  # runs of one class were merged
    positive = np.bincount(block[is_member], minlength=n_blocks).astype(float)
    negative = np.bincount(block[~is_member], minlength=n_blocks).astype(float)
    levels = np.array([0.0005, 0.001, 0.01, 0.05, 0.3])
    auc, tprs = _weighted_roc_summary(positive, negative, levels)
    point = roc_metrics(scores, is_member, fpr_levels=tuple(levels), n_bootstrap=0)
    assert auc == pytest.approx(point["auc"], abs=1e-12)
    np.testing.assert_allclose(tprs, point["tpr_at_fpr"], atol=1e-12)


def test_perfect_and_reversed_scores():
    is_member = np.array([True] * 50 + [False] * 50)
    scores = np.arange(100, 0, -1).astype(float)
    perfect = roc_metrics(scores, is_member, n_bootstrap=20)
    assert perfect["auc"] == 1.0 and perfect["best_balanced_accuracy"] == 1.0
    assert perfect["tpr_at_fpr"] == [1.0, 1.0] and perfect["auc_ci"] == [1.0, 1.0]
    reversed_ = roc_metrics(-scores, is_member, n_bootstrap=0)
    assert reversed_["auc"] == 0.0 and reversed_["tpr_at_fpr"] == [0.0, 0.0]


def test_bootstrap_intervals_cover_the_truth_and_shrink_with_sample_size():
    rng = np.random.default_rng(2)
    separation = 1.0

    def sample(n):  # noqa: ANN001, ANN202
        is_member = rng.random(n) < 0.5
        return rng.normal(size=n) + separation * is_member, is_member

    small = roc_metrics(*sample(2000), n_bootstrap=200, seed=1)
    large = roc_metrics(*sample(20000), n_bootstrap=200, seed=1)
    true_auc = norm.cdf(separation / math.sqrt(2))
    true_tpr = 1 - norm.cdf(norm.ppf(1 - 0.01) - separation)  # TPR at FPR 1% for unit Gaussians
    for result in (small, large):
        low, high = result["auc_ci"]
        assert low <= result["auc"] <= high and low < true_auc < high
        tpr_low, tpr_high = result["tpr_at_fpr_ci"][1]
        assert tpr_low <= result["tpr_at_fpr"][1] <= tpr_high and tpr_low < true_tpr < tpr_high
    width = lambda interval: interval[1] - interval[0]  # noqa: E731
    # Width scales as 1/√n: ten times the samples, about a third of the width.
    assert width(large["auc_ci"]) < 0.5 * width(small["auc_ci"])


def test_bootstrap_is_fast_for_80000_scores():
    rng = np.random.default_rng(3)
    is_member = rng.random(80000) < 0.5
    scores = rng.normal(size=80000) + 0.5 * is_member
    start = time.perf_counter()
    roc_metrics(scores, is_member, n_bootstrap=200)
    assert time.perf_counter() - start < 2.0


def test_downsampled_roc_keeps_low_fpr_points_of_the_curve():
    rng = np.random.default_rng(4)
    is_member = rng.random(40000) < 0.5
    scores = rng.normal(size=40000) + 2.0 * is_member
    result = roc_metrics(scores, is_member, n_bootstrap=0, n_roc_points=200)
    fpr = np.array(result["roc_curve"]["fpr"])
    tpr = np.array(result["roc_curve"]["tpr"])
    assert fpr.size <= 202
    assert fpr[0] == 0.0 and fpr[-1] == 1.0 and tpr[-1] == 1.0
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    assert np.all((np.diff(fpr) > 0) | (np.diff(tpr) > 0))  # no repeated point
    n_nonmembers = result["n_nonmembers"]
    # Points at every decade of FPR down to a few non-members.
    for decade in (1e-4, 1e-3, 1e-2, 1e-1):
        assert np.any((fpr > 0) & (fpr <= decade) & (fpr >= decade / 10 - 1.0 / n_nonmembers))
    # Every kept point lies on the full ROC curve.
    full_fpr, full_tpr = brute_force_rates(scores, is_member)
    for f, t in zip(fpr[::20], tpr[::20], strict=True):
        assert np.any(np.isclose(full_fpr, f) & np.isclose(full_tpr, t))


def test_result_is_json_serialisable():
    scores, is_member = tied_scores(5, 500)
    result = roc_metrics(scores, is_member, n_bootstrap=10)
    assert json.loads(json.dumps(result)) == result


@pytest.mark.parametrize(
    ("scores", "is_member", "options", "message"),
    [
        (np.zeros(4), np.array([True, False, True, False]), {"fpr_levels": (0.0,)}, "fpr_levels"),
        (np.zeros(4), np.array([True, True, True, True]), {}, "non-members"),
        (np.array([0.0, np.nan, 1.0, 2.0]), np.array([True, False, True, False]), {}, "NaN"),
        (np.zeros(4), np.array([1, 0, 1, 0]), {}, "bool"),
        (np.zeros(4), np.array([True, False, True, False]), {"confidence": 1.0}, "confidence"),
        (np.zeros((2, 2)), np.array([[True, False], [True, False]]), {}, "1-D"),
    ],
)
def test_invalid_inputs_are_rejected(scores, is_member, options, message):
    with pytest.raises(ValueError, match=message):
        roc_metrics(scores, is_member, **options)


# ----------------------------------------------------------------------------------------------
# Intervals that respect clustering (model × image)
# ----------------------------------------------------------------------------------------------


def clustered_scores(rng: np.random.Generator, n_models: int, n_images: int):
    """LiRA-protocol scores with crossed random effects: an image effect shared by every model, and a
    member shift that varies by image (atypical images leak more, against every model) and by model
    (some models overfit more)."""
    member = rng.random((n_models, n_images)) < 0.5
    image = rng.normal(0.0, 1.0, n_images)
    leak = rng.exponential(1.0, n_images)
    overfit = np.exp(rng.normal(0.0, 0.7, n_models))
    scores = image[None] + leak[None] * overfit[:, None] * member + rng.normal(0.0, 1.0, (n_models, n_images))
    return scores, member


def test_cluster_bootstrap_covers_near_nominal_where_the_independent_one_does_not():
    rng = np.random.default_rng(2024)
    n_models, n_images, draws = 8, 150, 200
    # the estimand: the expected pooled AUC of an (M, N) protocol, by simulation
    truth = np.mean([roc_auc_score(m.ravel(), s.ravel()) for s, m in (clustered_scores(rng, n_models, n_images)
                                                                    for _ in range(3000))])
    model_of = np.repeat(np.arange(n_models), n_images)
    image_of = np.tile(np.arange(n_images), n_models)
    covered = {"cluster": 0, "independent": 0}
    for draw in range(draws):
        scores, member = clustered_scores(rng, n_models, n_images)
        for kind, clusters in (("cluster", (model_of, image_of)), ("independent", None)):
            lo, hi = roc_metrics(scores.ravel(), member.ravel(), n_bootstrap=200, seed=draw, clusters=clusters)["auc_ci"]
            covered[kind] += lo <= truth <= hi
    coverage = {kind: count / draws for kind, count in covered.items()}
    assert 0.90 <= coverage["cluster"] <= 0.995, coverage
    assert coverage["independent"] < 0.85, coverage  # pairs resampled as if independent: too narrow


def test_cluster_bootstrap_intervals_are_wider_and_contain_the_estimate():
    rng = np.random.default_rng(5)
    scores, member = clustered_scores(rng, 6, 300)
    clusters = (np.repeat(np.arange(6), 300), np.tile(np.arange(300), 6))
    wide = roc_metrics(scores.ravel(), member.ravel(), n_bootstrap=300, clusters=clusters)
    narrow = roc_metrics(scores.ravel(), member.ravel(), n_bootstrap=300)
    assert wide["bootstrap"] == "cluster" and narrow["bootstrap"] == "independent"
    assert wide["auc_ci"][0] <= wide["auc"] <= wide["auc_ci"][1]
    assert wide["auc_ci"][1] - wide["auc_ci"][0] > 1.5 * (narrow["auc_ci"][1] - narrow["auc_ci"][0])
    with pytest.raises(ValueError, match="clusters"):
        roc_metrics(scores.ravel(), member.ravel(), clusters=(np.zeros(3), np.zeros(3)))


# ----------------------------------------------------------------------------------------------
# Per-sample AUC (one image's scores over the models of the LiRA protocol)
# ----------------------------------------------------------------------------------------------


def test_per_sample_auc_matches_pairwise_counting():
    rng = np.random.default_rng(3)
    m, n = 6, 30
    member = rng.random((m, n)) < 0.5
    member[0], member[1] = True, False  # every image both in and out somewhere
    score = np.round(rng.normal(size=(m, n)) + member, 1)  # rounded: ties happen
    labels = rng.integers(0, 3, n)
    order = rng.permutation(m * n)  # the saved table's row order must not matter
    scores = pd.DataFrame({"target_model": np.repeat(np.arange(m), n), "sample": np.tile(np.arange(n), m),
                           "label": np.tile(labels, m), "member": member.ravel(), "score_x": score.ravel()}).iloc[order]
    got = per_sample_auc(scores, "score_x").set_index("sample")
    assert list(got.index) == list(range(n))
    for j in range(n):
        inside, outside = score[member[:, j], j], score[~member[:, j], j]
        pairs = [(a > b) + 0.5 * (a == b) for a in inside for b in outside]
        assert got.loc[j, "auc"] == pytest.approx(np.mean(pairs))
        assert got.loc[j, "gap"] == pytest.approx(inside.mean() - outside.mean())
        assert (got.loc[j, "n_in"], got.loc[j, "n_out"], got.loc[j, "label"]) == (len(inside), len(outside), labels[j])
        # every way of choosing which n_in of the m models had the image: one puts all 'in' scores on top
        assert got.loc[j, "p_perfect"] == pytest.approx(1 / len(list(combinations(range(m), len(inside)))))


def test_per_sample_auc_of_an_image_never_out_is_undefined_and_a_missing_column_is_rejected():
    scores = pd.DataFrame({"target_model": [0, 1, 0, 1], "sample": [0, 0, 1, 1], "label": 0,
                           "member": [True, True, True, False], "score_x": [1.0, 2.0, 3.0, 0.0]})
    got = per_sample_auc(scores, "score_x").set_index("sample")
    assert math.isnan(got.loc[0, "auc"]) and got.loc[1, "auc"] == 1.0 and got.loc[1, "p_perfect"] == 0.5
    with pytest.raises(ValueError, match="score_y"):
        per_sample_auc(scores, "score_y")

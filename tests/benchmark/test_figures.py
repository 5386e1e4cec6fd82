"""benchmark/report/figures.py and attack_figures.py directly: the pure parts (DP bound, ε axis, per-budget statistics) against
their definitions, and each figure on small frames shaped like benchmark/report/records.py's: a PNG
is written where asked, and the drawn points are the per-budget means of the data."""

from __future__ import annotations

import math

import matplotlib.colors
import matplotlib.image
import numpy as np
import pandas as pd
import pytest

from medprivbench.benchmark.report import attack_figures, figures

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
BUDGETS = (1.0, 8.0, math.inf)


@pytest.fixture
def drawn(monkeypatch):
    """The figures saved, as matplotlib objects (saved all the same)."""
    saved = []
    real_save = figures.save

    def keep(fig, path):
        saved.append(fig)
        return real_save(fig, path)

    monkeypatch.setattr(figures, "save", keep)
    monkeypatch.setattr(attack_figures, "save", keep)
    return saved


def assert_png(path, returned):
    assert returned == path and path.is_file() and path.stat().st_size > 1000
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    height, width = matplotlib.image.imread(path).shape[:2]
    assert height > 100 and width > 100


def series(ax, label: str) -> np.ndarray:
    """The (x, y) points of the error-bar series labelled ``label`` (its ∞ point drawn apart included)."""
    containers = [c for c in ax.containers if c.get_label() == label]
    assert containers, f"no series {label!r} among {[c.get_label() for c in ax.containers]}"
    points = [containers[0].lines[0].get_xydata()]
    index = ax.containers.index(containers[0])
    if index + 1 < len(ax.containers) and ax.containers[index + 1].get_label().startswith("_"):  # the apart point
        points.append(ax.containers[index + 1].lines[0].get_xydata())
    return np.concatenate(points)


def line(ax, prefix: str):
    found = [ln for ln in ax.get_lines() if ln.get_label().startswith(prefix)]
    assert len(found) == 1, [ln.get_label() for ln in ax.get_lines()]
    return found[0]


# ----------------------------------------------------------------------------- the pure parts
def test_dp_tpr_bound_is_min_of_one_and_e_eps_fpr_plus_delta():
    fpr = np.array([1e-4, 1e-3, 0.01, 0.5])
    for eps, delta in ((0.5, 1e-5), (2.0, 0.0), (8.0, 1e-3)):
        expected = np.minimum(1.0, math.exp(eps) * fpr + delta)
        np.testing.assert_allclose(figures.dp_tpr_bound(fpr, eps, delta), expected)
    with np.errstate(over="raise"):  # e^ε overflows for ε = 1e6: the bound is 1 and nothing warns
        assert np.all(figures.dp_tpr_bound(fpr, 1e6, 1e-5) == 1.0)
    np.testing.assert_allclose(figures.dp_tpr_bound(0.01, np.array([0.0, 1.0]), 0.0), [0.01, 0.01 * math.e])


def test_epsilon_axis_is_log10_with_infinity_set_apart_on_the_right():
    axis = figures.EpsilonAxis([8.0, 0.5, math.inf, 8.0])
    assert list(axis.values) == [0.5, 8.0, math.inf]
    np.testing.assert_allclose(axis.x([0.5, 8.0]), np.log10([0.5, 8.0]))
    assert axis.x([math.inf])[0] == axis.infinity_at >= math.log10(8.0) + 1.0
    grid = axis.finite_grid(50)
    assert len(grid) == 50 and grid[0] < 0.5 and grid[-1] > 8.0
    only_private = figures.EpsilonAxis([math.inf])
    assert not only_private.has_finite and len(only_private.finite_grid()) == 0
    assert only_private.x([math.inf])[0] == only_private.infinity_at


def test_by_budget_gives_mean_spread_and_count_over_seeds():
    df = pd.DataFrame({"epsilon": [1.0, 1.0, 1.0, 8.0, math.inf, math.inf],
                       "acc": [0.5, 0.7, np.nan, 0.9, 0.95, 0.97], "sweep": ["a"] * 6})
    stats = figures.by_budget(df, "acc").set_index("epsilon")
    assert list(stats.index) == [1.0, 8.0, math.inf]
    assert stats.loc[1.0, "mean"] == pytest.approx(0.6) and stats.loc[1.0, "n"] == 2  # NaN left out
    assert stats.loc[1.0, "std"] == pytest.approx(np.std([0.5, 0.7], ddof=1))
    assert stats.loc[8.0, "std"] == 0.0 and stats.loc[8.0, "n"] == 1  # one seed: no spread, not NaN
    assert stats.loc[math.inf, "mean"] == pytest.approx(0.96)


def test_plain_text_keeps_dollars_literal():
    assert figures.plain_text("cost $5 and $10") == r"cost \$5 and \$10"
    assert figures.plain_text(3) == "3"


# ----------------------------------------------------------------------------- the figures
def _runs(sweep: str, seeds=(0, 1)) -> pd.DataFrame:
    rows = []
    for eps in BUDGETS:
        for seed in seeds:
            finite = math.isfinite(eps)
            rows.append({"sweep": sweep, "epsilon": eps, "seed": seed,
                         "test_accuracy": 0.9 - (0.2 / eps if finite else 0.0) + 0.01 * seed,
                         "test_auroc": 0.95 - (0.1 / eps if finite else 0.0),
                         "epsilon_spent": eps * 0.99 if finite else math.inf,
                         "mia_best_epsilon_lb": 0.1 * seed, "mia_best_epsilon_ceiling": 3.0,
                         "audit_epsilon_lb": 0.05,
                         "rero_bound_train": min(1.0, 0.02 * eps) if finite else 1.0,
                         "rero_bound_prior": min(1.0, 0.2 + 0.05 * eps) if finite else 1.0,
                         "prior_aware_success": 0.15, "prior_aware_chance": 0.1})
    return pd.DataFrame(rows)


def _membership(sweeps=("s",)) -> pd.DataFrame:
    rows = []
    for sweep in sweeps:
        for eps in BUDGETS:
            for seed in (0, 1):
                for attack, auc in (("loss threshold", 0.52), ("LiRA offline", 0.58)):
                    fpr = np.concatenate([[0.0], np.logspace(-3, 0, 20)])
                    rows.append({"sweep": sweep, "epsilon": eps, "seed": seed, "attack": attack, "auc": auc + 0.01 * seed,
                                 "auc_lo": auc - 0.03, "auc_hi": auc + 0.04, "tpr_low": 0.002 * (seed + 1),
                                 "fpr_low": 0.001, "delta": 1e-5, "confidence": 0.99,
                                 "epsilon_spent": eps * 0.99 if math.isfinite(eps) else math.inf,
                                 "fpr": fpr, "tpr": np.sqrt(fpr)})
    return pd.DataFrame(rows)


def test_utility_figure_draws_the_mean_over_seeds_per_budget(tmp_path, drawn):
    runs = _runs("fake-cnn")
    path = tmp_path / "nested" / "figures" / "utility.png"  # folders are created
    assert_png(path, figures.utility({"fake-cnn": runs}, path))
    accuracy_axes = drawn[0].axes[0]
    points = series(accuracy_axes, "fake-cnn")
    axis = figures.EpsilonAxis(runs["epsilon"])
    means = runs.groupby("epsilon")["test_accuracy"].mean()
    np.testing.assert_allclose(points[:, 0], axis.x(means.index))
    np.testing.assert_allclose(points[:, 1], means.to_numpy())


def test_utility_figure_of_two_sweeps_and_of_non_private_runs_only(tmp_path, drawn):
    runs = {"a": _runs("a"), "b$": _runs("b$", seeds=(0,))}
    assert_png(tmp_path / "two.png", figures.utility(runs, tmp_path / "two.png"))
    assert {c.get_label() for c in drawn[0].axes[0].containers if not c.get_label().startswith("_")} == {"a", r"b\$"}
    only = {"a": _runs("a")[lambda d: np.isinf(d["epsilon"])]}
    assert_png(tmp_path / "inf.png", figures.utility(only, tmp_path / "inf.png"))


def test_membership_figure_draws_auc_means_and_the_dp_bound(tmp_path, drawn):
    attacks = _membership()
    path = tmp_path / "membership.png"
    assert_png(path, attack_figures.membership(attacks, path))
    auc_axes, tpr_axes = drawn[0].axes[:2]
    axis = figures.EpsilonAxis(attacks["epsilon"])
    lira = attacks[attacks["attack"] == "LiRA offline"].groupby("epsilon")["auc"].mean()
    points = series(auc_axes, "LiRA offline")
    np.testing.assert_allclose(points[:, 0], axis.x(lira.index))
    np.testing.assert_allclose(points[:, 1], lira.to_numpy())
    bound = line(tpr_axes, "DP bound")
    eps = 10 ** bound.get_xdata()
    np.testing.assert_allclose(bound.get_ydata(), np.minimum(1.0, np.exp(eps) * 0.001 + 1e-5), rtol=1e-9)
    assert "99%" in auc_axes.get_title()  # the intervals' stated level is the data's


def test_roc_curves_have_one_panel_per_sweep_and_budget_and_a_bound_where_dp(tmp_path, drawn):
    curves = _membership(sweeps=("a", "b"))
    curves = curves[~((curves["sweep"] == "b") & (curves["epsilon"] == 8.0))]  # a missing panel stays empty
    path = tmp_path / "roc.png"
    assert_png(path, attack_figures.roc_curves(curves, path))
    visible = [ax for ax in drawn[0].axes if ax.get_visible()]
    assert len(visible) == 5
    with_bound = [ax for ax in visible if any(ln.get_label().startswith("DP bound") for ln in ax.get_lines())]
    assert len(with_bound) == 3  # ε = 1 and 8 of sweep a, ε = 1 of sweep b; none for ε = ∞
    assert all(ax.get_xscale() == "log" and ax.get_yscale() == "log" for ax in visible)


def test_empirical_epsilon_figure_draws_each_bound_and_the_audits(tmp_path, drawn):
    runs = _runs("s")
    path = tmp_path / "empirical.png"
    assert_png(path, figures.empirical_epsilon(runs, path, {"audit_epsilon_lb": "one-run audit"}))
    ax = drawn[0].axes[0]
    labels = {c.get_label() for c in ax.containers if not c.get_label().startswith("_")}
    assert labels == {"accountant ε (upper bound)", "empirical ε lower bound, membership attacks",
                      "empirical ε lower bound, one-run audit", "largest lower bound the sample size allows"}
    spent = series(ax, "accountant ε (upper bound)")
    np.testing.assert_allclose(spent[:, 1], [0.99, 7.92])  # ∞ is not drawn
    lower = series(ax, "empirical ε lower bound, membership attacks")
    np.testing.assert_allclose(lower[:, 1], [0.05, 0.05, 0.05])


def test_reconstruction_figure_with_attacks_and_with_bounds_only(tmp_path, drawn):
    runs = _runs("s")
    attacks = pd.DataFrame([{"sweep": "s", "epsilon": eps, "seed": seed, "attack": "imprint", "rero_best": share}
                            for eps, share in zip(BUDGETS, (0.0, 0.25, 1.0)) for seed in (0, 1)])
    path = tmp_path / "reconstruction.png"
    assert_png(path, attack_figures.reconstruction(runs, attacks, path))
    ax = drawn[0].axes[0]
    np.testing.assert_allclose(series(ax, "imprint: ReRo@η")[:, 1], [0.0, 0.25, 1.0])
    np.testing.assert_allclose(series(ax, "ReRo bound γ, κ = 1/N (train set prior)")[:, 1], [0.02, 0.16, 1.0])
    assert_png(tmp_path / "bounds.png", attack_figures.reconstruction(runs, pd.DataFrame(), tmp_path / "bounds.png"))


def test_per_class_figure_draws_each_class(tmp_path, drawn):
    classes = pd.DataFrame([{"sweep": "s", "epsilon": eps, "seed": seed, "class_name": name,
                             "accuracy": 0.8 + 0.1 * k, "risk": 0.5 + 0.05 * k + 0.01 * seed}
                            for eps in BUDGETS for seed in (0, 1) for k, name in enumerate(("normal", "pneumonia"))])
    path = tmp_path / "per_class.png"
    assert_png(path, figures.per_class(classes, path))
    risk_axes = drawn[0].axes[1]
    np.testing.assert_allclose(series(risk_axes, "pneumonia")[:, 1], [0.555] * 3)


def test_verdict_grid_colours_each_cell_by_its_verdict_and_labels_it_with_the_deciding_result(tmp_path, drawn):
    from medprivbench.benchmark.report.records import Point

    runs = pd.DataFrame({
        "epsilon": [1.0, math.inf], "reference": ["", "same_recipe"], "seed": [0, 0], "epsilon_spent": [0.99, math.inf],
        "verdict_black_box": ["no attack beat chance", "beats chance"],
        "verdict_black_box_evidence": ["LiRA AUC 0.51 [0.48, 0.54]", "LiRA AUC 0.70 [0.66, 0.74]"],
        "verdict_curious_server": ["not run", "not run"], "verdict_curious_server_evidence": ["", ""],
        "worst_case_epsilon_lb": [0.33, 8.7],
    })
    path = tmp_path / "verdicts.png"
    assert_png(path, figures.verdict_grid({"s": runs}, {"s": [Point(1.0), Point(math.inf, "same_recipe")]}, path))
    ax = drawn[0].axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["black box", "worst-case audit"]  # curious server never ran
    assert [t.get_text() for t in ax.get_yticklabels()] == ["ε = 1", "ε = ∞ (same recipe)"]
    colours = [tuple(p.get_facecolor()) for p in ax.patches]
    green, red = (matplotlib.colors.to_rgba(figures.VERDICT_COLOURS[v]) for v in ("no attack beat chance", "beats chance"))
    assert colours[0] == green and colours[2] == red  # row by row: (ε = 1, black box), (ε = 1, audit), (∞, black box)
    texts = [t.get_text() for t in ax.texts]
    assert "LiRA AUC 0.51" in texts[0] and "ε ≥ 0.33 of 0.99" in texts[1] and "33% tight" in texts[1]
    assert texts[2].startswith("beats chance") and "no DP" in texts[3]


def test_utility_figure_draws_the_tuned_reference_as_a_star_apart(tmp_path, drawn):
    runs = pd.DataFrame({"epsilon": [8.0, math.inf], "test_accuracy": [0.7, 0.9], "test_auroc": [0.75, 0.95]})
    tuned = pd.DataFrame({"epsilon": [math.inf], "test_accuracy": [0.93], "test_auroc": [0.97]})
    figures.utility({"s": runs}, tmp_path / "u.png", tuned={"s": tuned})
    ax = drawn[0].axes[0]
    star = [c for c in ax.containers if c.get_label() == "tuned non-private recipe"]
    assert len(star) == 1 and star[0].lines[0].get_ydata()[0] == pytest.approx(0.93)
    assert star[0].lines[0].get_xdata()[0] > series(ax, "s")[:, 0].max()  # beside the same-recipe point at ∞

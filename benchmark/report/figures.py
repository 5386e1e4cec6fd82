"""The report's figures (matplotlib, Agg backend), one function per figure.

Every function takes tidy data frames built by benchmark/report/records.py from the run records, draws
one PNG and returns its path. Nothing here reads records or types in a number: bounds are drawn
from the formulas they state, with the ε, δ and γ values found in the records.

Conventions shared by all figures:

* the privacy budget ε is on a log axis; the non-private runs (ε = ∞) sit apart on the right,
  beyond a dotted separator (:class:`EpsilonAxis`);
* points are means over seeds, error bars their standard deviation (or, where stated, the mean
  of the per-run confidence interval ends);
* several sweeps in one figure differ by marker and line style, attacks or classes by colour.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from ..numbers import format_epsilon  # noqa: E402

DPI = 100
MARKERS = ("o", "s", "^", "D", "v", "P", "X")
LINESTYLES = ("-", "--", "-.", ":")
NONPRIVATE_LABEL = "∞\n(non-private)"


def plain_text(text: str) -> str:
    """Text from data shown by matplotlib literally: '$' would otherwise start mathtext."""
    return str(text).replace("$", r"\$")


def dp_tpr_bound(fpr, epsilon, delta: float) -> np.ndarray:
    """The largest TPR any membership test can reach against an (ε, δ)-DP mechanism: min(1, e^ε·FPR + δ).

    Kairouz, Oh & Viswanath 2015; e^ε overflows to ∞ for very large ε, where the bound is 1.
    """
    with np.errstate(over="ignore"):
        return np.minimum(1.0, np.exp(np.asarray(epsilon, float)) * np.asarray(fpr, float) + delta)


# ----------------------------------------------------------------------------- ε axis
class EpsilonAxis:
    """x positions for privacy budgets: log10 ε, with ε = ∞ placed apart right of the largest finite ε."""

    def __init__(self, epsilons: Iterable[float]):
        eps = np.asarray(list(epsilons), dtype=float)
        self.values = np.unique(eps)
        finite = self.values[np.isfinite(self.values)]
        self.has_finite = bool(len(finite))
        self.lo = math.log10(finite.min()) if len(finite) else 0.0
        self.hi = math.log10(finite.max()) if len(finite) else 0.0
        self.infinity_at = self.hi + max(1.0, 0.15 * (self.hi - self.lo + 1))

    def x(self, eps) -> np.ndarray:
        eps = np.asarray(eps, dtype=float)
        finite = np.isfinite(eps)
        return np.where(finite, np.log10(np.where(finite, eps, 1.0)), self.infinity_at)

    def finite_grid(self, n: int = 200) -> np.ndarray:
        """ε values spanning the finite part of the axis, for drawing bounds as curves."""
        return np.logspace(self.lo - 0.2, self.hi + 0.2, n) if self.has_finite else np.array([])

    def style(self, ax, label: str = "privacy budget ε (log scale)") -> None:
        ax.set_xticks(self.x(self.values))
        ax.set_xticklabels([NONPRIVATE_LABEL if math.isinf(e) else format_epsilon(e) for e in self.values])
        if self.has_finite and np.isinf(self.values).any():
            ax.axvline((self.hi + self.infinity_at) / 2, color="0.6", linestyle=":", linewidth=1)
        left = min(self.lo, self.hi) - 0.4
        ax.set_xlim(left, (self.infinity_at if np.isinf(self.values).any() else self.hi) + 0.4)
        ax.set_xlabel(label)
        ax.grid(True, alpha=0.3)


def by_budget(df: pd.DataFrame, column: str, keys: tuple[str, ...] = ()) -> pd.DataFrame:
    """Mean, spread (std over seeds, 0 for one seed) and count of ``column`` per ε (and ``keys``)."""
    g = df.dropna(subset=[column]).groupby([*keys, "epsilon"])[column]
    out = pd.DataFrame({"mean": g.mean(), "std": g.std(ddof=1).fillna(0.0), "n": g.count()})
    return out.reset_index().sort_values([*keys, "epsilon"])


def series_style(i: int) -> dict:
    return {"marker": MARKERS[i % len(MARKERS)], "linestyle": LINESTYLES[i % len(LINESTYLES)]}


def save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return path


def legend(ax, **kwargs) -> None:
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(fontsize=7, **kwargs)


def errorbar(ax, x, y, yerr, label: str, **style) -> None:
    """Error-bar series whose line stops at the ∞ separator: the non-private point stands alone."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    yerr = np.asarray(yerr, float)
    apart = x == x.max() if len(x) and np.isinf(style.pop("_eps_max", 0.0)) else np.zeros(len(x), bool)
    column = (lambda m: yerr[:, m]) if yerr.ndim == 2 else (lambda m: yerr[m])
    line = ax.errorbar(x[~apart], y[~apart], yerr=column(~apart), capsize=3, label=plain_text(label), **style)
    if apart.any():
        colour = line.lines[0].get_color()
        ax.errorbar(x[apart], y[apart], yerr=column(apart), capsize=3, **{**style, "color": colour, "linestyle": "none"})


def errorbar_by_budget(ax, axis: EpsilonAxis, df: pd.DataFrame, column: str, label: str, **style) -> None:
    stats = by_budget(df, column)
    if len(stats):
        errorbar(ax, axis.x(stats["epsilon"]), stats["mean"], stats["std"], label,
                  _eps_max=float(stats["epsilon"].max()), **style)


def series_label(sweeps: list[str], sweep: str, name: str) -> str:
    """A legend label: the series name, prefixed with its sweep when a figure shows several."""
    return f"{sweep}: {name}" if len(sweeps) > 1 else name


# ----------------------------------------------------------------------------- utility
def utility(runs: dict[str, pd.DataFrame], path: Path, tuned: dict[str, pd.DataFrame] | None = None,
            metrics: tuple[tuple[str, str], ...] = (("test_accuracy", "test accuracy"), ("test_auroc", "test AUROC"))) -> Path:
    """Two utility metrics (``metrics``: column and title; test accuracy and AUROC, or a segmenter's
    Dice and IoU) against ε; ``runs`` maps a sweep label to its per-run table (one reference at
    ε = ∞), ``tuned`` to the runs of the tuned non-private recipe, drawn as a star at ∞."""
    tuned = tuned or {}
    axis = EpsilonAxis(np.concatenate([df["epsilon"].to_numpy(float) for df in [*runs.values(), *tuned.values()]]))
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, (column, title) in zip(axes, metrics):
        for i, (sweep, df) in enumerate(runs.items()):
            errorbar_by_budget(ax, axis, df, column, sweep, **series_style(i))
        for i, (sweep, df) in enumerate(tuned.items()):
            values = df[column].dropna()
            if len(values):
                ax.errorbar([axis.infinity_at + 0.25], [values.mean()], yerr=[values.std(ddof=1) if len(values) > 1 else 0.0],
                            marker="*", markersize=11, linestyle="none", capsize=3, color="0.25",
                            label=plain_text(series_label(list(runs), sweep, "tuned non-private recipe")))
        axis.style(ax)
        ax.set_ylabel(f"{title} (fraction)")
        ax.set_title(f"{title} vs privacy budget")
        legend(ax)
    return save(fig, path)


# ----------------------------------------------------------------------------- verdicts
VERDICT_COLOURS = {"beats chance": "#e8a09a", "no attack beat chance": "#a8d5a2", "not run": "#dddddd"}


def _short(value: float) -> str:
    """3 significant digits, exponents without padding: 0.99968 → 1, 999998.6 → 1e6."""
    return re.sub(r"e\+?0*(\d)", r"e\1", f"{value:.3g}")


def verdict_grid(runs: dict[str, pd.DataFrame], points: dict[str, list], path: Path) -> Path:
    """Budgets (rows) × threat models (columns), one panel per sweep: each cell coloured by its
    verdict and labelled with the result that decided it; the worst-case audit's column shows its
    empirical ε as a share of the accountant's ε (blue, darker is tighter).

    ``runs``: the sweep's run frame (records.run_frame) by sweep label; ``points``: its points
    (records.Point, in order). The cells are what report/verdicts.py decides; nothing is recomputed.
    """
    import textwrap

    from .verdicts import point_verdict, threats_run, worst_case_ran
    from ..threats import WORST_CASE

    panels = []
    for sweep, frame in runs.items():
        threats = threats_run(frame)
        columns = [t.label for t in threats] + ([WORST_CASE.label] if worst_case_ran(frame) else [])
        cells = []
        for point in points[sweep]:
            at = frame[(frame["epsilon"] == point.epsilon) & (frame["reference"] == point.reference)]
            row = []
            for t in threats:
                v = point_verdict(at, t)
                row.append((VERDICT_COLOURS[v.value], f"{v.value}\n{v.text}" if v.text else v.value))
            if worst_case_ran(frame):
                lb, spent = at["worst_case_epsilon_lb"].dropna(), float(at["epsilon_spent"].mean())
                if lb.empty:
                    row.append((VERDICT_COLOURS["not run"], "not run"))
                elif not math.isfinite(spent):
                    row.append(("#eeeeee", f"ε ≥ {lb.mean():.3g}\n(no DP)"))
                else:
                    share = float(lb.mean()) / spent
                    row.append((plt.cm.Blues(0.15 + 0.6 * min(1.0, max(0.0, share))),
                                f"ε ≥ {lb.mean():.3g} of {_short(spent)}\n({100 * share:.2g}% tight)"))
            cells.append(row)
        panels.append((sweep, columns, [p.label for p in points[sweep]], cells))
    width = max(len(c) for _, c, _, _ in panels)
    height = sum(len(r) for _, _, r, _ in panels)
    fig, axes = plt.subplots(len(panels), 1, figsize=(2.3 * width + 1.6, 0.75 * height + 1.0 * len(panels)), squeeze=False)
    for ax, (sweep, columns, rows, cells) in zip(axes[:, 0], panels):
        for i, row in enumerate(cells):
            for j, (colour, text) in enumerate(row):
                ax.add_patch(plt.Rectangle((j, i), 1, 1, facecolor=colour, edgecolor="white", linewidth=2))
                wrapped = "\n".join(textwrap.fill(line, 30) for line in plain_text(text).split("\n"))
                ax.text(j + 0.5, i + 0.5, wrapped, ha="center", va="center", fontsize=6.5)
        ax.set_xlim(0, len(columns))
        ax.set_ylim(len(rows), 0)
        ax.set_xticks(np.arange(len(columns)) + 0.5)
        ax.set_xticklabels([plain_text(c) for c in columns], fontsize=8)
        ax.xaxis.tick_top()
        ax.set_yticks(np.arange(len(rows)) + 0.5)
        ax.set_yticklabels([f"ε = {plain_text(r)}" for r in rows], fontsize=8)
        ax.tick_params(length=0)
        for spine in ax.spines.values():
            spine.set_visible(False)
        if len(panels) > 1:
            ax.set_title(plain_text(sweep), fontsize=9, loc="left")
    return save(fig, path)


# ----------------------------------------------------------------------------- membership
def empirical_epsilon(runs: pd.DataFrame, path: Path, audits: dict[str, str] | None = None) -> Path:
    """Accountant ε (upper bound) beside the empirical lower bounds from the membership attacks and the audits.

    ``runs``: one row per run with the sweep table's columns sweep, epsilon, epsilon_spent,
    mia_best_epsilon_lb, mia_best_epsilon_ceiling (the largest lower bound the membership
    protocol's sample size allows) and, for each audit, the column of its ε lower bound.
    ``audits``: those columns, each mapped to the audit's label.
    """
    axis = EpsilonAxis(runs["epsilon"])
    fig, ax = plt.subplots(figsize=(7, 4.2))
    sweeps = list(dict.fromkeys(runs["sweep"]))
    audit_colours = ("tab:orange", "tab:green", "tab:brown", "tab:pink")
    series = (
        ("epsilon_spent", "accountant ε (upper bound)", "black"),
        ("mia_best_epsilon_lb", "empirical ε lower bound, membership attacks", "tab:blue"),
        *((column, f"empirical ε lower bound, {label}", audit_colours[i % len(audit_colours)])
          for i, (column, label) in enumerate((audits or {}).items())),
        ("mia_best_epsilon_ceiling", "largest lower bound the sample size allows", "0.6"),
    )
    for i, sweep in enumerate(sweeps):
        part = runs[runs["sweep"] == sweep].assign(epsilon_spent=lambda d: d["epsilon_spent"].replace(np.inf, np.nan))
        for column, name, colour in series:
            if column in part and part[column].notna().any():
                errorbar_by_budget(ax, axis, part, column, series_label(sweeps, sweep, name), color=colour,
                                    **series_style(i))
    return save_epsilon_plot(fig, ax, axis, "Empirical lower bounds vs the accountant's ε (∞ for non-private runs: not drawn)", path)


def save_epsilon_plot(fig, ax, axis: "EpsilonAxis", title: str, path: Path) -> Path:
    """Finish and save a plot of ε (symlog) against the target budget."""
    ax.set_yscale("symlog", linthresh=1.0)
    ax.set_ylabel("ε (symlog scale)")
    ax.set_title(title)
    axis.style(ax, "target privacy budget ε (log scale)")
    legend(ax)
    return save(fig, path)


# ----------------------------------------------------------------------------- per class
def per_class(classes: pd.DataFrame, path: Path) -> Path:
    """Per-class test accuracy and membership risk against ε.

    ``classes``: one row per (sweep, run, class) with columns sweep, epsilon, class_name,
    accuracy, risk (mean per-sample membership AUC of the class).
    """
    axis = EpsilonAxis(classes["epsilon"])
    sweeps = list(dict.fromkeys(classes["sweep"]))
    names = list(dict.fromkeys(classes["class_name"]))
    colours = {c: plt.cm.tab10(i % 10) for i, c in enumerate(names)}
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, column, ylabel in (
        (axes[0], "accuracy", "test accuracy of the class (fraction)"),
        (axes[1], "risk", "mean per-sample membership AUC"),
    ):
        for i, sweep in enumerate(sweeps):
            for name in names:
                part = classes[(classes["sweep"] == sweep) & (classes["class_name"] == name)]
                label = series_label(sweeps, sweep, name)
                errorbar_by_budget(ax, axis, part, column, label, color=colours[name], **series_style(i))
        ax.set_ylabel(ylabel)
        axis.style(ax)
        legend(ax)
    axes[1].axhline(0.5, color="0.3", linewidth=1, linestyle="--")
    axes[0].set_title("Utility per class")
    axes[1].set_title("Membership risk per class (0.5 = no signal)")
    return save(fig, path)

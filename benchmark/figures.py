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

from . import store  # noqa: E402

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
        ax.set_xticklabels([NONPRIVATE_LABEL if math.isinf(e) else store.format_epsilon(e) for e in self.values])
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


def _series_style(i: int) -> dict:
    return {"marker": MARKERS[i % len(MARKERS)], "linestyle": LINESTYLES[i % len(LINESTYLES)]}


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return path


def _legend(ax, **kwargs) -> None:
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(fontsize=7, **kwargs)


def _errorbar(ax, x, y, yerr, label: str, **style) -> None:
    """Error-bar series whose line stops at the ∞ separator: the non-private point stands alone."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    yerr = np.asarray(yerr, float)
    apart = x == x.max() if len(x) and np.isinf(style.pop("_eps_max", 0.0)) else np.zeros(len(x), bool)
    column = (lambda m: yerr[:, m]) if yerr.ndim == 2 else (lambda m: yerr[m])
    line = ax.errorbar(x[~apart], y[~apart], yerr=column(~apart), capsize=3, label=plain_text(label), **style)
    if apart.any():
        colour = line.lines[0].get_color()
        ax.errorbar(x[apart], y[apart], yerr=column(apart), capsize=3, **{**style, "color": colour, "linestyle": "none"})


def _errorbar_by_budget(ax, axis: EpsilonAxis, df: pd.DataFrame, column: str, label: str, **style) -> None:
    stats = by_budget(df, column)
    if len(stats):
        _errorbar(ax, axis.x(stats["epsilon"]), stats["mean"], stats["std"], label,
                  _eps_max=float(stats["epsilon"].max()), **style)


def _series_label(sweeps: list[str], sweep: str, name: str) -> str:
    """A legend label: the series name, prefixed with its sweep when a figure shows several."""
    return f"{sweep}: {name}" if len(sweeps) > 1 else name


# ----------------------------------------------------------------------------- utility
def utility(runs: dict[str, pd.DataFrame], path: Path, tuned: dict[str, pd.DataFrame] | None = None) -> Path:
    """Test accuracy and AUROC against ε; ``runs`` maps a sweep label to its per-run table (one
    reference at ε = ∞), ``tuned`` to the runs of the tuned non-private recipe, drawn as a star at ∞."""
    tuned = tuned or {}
    axis = EpsilonAxis(np.concatenate([df["epsilon"].to_numpy(float) for df in [*runs.values(), *tuned.values()]]))
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, column, title in ((axes[0], "test_accuracy", "test accuracy"), (axes[1], "test_auroc", "test AUROC")):
        for i, (sweep, df) in enumerate(runs.items()):
            _errorbar_by_budget(ax, axis, df, column, sweep, **_series_style(i))
        for i, (sweep, df) in enumerate(tuned.items()):
            values = df[column].dropna()
            if len(values):
                ax.errorbar([axis.infinity_at + 0.25], [values.mean()], yerr=[values.std(ddof=1) if len(values) > 1 else 0.0],
                            marker="*", markersize=11, linestyle="none", capsize=3, color="0.25",
                            label=plain_text(_series_label(list(runs), sweep, "tuned non-private recipe")))
        axis.style(ax)
        ax.set_ylabel(f"{title} (fraction)")
        ax.set_title(f"{title} vs privacy budget")
        _legend(ax)
    return _save(fig, path)


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

    from .report.verdicts import point_verdict, threats_run, worst_case_ran
    from .threats import WORST_CASE

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
    return _save(fig, path)


# ----------------------------------------------------------------------------- membership
def membership(attacks: pd.DataFrame, path: Path) -> Path:
    """AUC and TPR at the lowest FPR level per attack against ε, with chance and the DP bound.

    ``attacks``: one row per (sweep, run, attack) with columns sweep, epsilon, attack, auc,
    auc_lo, auc_hi, tpr_low, fpr_low, delta, epsilon_spent.
    """
    axis = EpsilonAxis(attacks["epsilon"])
    sweeps = list(dict.fromkeys(attacks["sweep"]))
    names = list(dict.fromkeys(attacks["attack"]))
    colours = {a: plt.cm.tab10(i % 10) for i, a in enumerate(names)}
    fpr_level = float(attacks["fpr_low"].iloc[0])
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for i, sweep in enumerate(sweeps):
        for name in names:
            part = attacks[(attacks["sweep"] == sweep) & (attacks["attack"] == name)]
            if part.empty:
                continue
            label = _series_label(sweeps, sweep, name)
            style = {**_series_style(i), "color": colours[name]}
            auc = part.groupby("epsilon")[["auc", "auc_lo", "auc_hi"]].mean().reset_index()
            yerr = np.vstack([auc["auc"] - auc["auc_lo"], auc["auc_hi"] - auc["auc"]]).clip(min=0)
            _errorbar(axes[0], axis.x(auc["epsilon"]), auc["auc"], yerr, label, _eps_max=float(auc["epsilon"].max()), **style)
            _errorbar_by_budget(axes[1], axis, part, "tpr_low", label, **style)
    axes[0].axhline(0.5, color="0.3", linewidth=1, linestyle="--", label="chance (AUC 0.5)")
    axes[0].set_ylabel("membership attack AUC")
    levels = sorted({float(c) for c in attacks["confidence"]}) if "confidence" in attacks else [0.95]
    level = "/".join(f"{100 * c:.3g}%" for c in levels)
    axes[0].set_title(f"AUC (error bars: mean {level} CI over seeds)")
    axes[1].axhline(fpr_level, color="0.3", linewidth=1, linestyle="--", label=f"chance (TPR = FPR = {fpr_level:g})")
    grid = axis.finite_grid()
    if len(grid):
        delta = float(attacks["delta"].max())
        axes[1].plot(axis.x(grid), dp_tpr_bound(fpr_level, grid, delta), color="crimson", linewidth=1.5,
                     label=f"DP bound e^ε·FPR + δ (δ = {delta:g})")
    axes[1].set_yscale("symlog", linthresh=fpr_level / 10)
    axes[1].set_ylim(0, 1.05)
    axes[1].set_ylabel(f"TPR at FPR = {100 * fpr_level:g}% (symlog)")
    axes[1].set_title(f"TPR at {100 * fpr_level:g}% FPR (error bars: std over seeds)")
    for ax in axes:
        axis.style(ax)
        _legend(ax)
    return _save(fig, path)


def roc_curves(curves: pd.DataFrame, path: Path) -> Path:
    """Log-log ROC curves, one panel per (sweep, budget), with chance and TPR ≤ min(1, e^ε·FPR + δ).

    ``curves``: one row per (sweep, epsilon, seed, attack) with columns fpr, tpr (arrays),
    epsilon_spent, delta.
    """
    panels = curves[["sweep", "epsilon"]].drop_duplicates().sort_values(["sweep", "epsilon"], key=_sweep_order(curves))
    sweeps = list(dict.fromkeys(curves["sweep"]))
    budgets = sorted(set(curves["epsilon"]))
    names = list(dict.fromkeys(curves["attack"]))
    colours = {a: plt.cm.tab10(i % 10) for i, a in enumerate(names)}
    floor = _roc_floor(curves)
    fig, axes = plt.subplots(len(sweeps), len(budgets), figsize=(3.3 * len(budgets), 3.2 * len(sweeps)), squeeze=False)
    for ax in axes.ravel():
        ax.set_visible(False)
    for _, (sweep, eps) in panels.iterrows():
        ax = axes[sweeps.index(sweep), budgets.index(eps)]
        ax.set_visible(True)
        part = curves[(curves["sweep"] == sweep) & (curves["epsilon"] == eps)]
        labelled = set()
        for _, row in part.iterrows():
            fpr, tpr = np.asarray(row["fpr"], float), np.asarray(row["tpr"], float)
            keep = (fpr > 0) & (tpr > 0)
            label = None if row["attack"] in labelled else plain_text(row["attack"])
            labelled.add(row["attack"])
            ax.plot(fpr[keep], tpr[keep], color=colours[row["attack"]], linewidth=1.2, alpha=0.8, label=label)
        grid = np.logspace(math.log10(floor), 0, 200)
        ax.plot(grid, grid, color="0.4", linestyle="--", linewidth=1, label="chance")
        spent = float(part["epsilon_spent"].max())
        if math.isfinite(spent):
            delta = float(part["delta"].max())
            ax.plot(grid, dp_tpr_bound(grid, spent, delta), color="crimson", linewidth=1.5,
                    label=f"DP bound (ε = {spent:.3g})")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(floor, 1)
        ax.set_ylim(floor, 1.05)
        ax.grid(True, which="major", alpha=0.3)
        title = "ε = ∞ (non-private)" if math.isinf(eps) else f"ε = {store.format_epsilon(eps)}"
        ax.set_title(plain_text(f"{sweep}: {title}" if len(sweeps) > 1 else title), fontsize=9)
        ax.set_xlabel("false positive rate (log)")
        ax.set_ylabel("true positive rate (log)")
        _legend(ax, loc="lower right")
    fig.subplots_adjust(wspace=0.35, hspace=0.45)
    return _save(fig, path)


def _sweep_order(curves: pd.DataFrame):
    order = {s: i for i, s in enumerate(dict.fromkeys(curves["sweep"]))}
    return lambda col: col.map(order) if col.name == "sweep" else col


def _roc_floor(curves: pd.DataFrame) -> float:
    """Lower end of the log axes: the smallest positive FPR of any curve, at most 1e-3."""
    smallest = [min((f for f in fpr if f > 0), default=1e-3) for fpr in curves["fpr"]]
    return float(min([1e-3, *smallest]))


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
                _errorbar_by_budget(ax, axis, part, column, _series_label(sweeps, sweep, name), color=colour,
                                    **_series_style(i))
    return _save_epsilon_plot(fig, ax, axis, "Empirical lower bounds vs the accountant's ε (∞ for non-private runs: not drawn)", path)


def _save_epsilon_plot(fig, ax, axis: "EpsilonAxis", title: str, path: Path) -> Path:
    """Finish and save a plot of ε (symlog) against the target budget."""
    ax.set_yscale("symlog", linthresh=1.0)
    ax.set_ylabel("ε (symlog scale)")
    ax.set_title(title)
    axis.style(ax, "target privacy budget ε (log scale)")
    _legend(ax)
    return _save(fig, path)


def whitebox(runs: pd.DataFrame, bounds: list[tuple[str, str, str]], path: Path) -> Path:
    """The white-box audit's ε lower bounds (each analysis and observation) against the accountant's
    ε, with the ceiling each analysis reaches on the idealised mechanism.

    ``runs``: one row per run with sweep, epsilon, epsilon_spent and the columns of ``bounds``:
    (bound column, ceiling column, label), e.g. whitebox_all_iterates_fdp_dpsgd_epsilon_lb.
    """
    axis = EpsilonAxis(runs["epsilon"])
    fig, ax = plt.subplots(figsize=(7.5, 4.4))
    sweeps = list(dict.fromkeys(runs["sweep"]))
    for i, sweep in enumerate(sweeps):
        part = runs[runs["sweep"] == sweep].assign(epsilon_spent=lambda d: d["epsilon_spent"].replace(np.inf, np.nan))
        _errorbar_by_budget(ax, axis, part, "epsilon_spent", _series_label(sweeps, sweep, "accountant ε (upper bound)"),
                            color="black", **_series_style(i))
        for j, (bound, ceiling, label) in enumerate(bounds):
            colour = plt.cm.tab10(j % 10)
            if bound in part and part[bound].notna().any():
                _errorbar_by_budget(ax, axis, part, bound, _series_label(sweeps, sweep, label), color=colour, **_series_style(i))
            if ceiling in part and part[ceiling].notna().any():
                _errorbar_by_budget(ax, axis, part, ceiling, _series_label(sweeps, sweep, f"ceiling, {label}"), color=colour,
                                    linestyle=":", marker="x", alpha=0.7)
    return _save_epsilon_plot(fig, ax, axis, "White-box audit: empirical ε vs the accountant's ε and the idealised ceiling", path)


# ----------------------------------------------------------------------------- reconstruction
def reconstruction(runs: pd.DataFrame, attacks: pd.DataFrame, path: Path) -> Path:
    """Reconstruction success against ε with the ReRo bounds γ from the records.

    ``attacks``: one row per (sweep, run, attack) with columns sweep, epsilon, attack, rero
    (rero_best: the share of images reconstructed past η). ``runs``: one row per run with columns sweep,
    epsilon, prior_aware_success, prior_aware_chance, rero_bound_train, rero_bound_prior.
    """
    axis = EpsilonAxis(runs["epsilon"])
    fig, ax = plt.subplots(figsize=(8, 4.4))
    sweeps = list(dict.fromkeys(runs["sweep"]))
    names = list(dict.fromkeys(attacks["attack"])) if len(attacks) else []
    colours = {a: plt.cm.tab10(i % 10) for i, a in enumerate(names)}
    for i, sweep in enumerate(sweeps):
        style = _series_style(i)
        for name in names:
            part = attacks[(attacks["sweep"] == sweep) & (attacks["attack"] == name)]
            label = _series_label(sweeps, sweep, f"{name}: ReRo@η")
            _errorbar_by_budget(ax, axis, part, "rero_best", label, color=colours[name], **style)
        part = runs[runs["sweep"] == sweep]
        for column, name, colour in (
            ("rero_bound_train", "ReRo bound γ, κ = 1/N (train set prior)", "crimson"),
            ("prior_aware_success", "prior-aware attack success", "tab:purple"),
            ("rero_bound_prior", "ReRo bound γ, κ = 1/n (candidate prior)", "black"),
            ("prior_aware_chance", "chance for the prior-aware attack (1/n)", "0.5"),
        ):
            if column in part and part[column].notna().any():
                lw = 2.0 if column.startswith("rero_bound") else 1.2
                _errorbar_by_budget(ax, axis, part, column, _series_label(sweeps, sweep, name), color=colour, linewidth=lw,
                                    **{**style, "linestyle": ":" if column.endswith("chance") else style["linestyle"]})
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel("success probability / share of images")
    ax.set_title("Reconstruction success vs the ReRo bound")
    axis.style(ax)
    _legend(ax, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return _save(fig, path)


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
                label = _series_label(sweeps, sweep, name)
                _errorbar_by_budget(ax, axis, part, column, label, color=colours[name], **_series_style(i))
        ax.set_ylabel(ylabel)
        axis.style(ax)
        _legend(ax)
    axes[1].axhline(0.5, color="0.3", linewidth=1, linestyle="--")
    axes[0].set_title("Utility per class")
    axes[1].set_title("Membership risk per class (0.5 = no signal)")
    return _save(fig, path)

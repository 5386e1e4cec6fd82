"""The report's figures of the membership and audit families: attack success and ROC curves
against ε, the white-box audit's bounds beside their ceilings, and reconstruction success beside the
ReRo bounds (conventions: report/figures.py)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from ..numbers import format_epsilon
from .figures import (
    EpsilonAxis, dp_tpr_bound, errorbar, errorbar_by_budget, legend, plain_text, plt, save, save_epsilon_plot,
    series_label, series_style,
)


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
            label = series_label(sweeps, sweep, name)
            style = {**series_style(i), "color": colours[name]}
            auc = part.groupby("epsilon")[["auc", "auc_lo", "auc_hi"]].mean().reset_index()
            yerr = np.vstack([auc["auc"] - auc["auc_lo"], auc["auc_hi"] - auc["auc"]]).clip(min=0)
            errorbar(axes[0], axis.x(auc["epsilon"]), auc["auc"], yerr, label, _eps_max=float(auc["epsilon"].max()), **style)
            errorbar_by_budget(axes[1], axis, part, "tpr_low", label, **style)
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
        legend(ax)
    return save(fig, path)


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
        title = "ε = ∞ (non-private)" if math.isinf(eps) else f"ε = {format_epsilon(eps)}"
        ax.set_title(plain_text(f"{sweep}: {title}" if len(sweeps) > 1 else title), fontsize=9)
        ax.set_xlabel("false positive rate (log)")
        ax.set_ylabel("true positive rate (log)")
        legend(ax, loc="lower right")
    fig.subplots_adjust(wspace=0.35, hspace=0.45)
    return save(fig, path)


def _sweep_order(curves: pd.DataFrame):
    order = {s: i for i, s in enumerate(dict.fromkeys(curves["sweep"]))}
    return lambda col: col.map(order) if col.name == "sweep" else col


def _roc_floor(curves: pd.DataFrame) -> float:
    """Lower end of the log axes: the smallest positive FPR of any curve, at most 1e-3."""
    smallest = [min((f for f in fpr if f > 0), default=1e-3) for fpr in curves["fpr"]]
    return float(min([1e-3, *smallest]))




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
        errorbar_by_budget(ax, axis, part, "epsilon_spent", series_label(sweeps, sweep, "accountant ε (upper bound)"),
                            color="black", **series_style(i))
        for j, (bound, ceiling, label) in enumerate(bounds):
            colour = plt.cm.tab10(j % 10)
            if bound in part and part[bound].notna().any():
                errorbar_by_budget(ax, axis, part, bound, series_label(sweeps, sweep, label), color=colour, **series_style(i))
            if ceiling in part and part[ceiling].notna().any():
                errorbar_by_budget(ax, axis, part, ceiling, series_label(sweeps, sweep, f"ceiling, {label}"), color=colour,
                                    linestyle=":", marker="x", alpha=0.7)
    return save_epsilon_plot(fig, ax, axis, "White-box audit: empirical ε vs the accountant's ε and the idealised ceiling", path)


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
        style = series_style(i)
        for name in names:
            part = attacks[(attacks["sweep"] == sweep) & (attacks["attack"] == name)]
            label = series_label(sweeps, sweep, f"{name}: ReRo@η")
            errorbar_by_budget(ax, axis, part, "rero_best", label, color=colours[name], **style)
        part = runs[runs["sweep"] == sweep]
        for column, name, colour in (
            ("rero_bound_train", "ReRo bound γ, κ = 1/N (train set prior)", "crimson"),
            ("prior_aware_success", "prior-aware attack success", "tab:purple"),
            ("rero_bound_prior", "ReRo bound γ, κ = 1/n (candidate prior)", "black"),
            ("prior_aware_chance", "chance for the prior-aware attack (1/n)", "0.5"),
        ):
            if column in part and part[column].notna().any():
                lw = 2.0 if column.startswith("rero_bound") else 1.2
                errorbar_by_budget(ax, axis, part, column, series_label(sweeps, sweep, name), color=colour, linewidth=lw,
                                    **{**style, "linestyle": ":" if column.endswith("chance") else style["linestyle"]})
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel("success probability / share of images")
    ax.set_title("Reconstruction success vs the ReRo bound")
    axis.style(ax)
    legend(ax, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return save(fig, path)

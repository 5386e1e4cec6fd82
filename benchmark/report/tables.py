"""The report's tables, each a (header, rows) pair of plain strings (the document escapes them).

The headline table reads the sweep table's columns (records.run_frame) and never recomputes
them; its attack columns come per family (:data:`FAMILY_COLUMNS`), one per attack where a family
has several results side by side (the audits). The other tables read the tidy frames of
records.py or the records themselves for what the summary does not hold (intervals, settings).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .formatting import cell, epsilon_label, fmt, fmt_ci, fmt_percent, fmt_signed, join
from .records import Sweep, audit_column, specs
from .verdicts import lowest_fpr_level, mean_at

Table = tuple[list[str], list[list[str]]]
TOP_VULNERABLE = 5


# ============================================================================= headline
@dataclass(frozen=True)
class Column:
    header: str
    render: Callable[[pd.DataFrame, float, pd.DataFrame], str]  # (runs at ε, ε, all runs) -> cell
    needs: str | None = None  # the run column that must have a value somewhere, else the column is left out


def _value(column: str) -> Callable[[pd.DataFrame, float, pd.DataFrame], str]:
    return lambda at, eps, runs: cell(at[column])


def _change(column: str) -> Callable[[pd.DataFrame, float, pd.DataFrame], str]:
    def render(at: pd.DataFrame, eps: float, runs: pd.DataFrame) -> str:
        if math.isinf(eps):
            return "reference"
        return fmt_signed(float(at[column].mean()) - mean_at(runs, math.inf, column))
    return render


def _membership_columns(sweep: Sweep, runs: pd.DataFrame) -> list[Column]:
    tpr = f"best TPR at {fmt_percent(lowest_fpr_level(sweep))} FPR" if sweep.attacks_of("membership") else "best TPR"
    return [
        Column("best membership AUC", _value("mia_best_auc"), "mia_best_auc"),
        Column(tpr, _value("mia_best_tpr_at_0.1%fpr"), "mia_best_tpr_at_0.1%fpr"),
        Column("empirical ε lower bound (membership)", _value("mia_best_epsilon_lb"), "mia_best_epsilon_lb"),
    ]


def _audit_columns(sweep: Sweep, runs: pd.DataFrame) -> list[Column]:
    """One column per audit-family attack: its ε lower bound (the largest, where it computes several)."""
    return [Column(f"ε lower bound ({spec.label})", _value(column), column)
            for spec in specs("audit") for column in [audit_column(spec.name, runs.columns)]]


def _reconstruction_columns(sweep: Sweep, runs: pd.DataFrame) -> list[Column]:
    return [Column("reconstruction ReRo@η (best attack)", _value("recon_best_rero"), "recon_best_rero"),
            Column("ReRo bound γ (κ = 1/N)", _value("rero_bound_train"), "rero_bound_train")]


def _prior_aware_columns(sweep: Sweep, runs: pd.DataFrame) -> list[Column]:
    return [Column("prior-aware success", _value("prior_aware_success"), "prior_aware_success"),
            Column("ReRo bound γ (κ = 1/n)", _value("rero_bound_prior"), "rero_bound_prior")]


# The headline's attack columns per family (benchmark/registry.py FAMILIES order), beside their bounds.
FAMILY_COLUMNS: dict[str, Callable[[Sweep, pd.DataFrame], list[Column]]] = {
    "membership": _membership_columns, "audit": _audit_columns,
    "reconstruction": _reconstruction_columns, "prior_aware": _prior_aware_columns,
}


def headline_columns(sweep: Sweep, runs: pd.DataFrame, evidence: dict[float, list[str]]) -> list[Column]:
    columns = [
        Column("ε", lambda at, eps, runs: epsilon_label(eps)),
        Column("accountant ε spent", _value("epsilon_spent")),
        Column("σ", _value("sigma")),
        Column("test accuracy", _value("test_accuracy")),
        Column("test AUROC", _value("test_auroc")),
    ]
    if np.isinf(runs["epsilon"]).any():
        columns += [Column("Δ accuracy vs non-private", _change("test_accuracy")),
                    Column("Δ AUROC vs non-private", _change("test_auroc"))]
    for family_columns in FAMILY_COLUMNS.values():
        columns += family_columns(sweep, runs)
    if sweep.attacked:  # a verdict needs an attack: a sweep without one has no "no" to give
        columns.append(Column("attack beats chance",
                              lambda at, eps, runs: f"yes ({len(evidence[eps])})" if evidence[eps] else "no"))
    columns.append(Column("runs", lambda at, eps, runs: str(len(at))))
    return [c for c in columns if c.needs is None or (c.needs in runs and runs[c.needs].notna().any())]


def headline_table(sweep: Sweep, runs: pd.DataFrame, evidence: dict[float, list[str]]) -> Table:
    """One row per budget: utility, change from non-private, attack success beside the bounds."""
    columns = headline_columns(sweep, runs, evidence)
    rows = [[c.render(runs[runs["epsilon"] == eps], eps, runs) for c in columns] for eps in sweep.budgets]
    return [c.header for c in columns], rows


def comparison_table(sweeps: list[Sweep], frames: dict[str, pd.DataFrame],
                     evidence: dict[str, dict[float, list[str]]]) -> Table:
    """Side by side: one row per budget, accuracy, best membership AUC and the chance verdict per sweep."""
    header = ["ε"]
    for s in sweeps:
        header += [f"{s.label}: test accuracy", f"{s.label}: best membership AUC", f"{s.label}: attack beats chance"]
    rows = []
    for eps in sorted({e for s in sweeps for e in s.budgets}):
        row = [epsilon_label(eps)]
        for s in sweeps:
            at = frames[s.label][frames[s.label]["epsilon"] == eps]
            found = evidence[s.label].get(eps) if s.attacked else None
            verdict = "–" if found is None else (f"yes ({len(found)})" if found else "no")
            row += [cell(at["test_accuracy"]), cell(at["mia_best_auc"]), verdict]
        rows.append(row)
    return header, rows


# ============================================================================= membership
def membership_detail_table(attacks: pd.DataFrame) -> Table:
    """Every membership variant of every run with its intervals (rows of records.membership_frame)."""
    levels = attacks["fpr_levels"].iloc[0]
    header = ["ε", "seed", "attack", "AUC [CI]"] + [f"TPR at {fmt_percent(f)} FPR [CI]" for f in levels] + [
        "empirical ε lower bound", "largest possible lower bound"]
    rows = []
    for a in attacks.itertuples():
        tprs = [fmt_ci(t, lo, hi) for t, (lo, hi) in zip(a.tpr_at_fpr, a.tpr_at_fpr_ci)]
        rows.append([epsilon_label(a.epsilon), str(a.seed), a.attack, fmt_ci(a.auc, a.auc_lo, a.auc_hi), *tprs,
                     fmt(a.epsilon_lb), fmt(a.epsilon_ceiling)])
    return header, rows


# ============================================================================= per-sample risk
def per_class_table(classes: pd.DataFrame) -> Table:
    header = ["ε", "class", "test accuracy", "mean per-sample membership AUC"]
    rows = []
    for (eps, name), group in classes.groupby(["epsilon", "class_name"], sort=True):
        rows.append([epsilon_label(eps), str(name), cell(group["accuracy"]), cell(group["risk"])])
    return header, rows


def vulnerable_table(risk: pd.DataFrame) -> Table:
    """The most exposed training images per budget (mean per-sample AUC over seeds, then score gap)."""
    grouped = "group" in risk
    header = ["ε", "rank", "training image (index in the training split)", "class", *(["subgroup"] if grouped else []),
              "per-sample AUC", "mean score gap (in − out)", "times in / out"]
    rows = []
    keys = ["sample", "class_name", *(["group"] if grouped else [])]
    for eps, part in risk.groupby("epsilon", sort=True):
        per_image = part.groupby(keys).agg(
            auc=("auc", "mean"), gap=("gap", "mean"), n_in=("n_in", "sum"), n_out=("n_out", "sum")).reset_index()
        top = per_image.sort_values(["auc", "gap"], ascending=False).head(TOP_VULNERABLE)
        rows += [[epsilon_label(eps), str(rank), str(t.sample), str(t.class_name), *([str(t.group)] if grouped else []),
                  fmt(t.auc), fmt(t.gap), f"{t.n_in} / {t.n_out}"] for rank, t in enumerate(top.itertuples(), 1)]
    return header, rows


def perfect_auc_table(risk: pd.DataFrame) -> Table:
    """Images with per-sample AUC 1 in a run, observed against the number expected with no leakage."""
    header = ["ε", "images with per-sample AUC = 1 (mean per run)", "expected by chance alone", "images per run"]
    rows = []
    for eps, group in risk.groupby("epsilon", sort=True):
        per_run = group.groupby("seed").agg(observed=("auc", lambda a: float((a == 1).sum())),
                                            expected=("p_perfect", "sum"), n=("sample", "count"))
        rows.append([epsilon_label(eps), f"{per_run['observed'].mean():.1f}", f"{per_run['expected'].mean():.1f}",
                     join(sorted(set(per_run["n"])))])
    return header, rows


# ============================================================================= reconstruction
def reconstruction_setting_table(recon: pd.DataFrame) -> Table:
    """What each reconstruction attack attacked: its setting, with the run's σ and clip norm C, per budget.

    Rows of records.reconstruction_frame; seeds with the same setting share a row.
    """
    header = ["ε", "attack", "model state", "batch size", "images", "σ", "clip norm C", "seeds"]
    text = {"model_state": str, "batch_size": lambda v: str(int(v)), "n_images": lambda v: str(int(v)), "sigma": fmt,
            "max_grad_norm": fmt}
    shown = recon.assign(**{c: recon[c].map(lambda v, f=f: "–" if pd.isna(v) else f(v)) for c, f in text.items()})
    rows = []
    for (eps, _, attack, *values), group in shown.groupby(["epsilon", "key", "attack", *text], sort=False):
        rows.append([epsilon_label(eps), str(attack), *values, join(sorted(group["seed"]))])
    return header, rows


def reconstruction_attack_table(recon: pd.DataFrame) -> Table:
    """Each reconstruction attack of each run: image similarity and ReRo@η (rows of records.reconstruction_frame)."""
    header = ["ε", "seed", "attack", "PSNR mean / max (dB)", "SSIM mean / max", "MSE mean", "NCC mean",
              "ReRo@η PSNR", "ReRo@η SSIM", "η (PSNR dB, SSIM)"]
    rows = [[epsilon_label(a.epsilon), str(a.seed), a.attack, f"{fmt(a.psnr_mean)} / {fmt(a.psnr_max)}",
             f"{fmt(a.ssim_mean)} / {fmt(a.ssim_max)}", fmt(a.mse_mean), fmt(a.ncc_mean),
             fmt(a.shares.get("psnr")), fmt(a.shares.get("ssim")),
             f"{a.eta.get('psnr', math.nan):g} dB, {a.eta.get('ssim', math.nan):g}"]
            for a in recon.itertuples()]
    return header, rows


def prior_aware_table(sweep: Sweep) -> Table:
    """Each prior-aware attack of each run: success interval, chance and the ReRo bound γ at κ = 1/n.

    An 'attack' column is added when the sweep holds more than one prior-aware attack.
    """
    ran = sweep.attacks_of("prior_aware")
    header = ["ε", "seed", "prior-aware success [CI]", "chance 1/n", "ReRo bound γ (κ = 1/n)", "candidates n", "trials"]
    rows = []
    for r in sweep.runs:
        for spec in ran:
            p = r.results("prior_aware").get(spec.name)
            if p:
                rows.append([epsilon_label(r.epsilon), str(r.seed), *([spec.label] if len(ran) > 1 else []),
                             fmt_ci(p["success_rate"], p["ci_low"], p["ci_high"]), fmt(p["chance"]),
                             fmt(float(r.summary.get("rero_bound_prior", math.nan))),
                             str(p.get("n_candidates", "–")), str(p.get("trials", "–"))])
    return (header[:2] + ["attack"] + header[2:] if len(ran) > 1 else header), rows


BOUNDS_CAPTION = (
    "ReRo bounds (Hayes, Mahloujifar & Balle 2023): the most any reconstruction attack can succeed, for a prior "
    "whose most likely outcome has probability κ. 'Whole run': an adversary who sees all T subsampled steps (the "
    "threat model of the prior-aware attack and of the DP guarantee). 'One client step': a single unsubsampled "
    "update (q = 1, T = 1, γ = Φ(Φ⁻¹(κ) + 1/σ)), the threat model of gradient inversion and of the imprint attack, "
    "which attack one client's update")


def bounds_table(sweep: Sweep, runs: pd.DataFrame) -> Table:
    """The ReRo bounds per budget: κ from the records' ``bounds``, γ from the summary columns."""
    header = ["ε", "σ", "κ = 1/N (training set)", "ReRo bound γ, whole run", "κ = 1/n (candidates)",
              "ReRo bound γ, whole run", "ReRo bound γ, one client step (κ = 1/N)"]
    rows = []
    for eps in sweep.budgets:
        at = runs[runs["epsilon"] == eps].sort_values("seed")
        kappas = {prior: pd.Series([float(((r.record.get("bounds") or {}).get(prior) or {}).get("kappa", math.nan))
                                    for r in sweep.at(eps)]) for prior in ("rero_train", "rero_prior")}
        values = [kappas["rero_train"], at["rero_bound_train"], kappas["rero_prior"], at["rero_bound_prior"],
                  at["rero_bound_step"]]
        if any(v.notna().any() for v in values):
            rows.append([epsilon_label(eps), cell(at["sigma"]), *map(cell, values)])
    return header, rows

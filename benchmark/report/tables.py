"""The report's tables, each a (header, rows) pair of plain strings (the document escapes them).

The headline tables (verdicts per threat model, utility, attack numbers) read the sweep table's
columns (records.run_frame) and never recompute them; one row per point of the sweep (each DP
budget, then each non-private reference). The attack columns come from each family
(``Family.headline_columns``, benchmark/families), one per attack where a family has several
results side by side (the audits). The families' own tables live with them.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pandas as pd

from ..families import ordered
from ..threats import NOT_RUN, WORST_CASE, ThreatModel
from .columns import Column, shown, value
from .formatting import cell, epsilon_label, fmt, fmt_signed, join
from .records import Point, Sweep, baseline_reference, point_rows, reference_label, task_of
from .verdicts import mean_at, point_label, point_verdict, threats_run, tightness_text, worst_case_ran

Table = tuple[list[str], list[list[str]]]
TOP_VULNERABLE = 5


# ============================================================================= headline
# The headline is three tables, each narrow enough for a 1280 px window: the verdict per threat model,
# utility against the non-private references, and the attacks' numbers beside their bounds.
def _change(column: str) -> Callable[[pd.DataFrame, Point, pd.DataFrame], str]:
    def render(at: pd.DataFrame, point: Point, runs: pd.DataFrame) -> str:
        if math.isinf(point.epsilon) and point.reference == baseline_reference(runs):
            return "reference"
        return fmt_signed(float(at[column].mean()) - mean_at(runs, math.inf, column))
    return render


def _point_column() -> Column:
    return Column("ε", lambda at, point, runs: point_label(point))


def _render(sweep: Sweep, runs: pd.DataFrame, columns: list[Column]) -> Table:
    columns = [c for c in columns if shown(c, runs)]
    rows = [[c.render(point_rows(runs, p), p, runs) for c in columns] for p in sweep.points]
    return [c.header for c in columns], rows


def _verdict_cell(threat: ThreatModel) -> Callable[[pd.DataFrame, Point, pd.DataFrame], str]:
    def render(at: pd.DataFrame, point: Point, runs: pd.DataFrame) -> str:
        v = point_verdict(at, threat)
        return v.value if v.value == NOT_RUN else f"{v.value}: {v.text}"
    return render


def _worst_case_cell(at: pd.DataFrame, point: Point, runs: pd.DataFrame) -> str:
    lb = at["worst_case_epsilon_lb"].dropna()
    if lb.empty:
        return "not run"
    spent = at["epsilon_spent"].mean()
    if not math.isfinite(spent):
        return f"ε ≥ {cell(lb)} (no DP: no accountant ε)"
    return f"ε ≥ {cell(lb)} of {fmt(spent)} ({tightness_text(float(lb.mean()) / spent)} tight)"


def verdict_table(sweep: Sweep, runs: pd.DataFrame) -> Table:
    """One row per point, one column per threat model that ran: its verdict and the result that decided it."""
    columns = [_point_column()] + [Column(t.label, _verdict_cell(t)) for t in threats_run(runs)]
    if worst_case_ran(runs):
        columns.append(Column(f"{WORST_CASE.label}: empirical ε vs accountant ε", _worst_case_cell))
    return _render(sweep, runs, columns)


def utility_table(sweep: Sweep, runs: pd.DataFrame) -> Table:
    """One row per point: utility, and its change from the baseline non-private reference."""
    task = task_of(runs)
    first, second = f"test_{task.headline}", f"test_{task.second}"
    columns = [
        _point_column(),
        Column("accountant ε spent", value("epsilon_spent")),
        Column("σ", value("sigma")),
        Column(task.headline_label, value(first)),
        Column(task.second_label, value(second)),
    ]
    if task.segmentation:  # Dice of each foreground class
        columns += [Column(f"test Dice: {c[len('test_dice_'):]}", value(c), c) for c in runs.columns
                    if c.startswith("test_dice_") and c != "test_dice_background"]
    columns.append(Column(f"training {task.headline_label[len('test '):]}", value(f"train_{task.headline}"),
                          f"train_{task.headline}"))
    baseline = baseline_reference(runs)
    if baseline is not None:
        against = reference_label(baseline) if baseline else "non-private"
        columns += [Column(f"Δ {task.headline_label[len('test '):]} vs {against}", _change(first)),
                    Column(f"Δ {task.second_label[len('test '):]} vs {against}", _change(second))]
    columns.append(Column("runs", lambda at, point, runs: str(len(at))))
    return _render(sweep, runs, columns)


def attack_table(sweep: Sweep, runs: pd.DataFrame) -> Table:
    """One row per point: each family's strongest results beside their bounds."""
    columns = [_point_column()]
    for family in ordered():
        columns += family.headline_columns(sweep, runs)
    return _render(sweep, runs, columns)


def headline_table(sweep: Sweep, runs: pd.DataFrame, evidence=None) -> Table:
    """The utility table (kept under its old name for callers that read one headline table)."""
    return utility_table(sweep, runs)


def comparison_table(sweeps: list[Sweep], frames: dict[str, pd.DataFrame]) -> Table:
    """Side by side: one row per point, accuracy and the verdict per realistic threat model of each sweep."""
    header = ["ε"]
    threats = {s.label: threats_run(frames[s.label]) for s in sweeps}
    for s in sweeps:
        header += [f"{s.label}: {task_of(frames[s.label]).headline_label}"] + [f"{s.label}: {t.label}" for t in threats[s.label]]
    rows = []
    for point in sorted({p for s in sweeps for p in s.points}, key=lambda p: p.order):
        row = [point_label(point)]
        for s in sweeps:
            at = point_rows(frames[s.label], point)
            row += [cell(at[f"test_{task_of(frames[s.label]).headline}"])] + [point_verdict(at, t).value if len(at) else "–" for t in threats[s.label]]
        rows.append(row)
    return header, rows


# ============================================================================= per-sample risk
def per_class_table(classes: pd.DataFrame) -> Table:
    header = ["ε", "class", "test accuracy", "mean per-sample membership AUC"]
    rows = []
    for (eps, point, name), group in classes.groupby(["epsilon", "point", "class_name"], sort=True):
        rows.append([point, str(name), cell(group["accuracy"]), cell(group["risk"])])
    return header, rows


def vulnerable_table(risk: pd.DataFrame) -> Table:
    """The most exposed training images per budget (mean per-sample AUC over seeds, then score gap)."""
    grouped = "group" in risk
    header = ["ε", "rank", "training image (index in the training split)", "class", *(["subgroup"] if grouped else []),
              "per-sample AUC", "mean score gap (in − out)", "times in / out"]
    rows = []
    keys = ["sample", "class_name", *(["group"] if grouped else [])]
    for (eps, point), part in risk.groupby(["epsilon", "point"], sort=True):
        per_image = part.groupby(keys).agg(
            auc=("auc", "mean"), gap=("gap", "mean"), n_in=("n_in", "sum"), n_out=("n_out", "sum")).reset_index()
        top = per_image.sort_values(["auc", "gap"], ascending=False).head(TOP_VULNERABLE)
        rows += [[point, str(rank), str(t.sample), str(t.class_name), *([str(t.group)] if grouped else []),
                  fmt(t.auc), fmt(t.gap), f"{t.n_in} / {t.n_out}"] for rank, t in enumerate(top.itertuples(), 1)]
    return header, rows


def perfect_auc_table(risk: pd.DataFrame) -> Table:
    """Images with per-sample AUC 1 in a run, observed against the number expected with no leakage."""
    header = ["ε", "images with per-sample AUC = 1 (mean per run)", "expected by chance alone", "images per run"]
    rows = []
    for (eps, point), group in risk.groupby(["epsilon", "point"], sort=True):
        per_run = group.groupby("seed").agg(observed=("auc", lambda a: float((a == 1).sum())),
                                            expected=("p_perfect", "sum"), n=("sample", "count"))
        rows.append([point, f"{per_run['observed'].mean():.1f}", f"{per_run['expected'].mean():.1f}",
                     join(sorted(set(per_run["n"])))])
    return header, rows


# ============================================================================= ReRo bounds
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

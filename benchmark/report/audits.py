"""The audits with several bounds (the white-box canary audit): each observation model and analysis
beside the accountant's ε and the ceiling on the idealised mechanism.

Reads the sweep table's columns only (benchmark/record.py): ``<attack>_<observation>_<analysis>_epsilon_lb``
and ``<attack>_<observation>_<analysis>_ceiling`` for each audit-family attack that records them.
"""

from __future__ import annotations

import math

import pandas as pd

from .. import figures
from ..record import BOUND_SUFFIX
from .formatting import cell, epsilon_label, fmt
from .records import Sweep, specs

OBSERVATION_TEXT = {"all_iterates": "all iterates", "final_model": "final model"}
ANALYSIS_TEXT = {"steinke": "Steinke et al. (binomial)", "fdp_dpsgd": "f-DP, DP-SGD curves", "fdp_approx_dp": "f-DP, (ε, δ) claims"}


def bound_series(runs: pd.DataFrame) -> list[tuple[str, str, str]]:
    """(bound column, ceiling column, label) of every audit with several bounds, in column order."""
    out = []
    for spec in specs("audit"):
        prefix = f"{spec.name}_"
        for column in runs.columns:
            if not (column.startswith(prefix) and column.endswith(BOUND_SUFFIX)) or column == f"{spec.name}_best{BOUND_SUFFIX}":
                continue
            key = column[len(prefix):-len(BOUND_SUFFIX)]
            observation = next((o for o in OBSERVATION_TEXT if key.startswith(o + "_")), None)
            if observation is None or not runs[column].notna().any():
                continue
            analysis = key[len(observation) + 1:]
            label = f"{spec.label}: {OBSERVATION_TEXT[observation]}, {ANALYSIS_TEXT.get(analysis, analysis)}"
            out.append((column, f"{prefix}{key}_ceiling", label))
    return out


def bound_table(sweep: Sweep, runs: pd.DataFrame, series: list[tuple[str, str, str]]) -> tuple[list[str], list[list[str]]]:
    """One row per budget: the accountant's ε, then each bound with its ceiling and its tightness."""
    header = ["ε", "accountant ε"] + [label + " [ceiling; ÷ ceiling, ÷ accountant]" for _, _, label in series]
    rows = []
    for eps in sweep.budgets:
        at = runs[runs["epsilon"] == eps]
        row = [epsilon_label(eps), cell(at["epsilon_spent"])]
        for bound, ceiling, _ in series:
            b, c, a = (float(at[k].mean()) if k in at else math.nan for k in (bound, ceiling, "epsilon_spent"))
            ratios = f"{fmt(b / c) if c > 0 else '–'}, {fmt(b / a) if math.isfinite(a) and a > 0 else '–'}"
            row.append(f"{cell(at[bound])} [{fmt(c)}; {ratios}]")
        rows.append(row)
    return header, rows


def write_audit_bounds(ctx) -> None:
    """The white-box audit's subsection of the membership section: text, table per sweep, figure."""
    runs = ctx.all_runs
    series = bound_series(runs)
    if not series:
        return
    ctx.doc.heading("White-box audit of the training, beside the black-box attacks", 3)
    ctx.doc.paragraph(
        "The attacks above see only a trained model's outputs. The white-box audit takes the position of the DP "
        "guarantee itself: gradient canaries join the target's own training, each with probability ½, are sampled, "
        "clipped and noised like every example, and the auditor sees every noisy update (all iterates, as a "
        "federated server does) or only the final model. Each analysis gives an ε lower bound at the run's per-bound "
        "level; the ceiling is what the same analysis reaches on the idealised mechanism with the run's σ, q, T and "
        "canary count, so bound ÷ ceiling measures the audit's tightness and bound ÷ accountant ε the gap that a "
        "stronger attack could still close. The f-DP test against DP-SGD's curves bounds ε for a training that is "
        "DP-SGD at some noise level, which is the claim being audited; Steinke et al.'s test holds for any "
        "(ε, δ)-DP training.")
    for sweep in ctx.sweeps:
        ctx.sub(sweep)
        ctx.doc.table(*bound_table(sweep, ctx.runs[sweep.label], series))
    ctx.doc.figure(figures.whitebox(runs, series, ctx.fig_path("whitebox_vs_accountant_epsilon.png")),
                   "White-box audit: each analysis' ε lower bound (solid) against the target ε, with the accountant's ε "
                   "(black) and the ceiling on the idealised mechanism (dotted, same colour); ∞ budgets are drawn "
                   "apart. Points: means over seeds.")

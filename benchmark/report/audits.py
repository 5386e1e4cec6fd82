"""The audits with several bounds (the white-box canary audit): each observation model and analysis
beside the accountant's ε and the ceiling on the idealised mechanism.

Reads the sweep table's columns only (benchmark/record.py): ``<attack>_<observation>_<analysis>_epsilon_lb``
and ``<attack>_<observation>_<analysis>_ceiling`` for each audit-family attack that records them, and
where present ``…_ceiling_sd`` and ``…_ceiling_runs`` (the ceiling's spread over the idealised runs and
their number), ``…_at_limit`` and ``…_ceiling_at_limit`` (bounds that are limits of the analysis).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from medprivbench.attacks.canary_audit import GUESS_SHARES
from medprivbench.attacks.one_run_analysis import OBSERVATION_LABELS

from .. import figures
from ..record import BOUND_SUFFIX
from .formatting import cell, epsilon_label, fmt
from .records import Sweep, specs

OBSERVATION_TEXT = dict(OBSERVATION_LABELS)  # record key -> what the auditor observed, in words
LIMIT_MARK = "†"
LIMIT_TEXT = (
    f"{LIMIT_MARK} A limit of the analysis, not a measurement: on a bound, every guess was right (the largest bound "
    "that many guesses over the canaries allow) or the σ′ search of the DP-SGD test stopped at the edge of its range, "
    "in at least one seed; the training may leak more than the number shows. On a ceiling, at least one idealised run "
    "was at such a limit.")
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


def _limit_column(bound: str) -> str:
    """``…_at_limit`` of a bound column ``…_epsilon_lb``."""
    return bound[:-len(BOUND_SUFFIX)] + "_at_limit"


def _mark(at: pd.DataFrame, column: str) -> str:
    """The limit mark where any seed's value in ``column`` (a 0/1 flag or a share) is above 0."""
    return f" {LIMIT_MARK}" if column in at and (at[column].dropna() > 0).any() else ""


def _pooled_sd(values: pd.Series) -> float:
    """The ceilings' spread over idealised runs, pooled over seeds (root mean square of the sds)."""
    values = values.dropna().astype(float)
    return float(np.sqrt(np.mean(values**2))) if len(values) else math.nan


def ceiling_cell(at: pd.DataFrame, ceiling: str) -> str:
    """'mean ± sd' of a ceiling: its mean over seeds, ± its spread over the idealised runs; the limit mark."""
    c = float(at[ceiling].mean()) if ceiling in at else math.nan
    sd = _pooled_sd(at[f"{ceiling}_sd"]) if f"{ceiling}_sd" in at else math.nan
    text = f"{fmt(c)} ± {fmt(sd)}" if math.isfinite(sd) else fmt(c)
    return text + _mark(at, f"{ceiling}_at_limit")


def bound_table(sweep: Sweep, runs: pd.DataFrame, series: list[tuple[str, str, str]]) -> tuple[list[str], list[list[str]]]:
    """One row per budget: the accountant's ε, then each bound with its ceiling ± sd and its ratios."""
    header = ["ε", "accountant ε"] + [label + " [ceiling ± sd; ÷ ceiling, ÷ accountant]" for _, _, label in series]
    rows = []
    for eps in sweep.budgets:
        at = runs[runs["epsilon"] == eps]
        row = [epsilon_label(eps), cell(at["epsilon_spent"])]
        for bound, ceiling, _ in series:
            b, c, a = (float(at[k].mean()) if k in at else math.nan for k in (bound, ceiling, "epsilon_spent"))
            ratios = f"{fmt(b / c) if c > 0 else '–'}, {fmt(b / a) if math.isfinite(a) and a > 0 else '–'}"
            row.append(f"{cell(at[bound])}{_mark(at, _limit_column(bound))} [{ceiling_cell(at, ceiling)}; {ratios}]")
        rows.append(row)
    return header, rows


def ceiling_runs_text(runs: pd.DataFrame, series: list[tuple[str, str, str]]) -> str:
    """How many idealised runs each ceiling is the mean of, in words ('3', '3 or 5', or 'several')."""
    counts = sorted({int(n) for _, ceiling, _ in series if f"{ceiling}_runs" in runs
                     for n in runs[f"{ceiling}_runs"].dropna()})
    if not counts:
        return "several"
    return " or ".join(str(n) for n in counts)


def ceiling_text(runs: pd.DataFrame, series: list[tuple[str, str, str]]) -> str:
    """What the ceiling is and how to read a bound's share of it."""
    return (
        f"The ceiling is the mean over {ceiling_runs_text(runs, series)} idealised run(s) of the analysis at the guess "
        f"pair that did best on those same runs, the best of {len(GUESS_SHARES)} candidate pairs, so it is biased "
        "upward; ± is its standard deviation over those runs (pooled over seeds; none with a single run). A bound's "
        "share of the ceiling ('÷ ceiling') must be read against that spread, not as an exact percentage.")


def limit_rows(sweep: Sweep, runs: pd.DataFrame, series: list[tuple[str, str, str]]) -> bool:
    """Whether any bound or ceiling of the sweep's table carries the limit mark."""
    for eps in sweep.budgets:
        at = runs[runs["epsilon"] == eps]
        if any(_mark(at, _limit_column(bound)) or _mark(at, f"{ceiling}_at_limit") for bound, ceiling, _ in series):
            return True
    return False


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
        "federated server does) or only the sum of the updates (the final model of plain SGD at a constant learning "
        "rate; the recipe's momentum and learning-rate schedule would weigh the steps differently, so this is not "
        "the final model the recipe trains). Each analysis gives an ε lower bound at the run's per-bound level; the "
        "ceiling is what the same analysis reaches on the idealised mechanism with the run's σ, q, T and canary "
        "count. With all iterates the canary score is already the optimal (likelihood-ratio) test, so the ceiling "
        "is the most that one run with this many canaries can show at level α: a ceiling below the accountant's ε "
        "is a limit of the one-run audit, not a gap left for a stronger attack. Bound ÷ ceiling is how close the "
        "audit comes to that limit; bound ÷ accountant ε is to be compared with ceiling ÷ accountant ε, not with 1.")
    ctx.doc.paragraph(
        "What each number bounds. Steinke et al.'s test gives a lower bound on ε for any (ε, δ)-DP training. The "
        "f-DP test against DP-SGD's curves rejects the claimed noise multiplier σ for any training whatever it is "
        "(as a test of the claim it needs no assumption), but the ε it reports is a lower bound on ε only for a "
        "training that is DP-SGD at the claimed q and T (at some noise level); a training of another shape could "
        "fail that curve with a smaller ε. " + ceiling_text(runs, series))
    marked = False
    for sweep in ctx.sweeps:
        ctx.sub(sweep)
        ctx.doc.table(*bound_table(sweep, ctx.runs[sweep.label], series))
        if limit_rows(sweep, ctx.runs[sweep.label], series):
            ctx.doc.paragraph(LIMIT_TEXT)
            marked = True
    ctx.doc.figure(figures.whitebox(runs, series, ctx.fig_path("whitebox_vs_accountant_epsilon.png")),
                   "White-box audit: each analysis' ε lower bound (solid) against the target ε, with the accountant's ε "
                   "(black) and the ceiling on the idealised mechanism (dotted, same colour; a mean over few idealised "
                   "runs, biased upward); ∞ budgets are drawn apart. Points: means over seeds."
                   + (f" Values marked {LIMIT_MARK} in the tables are limits of the analysis, not measurements."
                      if marked else ""))

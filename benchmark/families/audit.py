"""The audit family: canary audits that give ε lower bounds (the worst-case audit's attacks).

Two kinds of result: :class:`AuditResult`, one bound from canaries in an extra training run (the
one-run audit), and :class:`WhiteboxResult`, gradient canaries in the target's own training,
with one bound per observation model and analysis and the ceiling each analysis reaches on the
idealised mechanism (benchmark/audit_run.py). The family's chance rule (used only to describe an
audit: the worst-case audit is never given a verdict, benchmark/threats.py): a bound above 0.

Its report section is the white-box audit's table and figure: each observation and analysis
beside the accountant's ε and its ceiling, read from the structured results (which bounds exist)
and from the sweep table's columns (their values).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from medprivbench.attacks.canary_audit import GUESS_SHARES, at_limit
from medprivbench.attacks.one_run_analysis import OBSERVATION_LABELS

from ..numbers import fmt
from .base import AttackResult, Family, Finding, Structured, register_family, typed_dict


@dataclass(frozen=True, kw_only=True)
class AuditResult(AttackResult):
    """An audit's ε lower bound and its canary count m (the one-run audit also records its guesses)."""

    epsilon_lb: float
    m: int | None = None

    def columns(self, name: str) -> dict:
        return {f"{name}_epsilon_lb": self.epsilon_lb}

    def headline_column(self, name: str) -> str:
        """The sweep table's column of the audit's (largest) ε lower bound."""
        return f"{name}_epsilon_lb"

    def lower_bounds(self) -> list[float]:
        return [self.epsilon_lb]


@dataclass(frozen=True, kw_only=True)
class Observation(Structured):
    """The white-box audit's result for one observation model (all iterates, or the sum of updates)."""

    k_plus: int
    k_minus: int
    ceiling: dict  # analysis -> mean bound on the idealised runs
    bounds: dict  # analysis -> {epsilon_lb, r, v, …}
    ceiling_sd: dict = field(default_factory=dict)
    ceiling_at_limit: dict = field(default_factory=dict)
    ceiling_runs: float = math.nan


@dataclass(frozen=True, kw_only=True)
class WhiteboxResult(AuditResult):
    observations: dict  # observation key -> Observation

    NESTED = {"observations": typed_dict(Observation)}

    @staticmethod
    def prefix(name: str, observation: str, analysis: str) -> str:
        """The sweep table's column prefix of one bound: ``<attack>_<observation>_<analysis>``."""
        return f"{name}_{observation}_{analysis}"

    def series(self, name: str) -> list[tuple[str, str, str]]:
        """(column prefix, observation, analysis) of every bound, in the table's column order."""
        return [(self.prefix(name, o, a), o, a) for o, found in self.observations.items() for a in found.bounds]

    def columns(self, name: str) -> dict:
        """Per observation and analysis: the bound, whether it is a limit of the analysis, the ceiling,
        its spread and run count, and the share of idealised runs at a limit (NaN where a record
        predates them); then the best bound."""
        row = {}
        for prefix, observation, analysis in self.series(name):
            found, bound = self.observations[observation], self.observations[observation].bounds[analysis]
            row[f"{prefix}_epsilon_lb"] = bound["epsilon_lb"]
            row[f"{prefix}_at_limit"] = float(at_limit(bound)) if "v" in bound and "r" in bound else math.nan
            row[f"{prefix}_ceiling"] = found.ceiling[analysis]
            row[f"{prefix}_ceiling_sd"] = (found.ceiling_sd or {}).get(analysis, math.nan)
            row[f"{prefix}_ceiling_runs"] = found.ceiling_runs
            row[f"{prefix}_ceiling_at_limit"] = (found.ceiling_at_limit or {}).get(analysis, math.nan)
        row[f"{name}_best_epsilon_lb"] = self.epsilon_lb
        return row

    def headline_column(self, name: str) -> str:
        return f"{name}_best_epsilon_lb"

    def lower_bounds(self) -> list[float]:
        return [o.bounds[a]["epsilon_lb"] for o in self.observations.values() for a in o.bounds] + [self.epsilon_lb]


def read_audit(data) -> AuditResult:
    """The typed result of an audit record: a white-box result where it has observations."""
    if isinstance(data, AuditResult):
        return data
    return (WhiteboxResult if "observations" in data else AuditResult).from_record(data)


@register_family
class Audit(Family):
    key = "audit"
    title = "White-box audit of the training, beside the black-box attacks"
    rank = 20
    result = AuditResult

    def read(self, data) -> AuditResult:
        return read_audit(data)

    def bounds(self, name: str, result: AuditResult) -> list[float]:
        return result.lower_bounds()

    def findings(self, label: str, result: AuditResult) -> Iterator[Finding]:
        """The audit's ε lower bound above 0, with its guess counts where it records them at its top level."""
        if result.epsilon_lb > 0:
            v, r = result.get("v"), result.get("r")
            guesses = f"{v} of {r} guesses correct, " if v is not None and r is not None else ""
            yield Finding(label, f"ε lower bound {fmt(result.epsilon_lb)} > 0 ({guesses}confidence "
                                 f"1 − {result.get('alpha', math.nan):g})", f"ε ≥ {fmt(result.epsilon_lb)}")

    def intervals(self, result: AuditResult) -> int:
        return 1

    def strongest(self, label: str, result: AuditResult) -> tuple[float, str]:
        return result.epsilon_lb, f"{label} ε ≥ {fmt(result.epsilon_lb)}"

    def setting(self, result: AuditResult) -> str:
        """'m <kind> canaries, k₊ + k₋ guesses', each part where the audit records it at its top level."""
        canary = result.get("canary")
        m = result.m if result.m is not None else "–"
        text = f"{m} {canary} canaries" if canary is not None else f"{m} canaries"
        k_plus, k_minus = result.get("k_plus"), result.get("k_minus")
        return text + (f", {k_plus} + {k_minus} guesses" if k_plus is not None and k_minus is not None else "")

    def headline_columns(self, sweep, runs) -> list:
        """One column per audit that ran: its ε lower bound (the largest, where it computes several)."""
        from ..report.columns import Column, value

        return [Column(f"ε lower bound ({label})", value(column), column) for column, label in audit_columns([sweep]).items()]

    def section(self, ctx) -> None:
        write_audit_bounds(ctx)


def audit_columns(sweeps) -> dict[str, str]:
    """The sweep table's column of each audit that ran in ``sweeps`` (its largest bound) → its label."""
    from .. import registry

    out = {}
    for name, spec in registry.load().items():
        if spec.family.key != Audit.key:
            continue
        for sweep in sweeps:
            result = next((r.results(Audit.key)[name] for r in sweep.runs if name in r.results(Audit.key)), None)
            if result is not None:
                out[result.headline_column(name)] = spec.label
                break
    return out


OBSERVATION_TEXT = dict(OBSERVATION_LABELS)  # record key -> what the auditor observed, in words
LIMIT_MARK = "†"
LIMIT_TEXT = (
    f"{LIMIT_MARK} A limit of the analysis, not a measurement: on a bound, every guess was right (the largest bound "
    "that many guesses over the canaries allow) or the σ′ search of the DP-SGD test stopped at the edge of its range, "
    "in at least one seed; the training may leak more than the number shows. On a ceiling, at least one idealised run "
    "was at such a limit.")
ANALYSIS_TEXT = {"steinke": "Steinke et al. (binomial)", "fdp_dpsgd": "f-DP, DP-SGD curves", "fdp_approx_dp": "f-DP, (ε, δ) claims"}


def bound_series(sweeps) -> list[tuple[str, str, str]]:
    """(bound column, ceiling column, label) of every bound of the audits with several (the white-box
    audit), in the table's column order, from the structured results of ``sweeps``."""
    from .. import registry

    out: dict[str, tuple[str, str, str]] = {}
    for name, spec in registry.load().items():
        if spec.family.key != Audit.key:
            continue
        for run in (r for s in sweeps for r in s.runs):
            result = run.results(Audit.key).get(name)
            if not isinstance(result, WhiteboxResult):
                continue
            for prefix, observation, analysis in result.series(name):
                label = (f"{spec.label}: {OBSERVATION_TEXT.get(observation, observation)}, "
                         f"{ANALYSIS_TEXT.get(analysis, analysis)}")
                out.setdefault(prefix, (f"{prefix}_epsilon_lb", f"{prefix}_ceiling", label))
    return list(out.values())


def _limit_column(bound: str) -> str:
    """``…_at_limit`` of a bound column ``<prefix>_epsilon_lb`` (both named by :meth:`WhiteboxResult.columns`)."""
    return bound.removesuffix("_epsilon_lb") + "_at_limit"


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


def bound_table(sweep, runs: pd.DataFrame, series: list[tuple[str, str, str]]) -> tuple[list[str], list[list[str]]]:
    """One row per budget: the accountant's ε, then each bound with its ceiling ± sd and its ratios."""
    from ..report.formatting import cell, epsilon_label

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


def limit_rows(sweep, runs: pd.DataFrame, series: list[tuple[str, str, str]]) -> bool:
    """Whether any bound or ceiling of the sweep's table carries the limit mark."""
    for eps in sweep.budgets:
        at = runs[runs["epsilon"] == eps]
        if any(_mark(at, _limit_column(bound)) or _mark(at, f"{ceiling}_at_limit") for bound, ceiling, _ in series):
            return True
    return False


def write_audit_bounds(ctx) -> None:
    """The white-box audit's subsection of the membership section: text, table per sweep, figure."""
    runs = ctx.all_runs
    series = bound_series(ctx.sweeps)
    if not series:
        return
    ctx.doc.heading(Audit.title)
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
    from ..report import attack_figures

    ctx.doc.figure(attack_figures.whitebox(runs, series, ctx.fig_path("whitebox_vs_accountant_epsilon.png")),
                   "White-box audit: each analysis' ε lower bound (solid) against the target ε, with the accountant's ε "
                   "(black) and the ceiling on the idealised mechanism (dotted, same colour; a mean over few idealised "
                   "runs, biased upward); ∞ budgets are drawn apart. Points: means over seeds."
                   + (f" Values marked {LIMIT_MARK} in the tables are limits of the analysis, not measurements."
                      if marked else ""))

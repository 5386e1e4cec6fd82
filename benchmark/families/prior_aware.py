"""The prior-aware family: the informed adversary's reconstruction game, against the ReRo bound.

The adversary (Hayes, Mahloujifar & Balle 2023) knows every training record but the target, every
model state and noisy update, and a prior of n candidates; its success is bounded by the ReRo bound
γ at κ = 1/n, not by chance (attacks/prior_aware.py, benchmark/reconstruction_run.py). The chance
rule: the success interval lies above chance 1/n. Its report section gives each game's success
beside its bound, and warns when an interval lies above the bound (a fault of the bound, the
accounting or the simulation).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

from ..numbers import fmt, fmt_ci
from .base import AttackResult, Family, Finding, register_family


@dataclass(frozen=True, kw_only=True)
class PriorAwareResult(AttackResult):
    success_rate: float
    ci_low: float
    ci_high: float
    chance: float
    bound: float = math.nan
    n_candidates: int | None = None
    trials: int | None = None

    def columns(self, name: str) -> dict:
        return {f"{name}_success": self.success_rate, f"{name}_ci_low": self.ci_low,
                f"{name}_ci_high": self.ci_high, f"{name}_chance": self.chance}


@register_family
class PriorAware(Family):
    key = "prior_aware"
    title = "Informed adversary: the prior-aware attack against its ReRo bound"
    rank = 30
    result = PriorAwareResult
    summary_columns = ("prior_aware_success", "prior_aware_chance", "rero_bound_prior")

    def findings(self, label: str, result: PriorAwareResult) -> Iterator[Finding]:
        if result.ci_low > result.chance:
            yield Finding(label, f"success {fmt_ci(result.success_rate, result.ci_low, result.ci_high)} "
                                 f"lies above chance {fmt(result.chance)}",
                          f"success {fmt(result.success_rate)} vs chance {fmt(result.chance)}"
                          + (f" (ReRo bound {fmt(result.bound)})" if not math.isnan(result.bound) else ""))

    def intervals(self, result: PriorAwareResult) -> int:
        return 1

    def strongest(self, label: str, result: PriorAwareResult) -> tuple[float, str]:
        return result.success_rate, (f"success {fmt_ci(result.success_rate, result.ci_low, result.ci_high)}, "
                                     f"chance {fmt(result.chance)}")

    def headline_columns(self, sweep, runs) -> list:
        from ..report.columns import Column, value

        return [Column("prior-aware success", value("prior_aware_success"), "prior_aware_success"),
                Column("ReRo bound γ (κ = 1/n)", value("rero_bound_prior"), "rero_bound_prior")]

    def warnings(self, sweep) -> list[str]:
        return bound_warnings(sweep)

    def section(self, ctx) -> None:
        tables = [(sweep, table(sweep)) for sweep in ctx.sweeps]
        if not any(rows for _, (_, rows) in tables):
            return
        ctx.doc.heading(self.title)
        for sweep, (header, rows) in tables:
            ctx.sub(sweep)
            if rows:
                ctx.doc.table(header, rows)


def table(sweep) -> tuple[list[str], list[list[str]]]:
    """Each prior-aware attack of each run: success interval, chance and the ReRo bound γ at κ = 1/n.

    An 'attack' column is added when the sweep holds more than one prior-aware attack.
    """
    ran = sweep.attacks_of(PriorAware.key)
    header = ["ε", "seed", "prior-aware success [CI]", "chance 1/n", "ReRo bound γ (κ = 1/n)", "candidates n", "trials"]
    rows = []
    for r in sweep.runs:
        for spec in ran:
            p = r.results(PriorAware.key).get(spec.name)
            if p:
                rows.append([r.point.label, str(r.seed), *([spec.label] if len(ran) > 1 else []),
                             fmt_ci(p.success_rate, p.ci_low, p.ci_high), fmt(p.chance),
                             fmt(float(r.summary.get("rero_bound_prior", math.nan))),
                             str(p.n_candidates if p.n_candidates is not None else "–"),
                             str(p.trials if p.trials is not None else "–")])
    return (header[:2] + ["attack"] + header[2:] if len(ran) > 1 else header), rows


def bound_warnings(sweep) -> list[str]:
    """No attack may beat its theoretical bound: a prior-aware attack's interval must reach its ReRo bound."""
    from ..report.formatting import epsilon_label

    out = []
    for spec in sweep.attacks_of(PriorAware.key):
        above = [(r, p) for r in sweep.runs if (p := r.results(PriorAware.key).get(spec.name)) and p.ci_low > p.bound]
        if not above:
            continue
        cases = ", ".join(f"ε = {epsilon_label(r.epsilon)} seed {r.seed} (success interval from {fmt(p.ci_low)} > "
                          f"bound {fmt(p.bound)})" for r, p in above)
        out.append(f"Warning: the {spec.label} attack succeeds more often than its ReRo bound allows at {cases}; the "
                   "bound, the accounting or the attack simulation is wrong and these results should not be trusted.")
    return out

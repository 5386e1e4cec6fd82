"""The membership-inference family: loss, LiRA and RMIA on the run's pool of models.

A membership attack's result holds one :class:`VariantMetrics` per variant it scores (LiRA: online
and offline): the ROC AUC, TPR at each FPR level, their intervals, the ROC curve and the empirical
ε lower bound of the held-out evaluation target (benchmark/membership_run.py). The family's chance
rule: a variant beats chance when its AUC interval lies above 0.5, a TPR interval lies above its FPR
level, or its empirical ε lower bound is above 0.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import pandas as pd

from ..numbers import fmt, fmt_ci, fmt_percent
from .base import AttackResult, Family, Finding, Structured, label_of, register_family, typed_dict


@dataclass(frozen=True, kw_only=True)
class VariantMetrics(Structured):
    """One membership variant's metrics over the pool (attacks/mia_metrics.py ``roc_metrics``)."""

    auc: float
    auc_ci: list
    fpr_levels: list
    tpr_at_fpr: list
    tpr_at_fpr_ci: list
    empirical_epsilon: dict  # epsilon_lb, epsilon_ceiling, alpha, … (attacks/auditing.py)
    confidence: float = 0.95
    roc_curve: dict = field(default_factory=dict)

    @property
    def epsilon_lb(self) -> float:
        return self.empirical_epsilon["epsilon_lb"]


@dataclass(frozen=True, kw_only=True)
class MembershipResult(AttackResult):
    variants: dict  # variant key -> VariantMetrics

    NESTED = {"variants": typed_dict(VariantMetrics)}

    def columns(self, name: str) -> dict:
        """AUC, TPR at each FPR level and ε lower bound per variant."""
        row = {}
        for variant, m in self.variants.items():
            row[f"mia_{variant}_auc"] = m.auc
            row[f"mia_{variant}_tpr_at_0.1%fpr"] = m.tpr_at_fpr[0]
            row[f"mia_{variant}_tpr_at_1%fpr"] = m.tpr_at_fpr[1]
            row[f"mia_{variant}_epsilon_lb"] = m.epsilon_lb
        return row


@register_family
class Membership(Family):
    key = "membership"
    title = "Membership inference"
    rank = 10
    result = MembershipResult
    summary_columns = ("mia_best_auc", "mia_best_tpr_at_0.1%fpr", "mia_best_epsilon_lb", "mia_best_epsilon_ceiling")

    def bests(self, results: dict) -> dict:
        variants = [m for r in results.values() for m in r.variants.values()]
        if not variants:
            return {}
        return {"mia_best_auc": max(m.auc for m in variants),
                "mia_best_tpr_at_0.1%fpr": max(m.tpr_at_fpr[0] for m in variants),
                "mia_best_epsilon_lb": max(m.epsilon_lb for m in variants),
                "mia_best_epsilon_ceiling": max(m.empirical_epsilon["epsilon_ceiling"] for m in variants)}

    def bounds(self, name: str, result: MembershipResult) -> list[float]:
        return [m.epsilon_lb for m in result.variants.values()]

    def variant_keys(self, name: str, result: MembershipResult) -> list[str]:
        return list(result.variants)

    # ------------------------------------------------------------------ chance
    def findings(self, label: str, result: MembershipResult) -> Iterator[Finding]:
        for key, m in result.variants.items():
            label, level = label_of(key), fmt_percent(m.confidence)
            lo, hi = m.auc_ci
            if lo > 0.5:
                yield Finding(label, f"AUC {fmt_ci(m.auc, lo, hi)} ({level} CI) lies above 0.5", f"{label} AUC {fmt_ci(m.auc, lo, hi)}")
            for fpr, tpr, (lo, hi) in zip(m.fpr_levels, m.tpr_at_fpr, m.tpr_at_fpr_ci):
                if lo > fpr:
                    yield Finding(label, f"TPR at {fmt_percent(fpr)} FPR {fmt_ci(tpr, lo, hi)} ({level} CI) lies above {fpr:g}",
                                  f"{label} TPR {fmt(tpr)} at {fmt_percent(fpr)} FPR")
            e = m.empirical_epsilon
            if e["epsilon_lb"] > 0:
                yield Finding(label, f"empirical ε lower bound {fmt(e['epsilon_lb'])} > 0 (at confidence 1 − {e.get('alpha', math.nan):g})",
                              f"{label} ε ≥ {fmt(e['epsilon_lb'])}")

    def intervals(self, result: MembershipResult) -> int:
        return sum(2 + len(m.fpr_levels) for m in result.variants.values())

    def strongest(self, label: str, result: MembershipResult) -> tuple[float, str]:
        key, m = max(result.variants.items(), key=lambda kv: kv[1].auc)
        return m.auc, f"{label_of(key)} AUC {fmt_ci(m.auc, *m.auc_ci)}"

    # ------------------------------------------------------------------ report
    def headline_columns(self, sweep, runs) -> list:
        from ..report.columns import Column, value

        levels = [m.fpr_levels[0] for r in sweep.runs for m in membership_variants(r).values()]
        tpr = f"best TPR at {fmt_percent(min(levels))} FPR" if levels else "best TPR"
        return [Column("best membership AUC", value("mia_best_auc"), "mia_best_auc"),
                Column(tpr, value("mia_best_tpr_at_0.1%fpr"), "mia_best_tpr_at_0.1%fpr"),
                Column("empirical ε lower bound (membership)", value("mia_best_epsilon_lb"), "mia_best_epsilon_lb")]

    def frame(self, sweep) -> pd.DataFrame:
        """One row per (run, variant), with its CIs and ROC curve."""
        rows = []
        for r in sweep.runs:
            for key, m in membership_variants(r).items():
                rows.append({
                    "sweep": sweep.label, "epsilon": r.epsilon, "reference": r.reference, "point": r.point.label,
                    "seed": r.seed, "key": key, "attack": label_of(key),
                    "auc": m.auc, "auc_lo": m.auc_ci[0], "auc_hi": m.auc_ci[1],
                    "fpr_levels": m.fpr_levels, "tpr_at_fpr": m.tpr_at_fpr, "tpr_at_fpr_ci": m.tpr_at_fpr_ci,
                    "fpr_low": m.fpr_levels[0], "tpr_low": m.tpr_at_fpr[0], "epsilon_lb": m.epsilon_lb,
                    "epsilon_ceiling": m.empirical_epsilon.get("epsilon_ceiling", math.nan), "confidence": m.confidence,
                    "fpr": m.roc_curve["fpr"], "tpr": m.roc_curve["tpr"],
                    "delta": float(r.summary["delta"]), "epsilon_spent": float(r.summary["epsilon_spent"]),
                })
        return pd.DataFrame(rows)

    def section(self, ctx) -> None:
        frame = ctx.frame(self.key)
        if frame.empty:
            return
        ctx.doc.heading(self.title)
        for text in _protocol_texts(ctx):
            ctx.doc.paragraph(text)
        ctx.doc.paragraph(
            "Intervals resample target models and images as crossed clusters (Owen's two-way bootstrap): an atypical "
            "image is exposed against every model, and one model may overfit more than another, so the M·N scores are "
            "not independent. RMIA compares each candidate with population images that no model trained on (a held-out "
            "split), never with the target's own non-members.")
        from ..report import attack_figures
        from ..report.records import baseline_only

        ctx.doc.figure(attack_figures.membership(baseline_only(frame), ctx.fig_path("membership_vs_epsilon.png")),
                       "Membership attack success against ε: AUC (left, dashed: chance) and TPR at the lowest FPR level "
                       "(right, symlog axis) with the DP bound TPR ≤ e^ε·FPR + δ evaluated at each ε.")
        ctx.doc.figure(attack_figures.roc_curves(baseline_only(frame), ctx.fig_path("roc_curves.png")),
                       "ROC curves on log-log axes, one panel per budget (every seed drawn), with chance (dashed) and the "
                       "DP bound TPR ≤ min(1, e^ε·FPR + δ) at the accountant's ε (red; none for ε = ∞).")
        for sweep in ctx.sweeps:
            part = ctx.part(frame, sweep)
            if len(part):
                ctx.doc.table(*detail_table(part),
                              collapsed=f"Every membership attack of every run{f' ({sweep.label})' if ctx.several else ''}: "
                                        "AUC and TPR with their bootstrap confidence intervals")


def membership_variants(run) -> dict[str, VariantMetrics]:
    """Every membership variant's metrics of one run (report/records.py ``Run``), by variant key."""
    return {key: m for result in run.results("membership").values() for key, m in result.variants.items()}


def _protocol_texts(ctx) -> list[str]:
    keys = ("num_models", "pool", "queries", "description")
    protocols = {json.dumps({k: r.protocol("membership").get(k) for k in keys}, default=str)
                 for s in ctx.sweeps for r in s.runs if r.results("membership")}
    out = []
    for p in sorted(protocols):
        proto = json.loads(p)
        if proto.get("description"):  # a protocol that is not the sweep's pool says what it is (an audit's)
            out.append(proto["description"])
            continue
        out.append(
            f"Protocol (LiRA evaluation, Carlini et al. 2022): {proto.get('num_models', '–')} models trained with the "
            f"target's recipe on random halves of the {proto.get('pool', 'sample pool')}; each in turn is the target "
            f"and the others are its shadow/reference models; queries: {', '.join(map(str, proto.get('queries', [])))}. "
            "These numbers describe the half-size pool models (same σ, q, T and C as the target, hence the same ε, "
            "but about half its training images), not the reported target model itself.")
    return out


def detail_table(attacks: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """Every membership variant of every run with its intervals (rows of :meth:`Membership.frame`)."""
    levels = attacks["fpr_levels"].iloc[0]
    header = ["ε", "seed", "attack", "AUC [CI]"] + [f"TPR at {fmt_percent(f)} FPR [CI]" for f in levels] + [
        "empirical ε lower bound", "largest possible lower bound"]
    rows = []
    for a in attacks.itertuples():
        tprs = [fmt_ci(t, lo, hi) for t, (lo, hi) in zip(a.tpr_at_fpr, a.tpr_at_fpr_ci)]
        rows.append([a.point, str(a.seed), a.attack, fmt_ci(a.auc, a.auc_lo, a.auc_hi), *tprs,
                     fmt(a.epsilon_lb), fmt(a.epsilon_ceiling)])
    return header, rows

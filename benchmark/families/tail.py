"""The privacy-tail family: the share of training images whose own membership risk is high, against chance.

An average over images hides the few that are exposed almost surely (Knolle et al., Nature 2026);
an ethics board asks about those. Per image, over the models of the membership protocol, the
attack (benchmark/membership_run.py, attacks/privacy_tail.py) computes the per-record AUC and the
per-record TPR at a low FPR of LiRA's per-record Gaussian test, and reports for each threshold the
share of images at or above it with a Clopper–Pearson interval over images, beside the same share
with membership permuted across models (what chance alone gives with so few models per image).

Chance rule: a threshold's share beats chance when its interval's lower end lies above the null's
upper quantile. The result holds the most exposed images' indices (never images); the per-image
values are saved with the run (Parquet) and drawn in the report as the complementary CDF of the
per-record risk at each budget, log scale, so the report shows whether DP removes the tail.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import pandas as pd

from ..numbers import fmt, fmt_ci, fmt_percent
from .base import AttackResult, Family, Finding, Structured, register_family, typed_dict


@dataclass(frozen=True, kw_only=True)
class TailShare(Structured):
    """One threshold: the share of images at or above it, its interval, and the null's mean and upper quantile."""

    criterion: str  # "auc" (per-record AUC) or "tpr" (per-record TPR at the result's FPR)
    threshold: float
    share: float
    ci: list  # [low, high], Clopper–Pearson over images
    count: int
    null_mean: float
    null_upper: float

    @property
    def beats_chance(self) -> bool:
        return self.ci[0] > self.null_upper


@dataclass(frozen=True, kw_only=True)
class TailResult(AttackResult):
    shares: dict  # share key ('auc_ge_0.95') -> TailShare
    n_records: int  # images in and out of at least one model each (the shares' denominator)
    n_models: int
    fpr: float  # of the per-record Gaussian test
    confidence: float  # of the Clopper–Pearson intervals
    null_quantile: float
    permutations: int
    variance: str  # "fixed" or "per_record"
    mean_auc: float  # the average the tail is hidden in
    mean_tpr: float
    most_exposed: list = field(default_factory=list)  # [{"record", "label", "auc", "tpr"}], indices only
    records_file: str = ""  # the per-record values, in the run folder

    NESTED = {"shares": typed_dict(TailShare)}

    def columns(self, name: str) -> dict:
        """Per threshold: the share, its interval, the null's mean and upper quantile; then the averages."""
        row = {}
        for key, s in self.shares.items():
            prefix = share_column(name, key)
            row.update({prefix: s.share, f"{prefix}_ci_low": s.ci[0], f"{prefix}_ci_high": s.ci[1],
                        f"{prefix}_null": s.null_mean, f"{prefix}_null_upper": s.null_upper})
        row[f"{name}_mean_record_auc"] = self.mean_auc
        row[f"{name}_mean_record_tpr"] = self.mean_tpr
        return row

    def criterion(self, share: TailShare) -> str:
        """What a share counts, in words."""
        if share.criterion == "auc":
            return f"per-record AUC ≥ {share.threshold:g}"
        return f"per-record TPR at {fmt_percent(self.fpr)} FPR ≥ {share.threshold:g}"


def share_column(name: str, key: str) -> str:
    """The sweep table's column of one share of attack ``name``: 'tail_share_auc_ge_0.95'."""
    return f"{name}_share_{key}"


@register_family
class PrivacyTail(Family):
    key = "tail"
    title = "The privacy tail: training images at high risk"
    rank = 15
    result = TailResult

    # ------------------------------------------------------------------ chance
    def findings(self, label: str, result: TailResult) -> Iterator[Finding]:
        for s in result.shares.values():
            if s.beats_chance:
                what = result.criterion(s)
                yield Finding(label, f"share of images with {what} {fmt_ci(s.share, *s.ci)} "
                                     f"({fmt_percent(result.confidence)} CI) lies above chance (the "
                                     f"{fmt_percent(result.null_quantile)} quantile over {result.permutations} "
                                     f"membership permutations: {fmt(s.null_upper)})",
                              f"{label}: {fmt(s.share)} of images with {what} vs chance ≤ {fmt(s.null_upper)}")

    def intervals(self, result: TailResult) -> int:
        return len(result.shares)

    def strongest(self, label: str, result: TailResult) -> tuple[float, str]:
        """No value: a share of images never competes with an AUC."""
        parts = [f"{fmt(s.share)} with {result.criterion(s)} (chance ≤ {fmt(s.null_upper)})" for s in result.shares.values()]
        return math.nan, f"{label}: " + "; ".join(parts)

    # ------------------------------------------------------------------ report
    def setting(self, result: TailResult) -> str:
        thresholds = " and ".join(result.criterion(s) for s in result.shares.values())
        return (f"{thresholds}; {result.n_models} models, {result.variance.replace('_', ' ')} variance, "
                f"{result.permutations} membership permutations")

    def headline_columns(self, sweep, runs) -> list:
        from ..report.columns import Column

        ran = sweep.attacks_of(self.key)
        columns = []
        for spec in ran:
            seen = {key: (r, s) for run in sweep.runs if (r := run.results(self.key).get(spec.name))
                    for key, s in r.shares.items()}
            for key, (result, share) in seen.items():
                column = share_column(spec.name, key)
                prefix = f"{spec.label}: " if len(ran) > 1 else ""
                columns.append(Column(f"{prefix}share of images with {result.criterion(share)} (chance: up to)",
                                      _share_cell(column), column))
        return columns

    def frame(self, sweep) -> pd.DataFrame:
        """One row per (run, attack, threshold)."""
        rows = []
        for r in sweep.runs:
            for name, result in r.results(self.key).items():
                for key, s in result.shares.items():
                    rows.append({
                        "sweep": sweep.label, "epsilon": r.epsilon, "reference": r.reference, "point": r.point.label,
                        "seed": r.seed, "name": name, "key": key, "criterion": s.criterion, "threshold": s.threshold,
                        "what": result.criterion(s), "share": s.share, "ci_low": s.ci[0], "ci_high": s.ci[1],
                        "count": s.count, "null_mean": s.null_mean, "null_upper": s.null_upper,
                        "beats_chance": s.beats_chance, "n_records": result.n_records, "n_models": result.n_models,
                        "mean_value": result.mean_auc if s.criterion == "auc" else result.mean_tpr,
                        "fpr": result.fpr, "confidence": result.confidence, "null_quantile": result.null_quantile,
                        "permutations": result.permutations, "variance": result.variance,
                    })
        return pd.DataFrame(rows)

    def section(self, ctx) -> None:
        frame = ctx.frame(self.key)
        if frame.empty:
            return
        from ..report import tail_risk
        from ..report.records import baseline_only

        ctx.doc.heading(self.title)
        ctx.doc.paragraph(explanation(frame))
        values = tail_risk.record_values(ctx.sweeps, self.key)
        if len(values):
            ctx.doc.figure(tail_risk.ccdf(baseline_only(values), thresholds(frame), ctx.fig_path("privacy_tail.png")),
                           "The privacy tail at each budget: the share of training images (log scale) whose per-record "
                           "risk is at least the value on the x axis, for the per-record TPR of the Gaussian test (left) "
                           "and the per-record AUC (right); every seed's images pooled. Dashed: the same with membership "
                           "permuted across models (chance; all permutations pooled); dotted verticals: the thresholds "
                           "of the table below.")
        for sweep in ctx.sweeps:
            part = ctx.part(frame, sweep)
            if not len(part):
                continue
            ctx.sub(sweep)
            ctx.doc.table(*share_table(part))
            header, rows = exposed_table(sweep, self.key)
            if rows:
                ctx.doc.table(header, rows, collapsed="The most exposed training images per budget (indices in the "
                                                      "training split, highest per-record TPR first)")


def _share_cell(column: str):
    from ..report.formatting import cell

    def render(at: pd.DataFrame, point, runs: pd.DataFrame) -> str:
        if column not in at:
            return "–"
        return f"{cell(at[column])} (chance ≤ {cell(at[f'{column}_null_upper'])})"

    return render


def thresholds(frame: pd.DataFrame) -> dict[str, list[float]]:
    """The thresholds of each criterion found in a family frame."""
    return {c: sorted(set(frame.loc[frame["criterion"] == c, "threshold"])) for c in ("tpr", "auc")}


def explanation(frame: pd.DataFrame) -> str:
    """What the section shows, with the numbers of the runs (models, permutations, levels)."""
    def values(column: str, show=fmt) -> str:
        return "/".join(show(v) for v in sorted(set(frame[column])))

    return (
        "An average membership AUC near chance can hide a few images that are exposed almost surely. Per training image, "
        f"over the {values('n_models')} models of the membership protocol (each image in about half of them): its "
        "per-record AUC (how often a model that trained on it scores it higher than one that did not; LiRA's scaled "
        "confidence, averaged over queries) and its per-record TPR at "
        f"{values('fpr', fmt_percent)} FPR (LiRA's Gaussians fitted to the image's in and out scores, "
        f"{values('variance', lambda v: v.replace('_', ' '))} variance; the test at the out Gaussian's "
        f"{values('fpr', lambda f: fmt_percent(1 - f))} quantile). Each row gives the share of images at or above a "
        f"threshold with its {values('confidence', fmt_percent)} Clopper–Pearson interval over images, and what chance "
        f"alone gives: the same share with each image's membership permuted across the models "
        f"({values('permutations')} permutations; mean and {values('null_quantile', fmt_percent)} quantile). With few "
        "models per image many images pass a threshold by chance. A share beats chance when its interval lies above "
        "that quantile; 'mean' is the average per-record value over all images, the number the tail hides in.")


def share_table(part: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """Point × threshold: the share [CI] beside chance (rows of :meth:`PrivacyTail.frame`)."""
    header = ["ε", "seed", "images with", "images", "mean", "share [CI]", "chance: mean (upper quantile)",
              "beats chance"]
    rows = [[r.point, str(r.seed), r.what, str(r.n_records), fmt(r.mean_value), fmt_ci(r.share, r.ci_low, r.ci_high),
             f"{fmt(r.null_mean)} ({fmt(r.null_upper)})", "yes" if r.beats_chance else "no"]
            for r in part.itertuples()]
    return header, rows


def exposed_table(sweep, key: str) -> tuple[list[str], list[list[str]]]:
    """The most exposed images of each run: index, class, per-record AUC and TPR (no images)."""
    rows = []
    fprs = set()
    for r in sweep.runs:
        names = r.record["dataset"].get("class_names") or []
        for result in r.results(key).values():
            fprs.add(result.fpr)
            for rank, e in enumerate(result.most_exposed, 1):
                label = int(e.get("label", -1))
                rows.append([r.point.label, str(r.seed), str(rank), str(int(e["record"])),
                             names[label] if 0 <= label < len(names) else str(label), fmt(e["auc"]), fmt(e["tpr"])])
    level = "/".join(fmt_percent(f) for f in sorted(fprs))
    return ["ε", "seed", "rank", "image (training index)", "class", "per-record AUC", f"per-record TPR at {level} FPR"], rows

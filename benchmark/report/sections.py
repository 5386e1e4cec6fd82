"""The report's sections, in order (:func:`sections`): each writes its headings, text, tables and figures.

The sections that compare budgets (verdicts, summary, headline, utility) come first; then each
attack family's own section (benchmark/families: membership, the privacy tail, audits, the informed adversary,
reconstruction, and any family registered later, by rank); then the sections across families
(empirical ε, per-class risk, threat models, metadata). A section reads the shared
:class:`Context` (the sweeps and the frames built once from their records) and writes into its
:class:`~.document.Document`; it computes nothing that records.py, verdicts.py or tables.py
already does.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .. import registry
from ..config import TUNED
from ..families import ordered
from ..families.audit import audit_columns, bound_series
from ..threats import THREAT_MODELS
from . import figures
from .document import Document
from .metadata import metadata_fields
from .records import Point, Sweep, baseline_only, class_frame, point_rows, sample_risk, strongest_attack, task_of
from .tables import (
    TOP_VULNERABLE, attack_table, comparison_table, per_class_table, perfect_auc_table, utility_table, verdict_table,
    vulnerable_table,
)
from .verdicts import (
    CHANCE_RULE_TEXT, UNIT_OF_PRIVACY_TEXT, Evidence, consistency_sentences, summary_sentences, threats_run,
    worst_case_ran,
)


@dataclass
class Context:
    """What the sections of one report share: the sweeps and the frames derived from their records."""

    sweeps: list[Sweep]
    doc: Document
    show_reconstructions: bool
    runs: dict[str, pd.DataFrame]  # records.run_frame per sweep label
    frames: dict[str, pd.DataFrame]  # each family's frame of all sweeps, by family key (empty where it has none)
    evidence: dict[str, Evidence]  # verdicts.evidence_by_point per sweep label

    @property
    def several(self) -> bool:
        return len(self.sweeps) > 1

    def sub(self, sweep: Sweep) -> None:
        """A level-3 heading naming the sweep, only when the report compares several."""
        if self.several:
            self.doc.heading(sweep.label, 3)

    def fig_path(self, name: str) -> Path:
        return self.doc.fig_dir / name

    @property
    def all_runs(self) -> pd.DataFrame:
        return pd.concat(self.runs.values(), ignore_index=True)

    def frame(self, family: str) -> pd.DataFrame:
        """The frame of one family (its key) over all sweeps; empty where the family has none."""
        return self.frames.get(family, pd.DataFrame())

    def part(self, frame: pd.DataFrame, sweep: Sweep) -> pd.DataFrame:
        """The rows of one sweep in a frame of all sweeps (an empty frame stays as it is)."""
        return frame[frame["sweep"] == sweep.label] if len(frame) else frame


def section_verdicts(ctx: Context) -> None:
    """The answer first: a grid of budgets × threat models, each cell coloured by its verdict."""
    frames = {s.label: ctx.runs[s.label] for s in ctx.sweeps if s.attacked and (threats_run(ctx.runs[s.label])
                                                                                or worst_case_ran(ctx.runs[s.label]))}
    if not frames:
        return
    ctx.doc.heading("Verdicts per threat model")
    path = figures.verdict_grid(frames, {s.label: s.points for s in ctx.sweeps if s.label in frames},
                                ctx.fig_path("verdicts.png"))
    ctx.doc.figure(path, "Each cell: one budget (row) against one kind of attacker (column). Red: an attack of that "
                         "threat model beat chance within its confidence interval; green: none did; grey: not run. The "
                         "label is the result that decided it. The last column is the worst-case audit, which gets no "
                         "verdict: its empirical ε as a share of the accountant's ε (how tight the guarantee is shown "
                         "to be; blue, darker is tighter).")


def section_summary(ctx: Context) -> None:
    ctx.doc.heading("Summary")
    for sweep in ctx.sweeps:
        ctx.sub(sweep)
        for sentence in summary_sentences(sweep, ctx.runs[sweep.label], ctx.evidence[sweep.label]):
            ctx.doc.paragraph(sentence)
    ctx.doc.paragraph(CHANCE_RULE_TEXT)
    ctx.doc.paragraph(UNIT_OF_PRIVACY_TEXT)
    if ctx.several:
        ctx.doc.heading("Side by side", 3)
        ctx.doc.table(*comparison_table(ctx.sweeps, ctx.runs))


def section_headline(ctx: Context) -> None:
    ctx.doc.heading("Headline table")
    ctx.doc.paragraph("One row per privacy budget, then one per non-private reference: 'same recipe' is the DP recipe "
                      "with no clipping and no noise (same optimiser, epochs, learning rate, schedule and batch), so the "
                      "gap to it is what privacy costs; 'tuned recipe' is the non-private recipe of train.nonprivate, "
                      "shown as its own row. Every Δ is against the same-recipe row where the sweep has one. Values are "
                      "means ± standard deviation over seeds where a budget has several runs.")
    for sweep in ctx.sweeps:
        ctx.sub(sweep)
        runs = ctx.runs[sweep.label]
        if sweep.attacked and (threats_run(runs) or worst_case_ran(runs)):
            ctx.doc.paragraph("Verdict per threat model (the result that decided each):")
            ctx.doc.table(*verdict_table(sweep, runs))
        ctx.doc.paragraph("Utility:")
        ctx.doc.table(*utility_table(sweep, runs))
        numbers = attack_table(sweep, runs)
        if len(numbers[0]) > 1:
            ctx.doc.table(*numbers,
                          collapsed="Attack success beside its bounds ('best' is the strongest attack of each run; the "
                                    "accountant's ε is an upper bound on what any attack can show, the empirical ε "
                                    "values are lower bounds at the stated confidence)")
        found = [f"ε = {point.label}, {text}" for point, per in ctx.evidence[sweep.label].items()
                 for texts in per.values() for text in texts]
        if found:
            ctx.doc.table(["attack results that beat chance"], [[t] for t in found],
                          collapsed=f"{len(found)} attack result(s) that beat chance (the evidence behind the verdicts)")


def section_utility(ctx: Context) -> None:
    ctx.doc.heading("Utility")
    baseline = {label: baseline_only(frame) for label, frame in ctx.runs.items()}
    # the tuned reference as a star of its own, where it is not already the sweep's baseline
    tuned = {label: rows for label, frame in ctx.runs.items()
             if len(rows := point_rows(frame, Point(math.inf, TUNED))) and (baseline[label]["reference"] != TUNED).all()}
    task = task_of(next(iter(ctx.runs.values())))
    metrics = ((f"test_{task.headline}", task.headline_label), (f"test_{task.second}", task.second_label))
    path = figures.utility(baseline, ctx.fig_path("utility_vs_epsilon.png"), tuned=tuned, metrics=metrics)
    ctx.doc.figure(path, f"{task.headline_label[0].upper()}{task.headline_label[1:]} and {task.second_label[len('test '):]} against ε (log axis); "
                         "the non-private reference trained with the same "
                         "recipe (ε = ∞) is shown apart on the right, the tuned non-private recipe as a star beside it. "
                         "Error bars: standard deviation over seeds.")


EMPIRICAL_EPSILON_TEXT = (
    "What the lower bounds assume. Membership: one pool model is held out as the evaluation target; its images are "
    "the canaries of a one-run audit (Steinke, Nasr & Jagielski 2023), each in its training set independently with "
    "probability ½; the attack scores them using the other models as shadows, and the numbers of 'member' and "
    "'non-member' guesses are chosen on the other targets, scored without it. That analysis holds for any "
    "(ε, δ)-DP training of the evaluation target and needs no independence between images. One-run audit: the "
    "same analysis on canaries inserted into one extra training run. White-box audit: gradient canaries in the "
    "target's own training, with guess counts fixed on the idealised mechanism before any observation is scored; "
    "Steinke et al.'s test (a lower bound for any (ε, δ)-DP training), and the f-DP test of Mahloujifar, Melis & "
    "Chaudhuri (2025) against DP-SGD's trade-off curves: its rejection of the claimed noise multiplier holds for any "
    "training, but the ε it reports is a lower bound on ε only for a training that is DP-SGD at the claimed sampling "
    "rate and number of steps. Each of a run's lower bounds is computed at "
    "level α divided by their number, so the largest of them, which is checked against the accountant below, is "
    "wrong with probability at most α in total."
)


def section_empirical(ctx: Context) -> None:
    ctx.doc.heading("Empirical ε vs the accountant's ε")
    runs = ctx.all_runs
    if runs["epsilon_lb_max"].isna().all():  # the largest of every ε lower bound of a run (benchmark/record.py)
        ctx.doc.paragraph("No empirical ε lower bound was recorded in these runs.")
        return
    audits = {column: label for column, label in audit_columns(ctx.sweeps).items()
              if column in runs and runs[column].notna().any()}
    by_audits = f" and by the {' and the '.join(audits.values())}" if audits else ""
    with_ceiling = bound_series(ctx.sweeps)  # the audits with a ceiling (the white-box audit)
    ctx.doc.figure(figures.empirical_epsilon(runs, ctx.fig_path("empirical_vs_accountant_epsilon.png"), audits),
                   "The accountant's ε (black, an upper bound) beside the ε lower bounds, at the stated confidence, "
                   f"given by the membership attacks (best attack){by_audits}. A gap below the accountant's ε means "
                   "different things for different bounds. The membership attacks are realistic attacks, weaker than "
                   "the worst case: their bounds far below the accountant's ε do not show that the guarantee is loose."
                   + (" The white-box audit's all-iterates score is already the optimal test, so its gap is set by what "
                      "one run with m canaries at level α can show: compare its bound with its ceiling on the idealised "
                      "mechanism (its table in the white-box audit's section), not with the accountant's ε alone."
                      if with_ceiling else ""))
    ctx.doc.paragraph(EMPIRICAL_EPSILON_TEXT)
    for sweep in ctx.sweeps:
        ctx.sub(sweep)
        for sentence in consistency_sentences(ctx.runs[sweep.label]):
            ctx.doc.paragraph(sentence)


def section_risk(ctx: Context) -> None:
    ctx.doc.heading("Per-class risk and the most vulnerable images")
    classes, risks = [], []
    for sweep in ctx.sweeps:
        key = strongest_attack(ctx.part(ctx.frame("membership"), sweep))
        risk = sample_risk(sweep, key) if key else pd.DataFrame()
        classes.append(class_frame(sweep, risk))
        risks.append((sweep, key, risk))
    ctx.doc.paragraph(
        "Membership risk of one training image is its per-sample AUC: over the models of the membership protocol, "
        "the probability that the attack scores the image higher when it was in the model's training set than when "
        "it was out (ties count ½). 0.5 means the attack cannot tell; 1 means every 'in' score is above every 'out' "
        "score. With only a few models per image, perfect scores also happen by chance; the expected number is shown.")
    all_classes = pd.concat(classes, ignore_index=True)
    if len(all_classes):
        ctx.doc.figure(figures.per_class(baseline_only(all_classes), ctx.fig_path("per_class_risk.png")),
                       "Per-class test accuracy (left) and mean per-sample membership AUC (right) against ε, using each "
                       "sweep's strongest membership attack; error bars: standard deviation over seeds.")
    for (sweep, key, risk), frame in zip(risks, classes):
        ctx.sub(sweep)
        audited = [a for r in sweep.runs if (a := (r.record.get("audit") or {}).get("per_class_risk"))]
        if audited:
            ctx.doc.paragraph(f"An audited model is one target, so its images have one score each, not a distribution over "
                              f"models: its per-class risk is the AUC of its strongest attack "
                              f"({registry.label(audited[0]['attack'])}) among that class's candidates.")
        if len(frame):
            ctx.doc.table(*per_class_table(frame))
        if risk.empty:
            ctx.doc.paragraph("No per-sample membership scores were recorded, so there is no per-image risk.")
            continue
        ctx.doc.paragraph(f"Attack used: {registry.label(key)}, the strongest by mean AUC over the sweep.")
        ctx.doc.table(*perfect_auc_table(risk))
        ctx.doc.table(*vulnerable_table(risk), collapsed=f"The {TOP_VULNERABLE} most exposed training images per budget "
                                                         "(per-sample AUC averaged over seeds)")


def threat_models(sweep: Sweep) -> dict[str, tuple[str, str]]:
    """What each attack of the sweep saw, in plain words, as recorded beside its results (by label),
    with the threat model it is judged under (benchmark/threats.py)."""
    return {registry.label(key): (THREAT_MODELS[registry.ATTACKS[name].threat].label, result.threat_model)
            for run in sweep.runs for name, result in run.attacks.items()
            for key in registry.ATTACKS[name].family.variant_keys(name, result) if result.threat_model}


def section_threat_models(ctx: Context) -> None:
    ctx.doc.heading("Threat models")
    seen = {k: v for sweep in ctx.sweeps for k, v in threat_models(sweep).items()}
    if not seen:
        ctx.doc.paragraph("No attack was recorded in these runs.")
        return
    ran = {threat for threat, _ in seen.values()}
    ctx.doc.table(["threat model", "the attacker", "judged by"],
                  [[t.label, t.sees, "beats chance or not (a verdict)" if t.realistic else
                    "empirical ε beside the accountant's ε (no verdict)"] for t in THREAT_MODELS.values() if t.label in ran])
    ctx.doc.table(["attack", "threat model", "what the attacker sees"], [[k, t, v] for k, (t, v) in seen.items()])


def section_metadata(ctx: Context) -> None:
    ctx.doc.heading("Run metadata")
    header = ["", *(s.label for s in ctx.sweeps)]
    rows = [[f.name, *(f.describe(s) for s in ctx.sweeps)] for f in metadata_fields()]
    ctx.doc.table(header, [r for r in rows if any(c != "–" for c in r[1:])])


FIRST: tuple[Callable[[Context], None], ...] = (section_verdicts, section_summary, section_headline, section_utility)
LAST: tuple[Callable[[Context], None], ...] = (section_empirical, section_risk, section_threat_models, section_metadata)


def sections() -> list[Callable[[Context], None]]:
    """Every section in order: the comparisons, each registered family's section (by rank), the rest."""
    registry.load()
    return [*FIRST, *(family.section for family in ordered()), *LAST]

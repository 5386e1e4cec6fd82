"""One verdict per threat model and budget, the evidence behind each, and the summary in words.

The chance rules live in benchmark/chance.py and the threat models in benchmark/threats.py; the
run record turns them into the sweep table's ``verdict_<threat model>`` columns once. Here a
point of the sweep (a DP budget, or a non-private reference at ε = ∞) gets, per realistic threat
model, the verdict over its runs (seeds): ``beats chance`` if an attack of that threat model beat
chance in any seed, ``no attack beat chance`` if its attacks ran in every seed and none did,
``not run`` otherwise. The worst-case audit gets no verdict: its empirical ε is set beside the
accountant's ε (:func:`audit_sentences`).

Every sentence of the summary is chosen by a test on the recorded numbers; the numbers that the
sweep table holds are read from the run frame (records.run_frame), never recomputed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .. import chance
from ..families import Finding, ordered
from ..threats import BEATS_CHANCE, NO_ATTACK_BEAT_CHANCE, NOT_RUN, REALISTIC, THREAT_MODELS, WORST_CASE, ThreatModel
from .formatting import epsilon_label, fmt, fmt_signed
from .records import Point, Run, Sweep, baseline_reference, point_rows, reference_label, task_of

UNIT_OF_PRIVACY_TEXT = (
    "The unit of privacy is one training image, not one patient: DP-SGD bounds what any attacker can learn about "
    "one image. MedMNIST's splits are not made by patient, so a patient with k images in the training set is "
    "protected only at about k·ε (group privacy). The guarantee also assumes that the randomness of Poisson "
    "sampling and of the noise stays secret: seeded runs are reproducible from their seed, which the record "
    "holds (see 'randomness' under Run metadata)."
)
CHANCE_RULE_TEXT = (
    "Verdicts are given per threat model, because attackers differ in what they see. An attack counts as beating "
    "chance when its confidence interval excludes chance: a membership attack's AUC interval lies above 0.5, or its "
    "TPR interval at an FPR level lies above that level, or its empirical ε lower bound (a one-sided confidence "
    "bound) is above 0; or the privacy tail's share of images at high per-record risk has its interval above the "
    "upper quantile of that share with membership permuted across models; or the prior-aware attack's success interval lies above its chance 1/n; or a reconstruction "
    "attack reconstructs any image past its threshold η (ReRo share > 0). A threat model's verdict at a budget is "
    "'beats chance' if one of its attacks beat chance in any run (seed) there. The worst-case audit (canaries "
    "inserted by the auditor, who sees the training) is the DP guarantee's own adversary: with enough canaries its "
    "bound is above 0 at every finite ε by design, so it gets no verdict; it shows how tight the guarantee is."
)


# ============================================================================= evidence and verdicts
def chance_tests(run: Run) -> int:
    """How many intervals the chance rules look at in one run's realistic attacks (each one a chance of a false alarm)."""
    return sum(chance.intervals(name, result) for t in REALISTIC
               for name, result in chance.of_threat(run.attacks, t.key).items())


def chance_evidence(run: Run) -> list[Finding]:
    """Every result of the run's realistic attacks that beats chance, attacks in registry order."""
    return [f for t in REALISTIC for f in chance.evidence(chance.of_threat(run.attacks, t.key))]


Evidence = dict[Point, dict[str, list[str]]]


def evidence_by_point(sweep: Sweep) -> Evidence:
    """For each point and realistic threat model, every result past chance, as 'attack, seed s: numbers'."""
    return {point: {t.key: [f"{f.attack}, seed {r.seed}: {f.text}" for r in sweep.at_point(point)
                            for f in chance.evidence(chance.of_threat(r.attacks, t.key))] for t in REALISTIC}
            for point in sweep.points}


@dataclass(frozen=True)
class Verdict:
    value: str  # threats.VERDICTS
    text: str  # the result that decided it (seed named where the point has several)


def point_verdict(at: pd.DataFrame, threat: ThreatModel) -> Verdict:
    """The verdict of one threat model over the runs ``at`` one point (rows of the run frame)."""
    column, text = threat.verdict_column, threat.evidence_column
    if column not in at or at.empty:
        return Verdict(NOT_RUN, "")
    values = at[column].fillna(NOT_RUN)
    hit = at[values == BEATS_CHANCE]
    if len(hit):
        verdict, row = BEATS_CHANCE, hit.iloc[0]
    elif (values == NO_ATTACK_BEAT_CHANCE).all():
        verdict, row = NO_ATTACK_BEAT_CHANCE, at.iloc[0]
    else:
        return Verdict(NOT_RUN, "")
    seed = f" (seed {int(row['seed'])})" if len(at) > 1 else ""
    return Verdict(verdict, f"{row.get(text, '')}{seed}")


def threats_run(runs: pd.DataFrame) -> list[ThreatModel]:
    """The realistic threat models whose attacks ran somewhere in the sweep."""
    return [t for t in REALISTIC if t.verdict_column in runs and (runs[t.verdict_column].fillna(NOT_RUN) != NOT_RUN).any()]


def worst_case_ran(runs: pd.DataFrame) -> bool:
    return "worst_case_epsilon_lb" in runs and runs["worst_case_epsilon_lb"].notna().any()


# ============================================================================= summary in words
def mean_at(runs: pd.DataFrame, eps: float, column: str) -> float:
    """Mean of a run-frame column over the runs at ε (at ε = ∞: the baseline reference's; NaN where none has a value)."""
    return mean_at_point(runs, _point(runs, eps), column)


def mean_at_point(runs: pd.DataFrame, point: Point, column: str) -> float:
    values = point_rows(runs, point)[column].dropna() if column in runs else pd.Series(dtype=float)
    return float(values.mean()) if len(values) else math.nan


def _point(runs: pd.DataFrame, eps: float) -> Point:
    return Point(eps, (baseline_reference(runs) or "") if math.isinf(eps) else "")


def point_label(point: Point) -> str:
    return point.label


def _seeds_note(runs: pd.DataFrame, point: Point) -> str:
    n = len(point_rows(runs, point))
    return f" (means over {n} seeds)" if n > 1 else ""


def baseline_text(runs: pd.DataFrame) -> str:
    reference = baseline_reference(runs)
    if reference == "same_recipe":
        return "the same recipe without DP (no clipping, no noise)"
    if reference == "tuned":
        return "the tuned non-private recipe (this sweep has no same-recipe reference, so the gap also holds what the recipe costs)"
    return "the non-private run"


def utility_cost_sentence(runs: pd.DataFrame, eps: float, lead: str = "There, ") -> str:
    if not np.isinf(runs["epsilon"]).any():
        return "The sweep has no non-private run (ε = ∞), so the utility cost cannot be stated."
    point, ref = Point(eps), _point(runs, math.inf)
    task = task_of(runs)
    first, second = f"test_{task.headline}", f"test_{task.second}"
    acc, ref_acc = mean_at_point(runs, point, first), mean_at_point(runs, ref, first)
    auroc, ref_auroc = mean_at_point(runs, point, second), mean_at_point(runs, ref, second)
    out = (f"{lead}{task.headline_label} is {fmt(acc)}{_seeds_note(runs, point)} against {fmt(ref_acc)} for "
           f"{baseline_text(runs)}{_seeds_note(runs, ref)}, a change of {fmt_signed(acc - ref_acc)}; {task.second_label} is "
           f"{fmt(auroc)} against {fmt(ref_auroc)} ({fmt_signed(auroc - ref_auroc)}).")
    tuned = Point(math.inf, "tuned")
    if ref.reference != "tuned" and len(point_rows(runs, tuned)):
        out += (f" The tuned non-private recipe reaches {fmt(mean_at_point(runs, tuned, first))} "
                f"{task.headline_label} (shown as its own row).")
    return out


def summary_sentences(sweep: Sweep, runs: pd.DataFrame, evidence: Evidence) -> list[str]:
    """The summary in words: each sentence chosen by a test on the recorded numbers.

    ``runs`` is the sweep's run frame (records.run_frame), ``evidence`` its :func:`evidence_by_point`.
    """
    budgets = sweep.budgets
    seeds = sorted({r.seed for r in sweep.runs})
    references = [reference_label(p.reference) for p in sweep.points if p.reference]
    refs = f" (non-private references: {', '.join(references)})" if references else ""
    out = [f"{len(sweep.runs)} run(s) at {len(budgets)} budget(s) (ε = {', '.join(epsilon_label(e) for e in budgets)})"
           f"{refs}, {'seed' if len(seeds) == 1 else 'seeds'} {', '.join(map(str, seeds))}."]
    if not sweep.attacked:
        out.append("No attack was run in this sweep (attack=[]), so it measures utility and states the DP bounds "
                   "only; it says nothing about what an attacker can do at any budget.")
        private = [e for e in budgets if not math.isinf(e)]
        if private:
            out.append(f"The smallest budget is ε = {epsilon_label(min(private))}. " + utility_cost_sentence(runs, min(private)))
        return out
    costs: list[float] = []  # the budgets whose utility cost a sentence names, each stated once
    for threat in threats_run(runs):
        out += threat_sentences(sweep, runs, threat, costs)
    out += reconstruction_sentences(sweep, runs, costs)
    out += [utility_cost_sentence(runs, eps, lead=f"At ε = {epsilon_label(eps)}, ") for eps in sorted(set(costs))]
    out += audit_sentences(sweep, runs)
    out += _multiplicity_sentences(sweep, evidence)
    out += consistency_sentences(runs) + [w for family in ordered() for w in family.warnings(sweep)]
    return out


def threat_sentences(sweep: Sweep, runs: pd.DataFrame, threat: ThreatModel, costs: list[float]) -> list[str]:
    """For one realistic threat model: the largest DP budget at which none of its attacks beat chance
    (added to ``costs``: what it costs is stated once, after every threat model), where its attacks
    did beat chance, and what they do without DP."""
    verdicts = {p: point_verdict(point_rows(runs, p), threat) for p in sweep.points}
    private = [p for p in sweep.points if not p.reference and not math.isinf(p.epsilon)]
    judged = [p for p in private if verdicts[p].value != NOT_RUN]
    name = f"{threat.label.capitalize()} ({threat.sees})"
    out = []
    safe = [p for p in judged if verdicts[p].value == NO_ATTACK_BEAT_CHANCE]
    beaten = [p for p in judged if verdicts[p].value == BEATS_CHANCE]
    if not judged:
        out.append(f"{name}: its attacks ran only without DP.")
    elif not safe:
        first = judged[0]
        out.append(f"{name}: an attack beat chance at every DP budget, down to ε = {point_label(first)} "
                   f"({verdicts[first].text}).")
    else:
        top = max(safe, key=lambda p: p.epsilon)
        out.append(f"{name}: no attack beat chance at ε = {point_label(top)}, the largest such budget "
                   f"(strongest result: {verdicts[top].text}; σ = {fmt(mean_at_point(runs, top, 'sigma'))}).")
        costs.append(top.epsilon)
        below = [p for p in beaten if p.epsilon < top.epsilon]
        if below:
            out.append(f"At the smaller budget(s) ε = {', '.join(point_label(p) for p in below)}, however, an attack of "
                       f"this threat model did beat chance ({verdicts[below[0]].text}), so not every budget below "
                       "that one passes the same test.")
        above = [p for p in beaten if p.epsilon > top.epsilon]
        if above:
            out.append(f"At ε = {', '.join(point_label(p) for p in above)} it beat chance ({verdicts[above[0]].text}).")
    for point in (p for p in sweep.points if math.isinf(p.epsilon)):
        v = verdicts[point]
        if v.value == BEATS_CHANCE:
            out.append(f"Without DP ({point_label(point)}) it beats chance: {v.text}.")
        elif v.value == NO_ATTACK_BEAT_CHANCE:
            out.append(f"Without DP ({point_label(point)}) no attack of this threat model beat chance either "
                       f"({v.text}): these attacks find no measurable leakage here, so they cannot tell the budgets apart.")
    if threat.key == "informed_adversary" and beaten:
        out.append("The informed adversary is the threat model of the DP guarantee itself (Hayes et al. 2023): DP "
                   "bounds its success by the ReRo bound, not by chance, so beating chance is allowed; a success "
                   "interval above the bound would be a fault (checked below).")
    return out


def reconstruction_sentences(sweep: Sweep, runs: pd.DataFrame, costs: list[float]) -> list[str]:
    """Ziller et al.'s question: the largest ε at which no image is reconstructed past η by any
    reconstruction attack of a server (curious or malicious), with the one-step ReRo bound there."""
    servers = [THREAT_MODELS[k] for k in ("curious_server", "malicious_server")]
    private = [p for p in sweep.points if math.isfinite(p.epsilon)]
    judged = {p: [point_verdict(point_rows(runs, p), t) for t in servers] for p in private}
    judged = {p: v for p, v in judged.items() if any(x.value != NOT_RUN for x in v)}
    if not judged:
        return []
    clean = [p for p, v in judged.items() if all(x.value != BEATS_CHANCE for x in v)]
    if not clean:
        return [f"Reconstruction by a server: at every budget of the sweep some image was reconstructed past η, down "
                f"to ε = {point_label(min(judged, key=lambda p: p.epsilon))}."]
    top = max(clean, key=lambda p: p.epsilon)
    bound = mean_at_point(runs, top, "rero_bound_step")
    out = [f"Reconstruction by a server (gradient inversion, imprint): the largest budget at which no image is "
           f"reconstructed past η is ε = {point_label(top)}, where the ReRo bound of one client step allows at most "
           f"{fmt(bound)} (κ = 1/N)."]
    costs.append(top.epsilon)
    above = sorted(p.epsilon for p, v in judged.items() if p.epsilon < top.epsilon and any(x.value == BEATS_CHANCE for x in v))
    if above:
        out.append(f"Images were reconstructed past η at the smaller budget(s) ε = "
                   f"{', '.join(epsilon_label(e) for e in above)}, so that boundary is not monotone in this sweep.")
    return out


def audit_sentences(sweep: Sweep, runs: pd.DataFrame) -> list[str]:
    """The worst-case audit as what it is: its empirical ε beside the accountant's ε, and their ratio."""
    if not worst_case_ran(runs):
        return []
    parts = []
    for point in (p for p in sweep.points if not p.reference and not math.isinf(p.epsilon)):
        lb, spent = mean_at_point(runs, point, "worst_case_epsilon_lb"), mean_at_point(runs, point, "epsilon_spent")
        if not math.isnan(lb):
            parts.append(f"ε = {point_label(point)}: ε ≥ {fmt(lb)} of {fmt(spent)} ({tightness_text(lb / spent)})")
    if not parts:
        return []
    return [f"{WORST_CASE.label.capitalize()} ({WORST_CASE.sees}): the guarantee is at least this tight — "
            + "; ".join(parts) + ". These are lower bounds on the ε the training really has, not attacks on "
            "patients: at any finite ε a large enough audit shows a bound above 0."]


def tightness_text(ratio: float) -> str:
    """An empirical ε ÷ the accountant's ε as a percentage with 3 significant digits (39.1 %, 0.000876 %)."""
    return f"{100 * ratio:.3g}%"


def _multiplicity_sentences(sweep: Sweep, evidence: Evidence) -> list[str]:
    """Many intervals per run: a lone finding just past chance may be luck; say how many were looked at."""
    tests = max(chance_tests(r) for r in sweep.runs)
    if tests < 2 or not any(found for per in evidence.values() for found in per.values()):
        return []
    return [f"Each run is judged by up to {tests} intervals and tests (every realistic attack and criterion), so an "
            "isolated result just past chance can be luck; the list below the headline table gives each result's numbers."]


def consistency_sentences(runs: pd.DataFrame) -> list[str]:
    """DP requires every honest empirical lower bound to stay below the accountant's ε."""
    private = runs[np.isfinite(runs["epsilon_spent"])]
    checked = private[private["epsilon_lb_max"].notna()]
    if checked.empty:
        return []
    above = checked[checked["epsilon_lb_max"] > checked["epsilon_spent"]]
    if above.empty:
        return ["No empirical ε lower bound exceeds the accountant's ε, as DP requires (a check at level α in total: "
                "each bound of a run is computed at α divided by their number)."]
    cases = ", ".join(f"ε = {epsilon_label(r.epsilon)} seed {r.seed} (lower bound "
                      f"{fmt(r.epsilon_lb_max)} > {fmt(r.epsilon_spent)})"
                      for r in above.itertuples())
    return [f"Warning: an empirical ε lower bound exceeds the accountant's ε at {cases}; DP forbids this, so the "
            "training, the accounting or the attack evaluation is wrong and these results should not be trusted."]

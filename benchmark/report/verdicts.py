"""Does an attack beat chance? The rules, the evidence behind each verdict and the summary in words.

"An attack beats chance" (:data:`CHANCE_RULE_TEXT`, stated in the report) when a confidence
interval of its result excludes chance. What that means depends on the attack's family
(benchmark/registry.py), so there is one :class:`ChanceRule` per family in :data:`CHANCE_RULES`:

* membership: a variant's AUC interval lies above 0.5, or its TPR interval at an FPR level lies
  above that level, or its empirical ε lower bound (a one-sided bound at confidence 1 − α) is > 0;
* audit: the audit's ε lower bound is > 0;
* prior_aware: the success interval lies above chance 1/n;
* reconstruction: any image is reconstructed past the threshold η (ReRo share > 0).

Every sentence of the summary is chosen by a test on the recorded numbers; the numbers that the
sweep table holds are read from the run frame (records.run_frame), never recomputed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .. import registry
from .formatting import epsilon_label, fmt, fmt_ci, fmt_percent, fmt_signed
from .records import Run, Sweep


@dataclass(frozen=True)
class Finding:
    """One attack result that beats chance: which attack, and the numbers that show it."""

    attack: str
    text: str


def _membership_evidence(name: str, result: dict) -> Iterator[Finding]:
    for key, m in result["variants"].items():
        label, level = registry.label(key), fmt_percent(m.get("confidence", 0.95))
        lo, hi = m["auc_ci"]
        if lo > 0.5:
            yield Finding(label, f"AUC {fmt_ci(m['auc'], lo, hi)} ({level} CI) lies above 0.5")
        for fpr, tpr, (lo, hi) in zip(m["fpr_levels"], m["tpr_at_fpr"], m["tpr_at_fpr_ci"]):
            if lo > fpr:
                yield Finding(label, f"TPR at {fmt_percent(fpr)} FPR {fmt_ci(tpr, lo, hi)} ({level} CI) lies above {fpr:g}")
        e = m["empirical_epsilon"]
        if e["epsilon_lb"] > 0:
            yield Finding(label, f"empirical ε lower bound {fmt(e['epsilon_lb'])} > 0 "
                                 f"(at confidence 1 − {e.get('alpha', math.nan):g})")


def _audit_evidence(name: str, result: dict) -> Iterator[Finding]:
    """An audit's ε lower bound above 0, with its guess counts where the result records them at its top level."""
    if result["epsilon_lb"] > 0:
        guesses = f"{result['v']} of {result['r']} guesses correct, " if "v" in result and "r" in result else ""
        yield Finding(registry.label(name), f"ε lower bound {fmt(result['epsilon_lb'])} > 0 ({guesses}confidence "
                                            f"1 − {result.get('alpha', math.nan):g})")


def _prior_aware_evidence(name: str, result: dict) -> Iterator[Finding]:
    if result["ci_low"] > result["chance"]:
        yield Finding(registry.label(name), f"success {fmt_ci(result['success_rate'], result['ci_low'], result['ci_high'])} "
                                            f"lies above chance {fmt(result['chance'])}")


def _reconstruction_evidence(name: str, result: dict) -> Iterator[Finding]:
    for metric, share in (result.get("rero") or {}).items():
        if share > 0:
            eta = (result.get("eta") or {}).get(metric, math.nan)
            yield Finding(registry.label(name), f"{fmt(share)} of the images reconstructed past η = {eta:g} ({metric.upper()})")


@dataclass(frozen=True)
class ChanceRule:
    """How the results of one attack family are judged against chance."""

    evidence: Callable[[str, dict], Iterator[Finding]]  # (attack name, its result) -> the findings past chance
    intervals: Callable[[dict], int]  # how many intervals and tests the rule looks at in one result


CHANCE_RULES: dict[str, ChanceRule] = {
    "membership": ChanceRule(_membership_evidence,
                             lambda result: sum(2 + len(m["fpr_levels"]) for m in result["variants"].values())),
    "audit": ChanceRule(_audit_evidence, lambda result: 1),
    "reconstruction": ChanceRule(_reconstruction_evidence, lambda result: len(result.get("rero") or {})),
    "prior_aware": ChanceRule(_prior_aware_evidence, lambda result: 1),
}
UNIT_OF_PRIVACY_TEXT = (
    "The unit of privacy is one training image, not one patient: DP-SGD bounds what any attacker can learn about "
    "one image. MedMNIST's splits are not made by patient, so a patient with k images in the training set is "
    "protected only at about k·ε (group privacy). The guarantee also assumes that the randomness of Poisson "
    "sampling and of the noise stays secret: seeded runs are reproducible from their seed, which the record "
    "holds (see 'randomness' under Run metadata)."
)
CHANCE_RULE_TEXT = (
    "An attack counts as beating chance when its confidence interval excludes chance: a membership attack's "
    "AUC interval lies above 0.5, or its TPR interval at an FPR level lies above that level; or an empirical "
    "ε lower bound of a membership attack or of an audit (one-run or white-box; already a one-sided confidence "
    "bound) is above 0; or the prior-aware "
    "attack's success interval lies above its chance 1/n; or a reconstruction attack reconstructs any image "
    "past its threshold η (ReRo share > 0). A budget counts as safe only if no attack beats chance in any of "
    "its runs (seeds)."
)


def _rule(name: str) -> ChanceRule:
    return CHANCE_RULES[registry.ATTACKS[name].family]


def chance_tests(run: Run) -> int:
    """How many intervals :data:`CHANCE_RULES` look at in one run (each one a chance of a false alarm)."""
    return sum(_rule(name).intervals(result) for name, result in run.attacks.items())


def chance_evidence(run: Run) -> list[Finding]:
    """Every result of the run that beats chance, attacks in registry order."""
    return [finding for name, result in run.attacks.items() for finding in _rule(name).evidence(name, result)]


def evidence_by_budget(sweep: Sweep) -> dict[float, list[str]]:
    """For each ε, every attack result that beats chance, as 'attack, seed s: numbers'."""
    return {eps: [f"{f.attack}, seed {r.seed}: {f.text}" for r in sweep.at(eps) for f in chance_evidence(r)]
            for eps in sweep.budgets}


# ============================================================================= summary in words
def mean_at(runs: pd.DataFrame, eps: float, column: str) -> float:
    """Mean of a run-frame column over the runs at ε (NaN where none has a value)."""
    values = runs.loc[runs["epsilon"] == eps, column].dropna()
    return float(values.mean()) if len(values) else math.nan


def _seeds_note(runs: pd.DataFrame, eps: float) -> str:
    n = int((runs["epsilon"] == eps).sum())
    return f" (means over {n} seeds)" if n > 1 else ""


def utility_cost_sentence(runs: pd.DataFrame, eps: float) -> str:
    if not np.isinf(runs["epsilon"]).any():
        return "The sweep has no non-private run (ε = ∞), so the utility cost cannot be stated."
    acc, ref = mean_at(runs, eps, "test_accuracy"), mean_at(runs, math.inf, "test_accuracy")
    auroc, ref_auroc = mean_at(runs, eps, "test_auroc"), mean_at(runs, math.inf, "test_auroc")
    return (f"There, test accuracy is {fmt(acc)}{_seeds_note(runs, eps)} against {fmt(ref)} without DP"
            f"{_seeds_note(runs, math.inf)}, a change of {fmt_signed(acc - ref)}; test AUROC is {fmt(auroc)} "
            f"against {fmt(ref_auroc)} ({fmt_signed(auroc - ref_auroc)}).")


def summary_sentences(sweep: Sweep, runs: pd.DataFrame, evidence: dict[float, list[str]]) -> list[str]:
    """The summary in words: each sentence chosen by a test on the recorded numbers.

    ``runs`` is the sweep's run frame (records.run_frame), ``evidence`` its :func:`evidence_by_budget`.
    """
    budgets = sweep.budgets
    seeds = sorted({r.seed for r in sweep.runs})
    out = [f"{len(sweep.runs)} run(s) at {len(budgets)} budget(s) (ε = {', '.join(epsilon_label(e) for e in budgets)}), "
           f"{'seed' if len(seeds) == 1 else 'seeds'} {', '.join(map(str, seeds))}."]
    if not sweep.attacked:
        out.append("No attack was run in this sweep (attack=[]), so it measures utility and states the DP bounds "
                   "only; it says nothing about what an attacker can do at any budget.")
        private = [e for e in budgets if not math.isinf(e)]
        if private:
            out.append(f"The smallest budget is ε = {epsilon_label(min(private))}. " + utility_cost_sentence(runs, min(private)))
        return out
    out += _verdict_sentences(budgets, runs, evidence)
    out += _multiplicity_sentences(sweep, evidence)
    out += _nonprivate_sentences(sweep, runs, evidence) + consistency_sentences(runs) + _bound_sentences(sweep)
    return out


def _verdict_sentences(budgets: list[float], runs: pd.DataFrame, evidence: dict[float, list[str]]) -> list[str]:
    """The largest budget at which no attack beat chance, and what it costs; or why there is none."""
    safe = [e for e in budgets if not evidence[e]]
    if not safe:
        where = "At every budget, down to the smallest," if len(budgets) > 1 else "At the only budget,"
        return [f"{where} ε = {epsilon_label(budgets[0])}, at least one attack beat chance within its confidence "
                f"interval ({len(evidence[budgets[0]])} result(s) there; listed below the headline table)."]
    if math.isinf(max(safe)) and len(safe) == len(budgets):
        return ["No attack beat chance within its confidence interval at any budget, not even against the "
                "non-private model (ε = ∞): the attacks run here found no measurable leakage in this sweep, "
                "so it cannot tell the budgets apart by risk."]
    if math.isinf(max(safe)):
        return ["No attack beat chance within its confidence interval against the non-private model (ε = ∞), "
                "yet attacks did at smaller budgets (listed below the headline table): the attacks' power varies "
                "between runs, so no budget threshold can be read from this sweep."]
    top = max(safe)
    out = [f"The largest budget at which no attack beat chance within its confidence interval is "
           f"ε = {epsilon_label(top)} (noise multiplier σ = {fmt(mean_at(runs, top, 'sigma'))}, accountant ε "
           f"spent {fmt(mean_at(runs, top, 'epsilon_spent'))}).", utility_cost_sentence(runs, top)]
    below = [e for e in budgets if e < top and evidence[e]]
    if below:
        out.append(f"At the smaller budget(s) ε = {', '.join(epsilon_label(e) for e in below)}, however, an attack "
                   "did beat chance, so the budgets below this one are not all safe by the same test.")
    return out


def _multiplicity_sentences(sweep: Sweep, evidence: dict[float, list[str]]) -> list[str]:
    """Many intervals per run: a lone finding just past chance may be luck; say how many were looked at."""
    tests = max(chance_tests(r) for r in sweep.runs)
    if tests < 2 or not any(evidence.values()):
        return []
    return [f"Each run is judged by up to {tests} intervals and tests (every attack and criterion), so an isolated "
            "result just past chance can be luck; the list below the headline table gives each result's numbers."]


def _nonprivate_sentences(sweep: Sweep, runs: pd.DataFrame, evidence: dict[float, list[str]]) -> list[str]:
    if math.inf not in evidence or not evidence[math.inf]:
        return []
    found = evidence[math.inf]
    best_auc, best_tpr = mean_at(runs, math.inf, "mia_best_auc"), mean_at(runs, math.inf, "mia_best_tpr_at_0.1%fpr")
    membership = (f" The strongest membership attack reached AUC {fmt(best_auc)} and TPR {fmt(best_tpr)} at "
                  f"{fmt_percent(lowest_fpr_level(sweep))} FPR." if not math.isnan(best_auc) else "")
    return [f"Without DP (ε = ∞), {len(found)} attack result(s) beat chance, for example {found[0]}.{membership}"]


def _bound_sentences(sweep: Sweep) -> list[str]:
    """No attack may beat its theoretical bound: a prior-aware attack's interval must reach its ReRo bound."""
    out = []
    for spec in sweep.attacks_of("prior_aware"):
        above = [(r, p) for r in sweep.runs if (p := r.results("prior_aware").get(spec.name)) and p["ci_low"] > p["bound"]]
        if not above:
            continue
        cases = ", ".join(f"ε = {epsilon_label(r.epsilon)} seed {r.seed} (success interval from {fmt(p['ci_low'])} > "
                          f"bound {fmt(p['bound'])})" for r, p in above)
        out.append(f"Warning: the {spec.label} attack succeeds more often than its ReRo bound allows at {cases}; the "
                   "bound, the accounting or the attack simulation is wrong and these results should not be trusted.")
    return out


def lowest_fpr_level(sweep: Sweep) -> float:
    """The lowest FPR level of the membership variants (the level of the summary's best-TPR column)."""
    levels = [m["fpr_levels"][0] for r in sweep.runs for m in r.membership_variants().values()]
    return min(levels) if levels else math.nan


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

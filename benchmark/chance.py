"""Does an attack beat chance? The rules, the evidence behind each verdict, and one verdict per threat model.

"An attack beats chance" when a confidence interval of its result excludes chance. What that
means depends on the attack's family (benchmark/registry.py), so there is one :class:`ChanceRule`
per family in :data:`CHANCE_RULES`:

* membership: a variant's AUC interval lies above 0.5, or its TPR interval at an FPR level lies
  above that level, or its empirical ε lower bound (a one-sided bound at confidence 1 − α) is > 0;
* audit: the audit's ε lower bound is > 0 (only ever used to describe an audit: the worst-case
  audit is never given a chance verdict, benchmark/threats.py);
* prior_aware: the success interval lies above chance 1/n;
* reconstruction: any image is reconstructed past the threshold η (ReRo share > 0).

:func:`threat_columns` turns a run's results into the sweep table's verdict columns, one per
realistic threat model (``verdict_<key>`` and the result that decided it), and the worst-case
audit's tightness; the run record computes them once (benchmark/record.py), the report reads them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from . import registry
from .threats import BEATS_CHANCE, NO_ATTACK_BEAT_CHANCE, NOT_RUN, REALISTIC, WORST_CASE


def _fmt(value: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if math.isinf(value):
        return "∞"
    return f"{value:.3g}" if value != 0 and (abs(value) >= 1e4 or abs(value) < 1e-3) else f"{value:.3f}"


def _ci(value: float, lo: float, hi: float) -> str:
    return f"{_fmt(value)} [{_fmt(lo)}, {_fmt(hi)}]"


def _percent(level: float) -> str:
    return f"{100 * level:g}%"


@dataclass(frozen=True)
class Finding:
    """One attack result that beats chance: which attack, the numbers that show it, and a short form."""

    attack: str
    text: str
    short: str


def _membership_evidence(name: str, result: dict) -> Iterator[Finding]:
    for key, m in result["variants"].items():
        label, level = registry.label(key), _percent(m.get("confidence", 0.95))
        lo, hi = m["auc_ci"]
        if lo > 0.5:
            yield Finding(label, f"AUC {_ci(m['auc'], lo, hi)} ({level} CI) lies above 0.5",
                          f"{label} AUC {_ci(m['auc'], lo, hi)}")
        for fpr, tpr, (lo, hi) in zip(m["fpr_levels"], m["tpr_at_fpr"], m["tpr_at_fpr_ci"]):
            if lo > fpr:
                yield Finding(label, f"TPR at {_percent(fpr)} FPR {_ci(tpr, lo, hi)} ({level} CI) lies above {fpr:g}",
                              f"{label} TPR {_fmt(tpr)} at {_percent(fpr)} FPR")
        e = m["empirical_epsilon"]
        if e["epsilon_lb"] > 0:
            yield Finding(label, f"empirical ε lower bound {_fmt(e['epsilon_lb'])} > 0 "
                                 f"(at confidence 1 − {e.get('alpha', math.nan):g})",
                          f"{label} ε ≥ {_fmt(e['epsilon_lb'])}")


def _membership_strongest(name: str, result: dict) -> tuple[float, str]:
    key, m = max(result["variants"].items(), key=lambda kv: kv[1]["auc"])
    return m["auc"], f"{registry.label(key)} AUC {_ci(m['auc'], *m['auc_ci'])}"


def _audit_evidence(name: str, result: dict) -> Iterator[Finding]:
    """An audit's ε lower bound above 0, with its guess counts where the result records them at its top level."""
    if result["epsilon_lb"] > 0:
        guesses = f"{result['v']} of {result['r']} guesses correct, " if "v" in result and "r" in result else ""
        yield Finding(registry.label(name), f"ε lower bound {_fmt(result['epsilon_lb'])} > 0 ({guesses}confidence "
                                            f"1 − {result.get('alpha', math.nan):g})", f"ε ≥ {_fmt(result['epsilon_lb'])}")


def _audit_strongest(name: str, result: dict) -> tuple[float, str]:
    return result["epsilon_lb"], f"{registry.label(name)} ε ≥ {_fmt(result['epsilon_lb'])}"


def _prior_aware_evidence(name: str, result: dict) -> Iterator[Finding]:
    if result["ci_low"] > result["chance"]:
        yield Finding(registry.label(name), f"success {_ci(result['success_rate'], result['ci_low'], result['ci_high'])} "
                                            f"lies above chance {_fmt(result['chance'])}",
                      f"success {_fmt(result['success_rate'])} vs chance {_fmt(result['chance'])}"
                      + (f" (ReRo bound {_fmt(result['bound'])})" if "bound" in result else ""))


def _prior_aware_strongest(name: str, result: dict) -> tuple[float, str]:
    return result["success_rate"], (f"success {_ci(result['success_rate'], result['ci_low'], result['ci_high'])}, "
                                    f"chance {_fmt(result['chance'])}")


def _reconstruction_evidence(name: str, result: dict) -> Iterator[Finding]:
    for metric, share in (result.get("rero") or {}).items():
        if share > 0:
            eta = (result.get("eta") or {}).get(metric, math.nan)
            yield Finding(registry.label(name), f"{_fmt(share)} of the images reconstructed past η = {eta:g} ({metric.upper()})",
                          f"{registry.label(name)} ReRo {_fmt(share)} ({metric.upper()})")


def _reconstruction_strongest(name: str, result: dict) -> tuple[float, str]:
    return result.get("psnr_max", math.nan), (f"{registry.label(name)} ReRo 0, best PSNR "
                                              f"{_fmt(result.get('psnr_max', math.nan))} dB")


@dataclass(frozen=True)
class ChanceRule:
    """How the results of one attack family are judged against chance."""

    evidence: Callable[[str, dict], Iterator[Finding]]  # (attack name, its result) -> the findings past chance
    intervals: Callable[[dict], int]  # how many intervals and tests the rule looks at in one result
    strongest: Callable[[str, dict], tuple[float, str]]  # the attack's best result when none beat chance (value, text)


CHANCE_RULES: dict[str, ChanceRule] = {
    "membership": ChanceRule(_membership_evidence,
                             lambda result: sum(2 + len(m["fpr_levels"]) for m in result["variants"].values()),
                             _membership_strongest),
    "audit": ChanceRule(_audit_evidence, lambda result: 1, _audit_strongest),
    "reconstruction": ChanceRule(_reconstruction_evidence, lambda result: len(result.get("rero") or {}),
                                 _reconstruction_strongest),
    "prior_aware": ChanceRule(_prior_aware_evidence, lambda result: 1, _prior_aware_strongest),
}


def rule(name: str) -> ChanceRule:
    return CHANCE_RULES[registry.ATTACKS[name].family]


def evidence(attacks: dict[str, dict]) -> list[Finding]:
    """Every result that beats chance among ``attacks`` (name → result, registry order kept)."""
    return [finding for name, result in attacks.items() for finding in rule(name).evidence(name, result)]


def of_threat(attacks: dict[str, dict], key: str) -> dict[str, dict]:
    """The results of the attacks whose threat model is ``key``."""
    return {name: result for name, result in attacks.items() if registry.ATTACKS[name].threat == key}


def verdict(attacks: dict[str, dict], key: str) -> tuple[str, str]:
    """(verdict, the result that decided it) of one realistic threat model over a run's attacks.

    ``beats chance`` with the first finding past chance; ``no attack beat chance`` with the
    strongest result of the threat model's attacks; ``not run`` when none of them ran.
    """
    mine = of_threat(attacks, key)
    if not mine:
        return NOT_RUN, ""
    found = evidence(mine)
    if found:
        return BEATS_CHANCE, found[0].short + (f" (+{len(found) - 1} more)" if len(found) > 1 else "")
    strongest = [rule(name).strongest(name, result) for name, result in mine.items()]
    best = max(strongest, key=lambda vt: -math.inf if math.isnan(vt[0]) else vt[0])
    return NO_ATTACK_BEAT_CHANCE, best[1]


def threat_columns(attacks: dict[str, dict], epsilon_spent: float) -> dict:
    """The sweep table's verdict columns of one run (see the module docstring).

    For the worst-case audit: ``worst_case_epsilon_lb``, the largest ε lower bound of its audits,
    and ``worst_case_tightness``, that bound ÷ the accountant's ε (the share of the guarantee the
    audit shows to be tight; NaN without DP).
    """
    registry.load()
    row: dict = {}
    for threat in REALISTIC:
        row[threat.verdict_column], row[threat.evidence_column] = verdict(attacks, threat.key)
    audits = of_threat(attacks, WORST_CASE.key)
    if audits:
        bound = max(result["epsilon_lb"] for result in audits.values())
        row["worst_case_epsilon_lb"] = bound
        row["worst_case_tightness"] = bound / epsilon_spent if 0 < epsilon_spent < math.inf else math.nan
    return row

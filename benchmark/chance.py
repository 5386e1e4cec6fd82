"""Does an attack beat chance? One verdict per threat model, from each family's chance rule.

"An attack beats chance" when a confidence interval of its result excludes chance. What that
means depends on the attack's family, so each family states its own rule
(:meth:`~benchmark.families.base.Family.findings`: membership intervals above chance, an audit's
bound above 0, a prior-aware success above 1/n, an image reconstructed past η).

:func:`threat_columns` turns a run's results into the sweep table's verdict columns, one per
realistic threat model (``verdict_<key>`` and the result that decided it), and the worst-case
audit's tightness; the run summary computes them once (benchmark/summary.py), the report reads them.
"""

from __future__ import annotations

import math

from . import registry
from .families import AttackResult, Finding
from .threats import BEATS_CHANCE, NO_ATTACK_BEAT_CHANCE, NOT_RUN, REALISTIC, WORST_CASE


def findings(name: str, result: AttackResult) -> list[Finding]:
    """The findings past chance of one attack's (typed) result."""
    entry = registry.ATTACKS[name]
    return list(entry.family.findings(entry.label, result))


def intervals(name: str, result: AttackResult) -> int:
    """How many intervals and tests the attack's family rule looks at in one result."""
    return registry.ATTACKS[name].family.intervals(result)


def evidence(attacks: dict[str, AttackResult]) -> list[Finding]:
    """Every result that beats chance among ``attacks`` (name → typed result, run order kept)."""
    return [finding for name, result in attacks.items() for finding in findings(name, result)]


def of_threat(attacks: dict[str, AttackResult], key: str) -> dict[str, AttackResult]:
    """The results of the attacks whose threat model is ``key``."""
    return {name: result for name, result in attacks.items() if registry.ATTACKS[name].threat == key}


def verdict(attacks: dict[str, AttackResult], key: str) -> tuple[str, str]:
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
    strongest = [registry.ATTACKS[name].family.strongest(registry.ATTACKS[name].label, result) for name, result in mine.items()]
    best = max(strongest, key=lambda vt: -math.inf if math.isnan(vt[0]) else vt[0])
    return NO_ATTACK_BEAT_CHANCE, best[1]


def threat_columns(attacks: dict, epsilon_spent: float) -> dict:
    """The sweep table's verdict columns of one run (``attacks``: name → result, typed or recorded).

    For the worst-case audit: ``worst_case_epsilon_lb``, the largest ε lower bound of its audits,
    and ``worst_case_tightness``, that bound ÷ the accountant's ε (the share of the guarantee the
    audit shows to be tight; NaN without DP).
    """
    attacks = registry.read_results(attacks)
    row: dict = {}
    for threat in REALISTIC:
        row[threat.verdict_column], row[threat.evidence_column] = verdict(attacks, threat.key)
    audits = of_threat(attacks, WORST_CASE.key)
    if audits:
        bound = max(result.epsilon_lb for result in audits.values())
        row["worst_case_epsilon_lb"] = bound
        row["worst_case_tightness"] = bound / epsilon_spent if 0 < epsilon_spent < math.inf else math.nan
    return row

"""Threat models: who the attacker is, in one place, and how the report judges each.

Every attack in the registry (benchmark/registry.py) declares one :class:`ThreatModel` by key.
The report gives one verdict per threat model and per budget, because "an attack beat chance"
means different things for different adversaries:

* the realistic adversaries (``black_box``, ``curious_server``, ``malicious_server``,
  ``informed_adversary``) are judged by whether an attack of theirs beats chance within its
  confidence interval (benchmark/chance.py): ``beats chance``, ``no attack beat chance`` or
  ``not run``;
* ``worst_case_audit`` is the DP guarantee's own adversary, who inserts examples and reads the
  training. With enough canaries its ε lower bound is above 0 at *every* finite ε, by design: it
  measures how tight the guarantee is, not whether a realistic attacker reaches a patient. It is
  reported as its empirical ε beside the accountant's ε and their ratio, never as a verdict.
"""

from __future__ import annotations

from dataclasses import dataclass

BEATS_CHANCE = "beats chance"
NO_ATTACK_BEAT_CHANCE = "no attack beat chance"
NOT_RUN = "not run"
VERDICTS = (BEATS_CHANCE, NO_ATTACK_BEAT_CHANCE, NOT_RUN)


@dataclass(frozen=True)
class ThreatModel:
    key: str
    label: str  # short, for table headers and the verdict grid
    sees: str  # what the attacker has, in plain words
    realistic: bool  # judged against chance (True) or reported as the guarantee's tightness (False)

    @property
    def verdict_column(self) -> str:
        return f"verdict_{self.key}"

    @property
    def evidence_column(self) -> str:
        """The result that decided the verdict (the first past chance, else the strongest), as short text."""
        return f"verdict_{self.key}_evidence"


THREAT_MODELS: dict[str, ThreatModel] = {t.key: t for t in (
    ThreatModel("black_box", "black box",
                "query access to the released model (its outputs on chosen images): loss, LiRA, RMIA, the privacy tail", True),
    ThreatModel("curious_server", "curious server",
                "one client's clipped and noised update, as an honest-but-curious server receives it: gradient "
                "inversion, DLG", True),
    ThreatModel("malicious_server", "malicious server",
                "a server that designs the model it sends, then reads the client's noised update: imprint", True),
    ThreatModel("informed_adversary", "informed adversary",
                "every training record but one, every model state and noisy update, and a prior of candidates: the "
                "prior-aware attack, against the ReRo bound", True),
    ThreatModel("worst_case_audit", "worst-case audit",
                "inserts its own examples (canaries) and sees the training: the DP guarantee's own adversary "
                "(white-box and black-box canary audits); it measures how tight the guarantee is", False),
)}
REALISTIC = tuple(t for t in THREAT_MODELS.values() if t.realistic)
WORST_CASE = THREAT_MODELS["worst_case_audit"]


def threat(key: str) -> ThreatModel:
    if key not in THREAT_MODELS:
        raise ValueError(f"threat model {key!r} is not valid; choose one of {', '.join(THREAT_MODELS)}")
    return THREAT_MODELS[key]

"""DP auditing: empirical lower bounds on ε from membership attack outcomes.

Three audits, all honest lower bounds at confidence 1 − α that the accountant's ε must never
undercut (if it does, something in training or accounting is wrong), one module each:

- :func:`empirical_epsilon` (:mod:`.threshold_audit`): one membership test at a fixed threshold,
  its error rates bounded with Clopper–Pearson intervals (:func:`clopper_pearson_epsilon`); the
  threshold is chosen on a selection split and evaluated on a disjoint evaluation split.
- :func:`one_run_audit` (:mod:`.one_run_counting`): Steinke, Nasr, Jagielski, "Privacy Auditing
  with One (1) Training Run" (NeurIPS 2023): m canaries each included with probability ½ in a
  single training run; the auditor guesses the inclusion of the highest- and lowest-scoring canaries.
- :func:`held_out_target_epsilon` (:mod:`.one_run_counting`): the same counting on a membership
  pool, one held-out model the run and its images the canaries.

Definitions (an (ε, δ)-DP mechanism, any membership test): TPR ≤ e^ε·FPR + δ and, applied to
the complementary test, TNR ≤ e^ε·FNR + δ.

This module is the audits' front door: the engine imports them, and the settings of the image
canary audit, from here.
"""

from __future__ import annotations

from dataclasses import dataclass

from .one_run_counting import GUESS_SHARES, held_out_target_epsilon, one_run_audit, one_run_epsilon, one_run_p_value
from .settings import Validated, choice, integer, real
from .threshold_audit import clopper_pearson_epsilon, empirical_epsilon, epsilon_ceiling

__all__ = [
    "CANARY_KINDS",
    "CanaryAuditConfig",
    "GUESS_SHARES",
    "clopper_pearson_epsilon",
    "empirical_epsilon",
    "epsilon_ceiling",
    "held_out_target_epsilon",
    "one_run_audit",
    "one_run_epsilon",
    "one_run_p_value",
]

CANARY_KINDS = ("mislabelled", "ood")


@dataclass
class CanaryAuditConfig(Validated):
    """One-run audit (Steinke, Nasr, Jagielski 2023) with image canaries: ``n_canaries`` held-out
    images, each in one training run with probability ½; mislabelled (label flipped) or ood
    (inverted intensities, random label). The auditor guesses k₊ = k₋ = ``guess_fraction``·m,
    fixed before scoring."""

    n_canaries: int = integer(256, 1)
    canary: str = choice("mislabelled", CANARY_KINDS)
    guess_fraction: float = real(0.25, 0.0, 0.5, low_open=True)

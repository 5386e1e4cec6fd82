"""The white-box one-run audit with gradient canaries: settings, guess counts and the analyses.

The auditor of the DP guarantee itself (Nasr et al., "Tight auditing of differentially private
machine learning", USENIX Security 2023; Steinke, Nasr, Jagielski, NeurIPS 2023, white-box) inserts
m Dirac gradient canaries into one training run, each with probability ½, observes the run's
noisy updates (all iterates) or its final model, scores every canary and guesses the inclusion of
the k₊ highest and the k₋ lowest scores. The engine trains with the canaries
(benchmark/canaries.py); this module is pure: scores and ground truth in, bounds out.

Guess counts are fixed before any observation is scored: they are the counts that give the
largest bound on the *idealised* mechanism with the run's σ, q, T and m
(:func:`medprivbench.attacks.one_run_analysis.simulate_ideal_canaries`), which depends on the
claimed recipe only. The same simulation gives the ceiling: what the analysis reaches when the
training is exactly the mechanism it claims to be; tightness = empirical ε / ceiling.

Analyses (:func:`medprivbench.attacks.one_run_analysis.one_run_bounds`): ``steinke`` (the binomial
test of Steinke et al., valid for any (ε, δ)-DP training), ``fdp_approx_dp`` (the f-DP one-run test
of Mahloujifar, Melis, Chaudhuri, ICML 2025, against (ε, δ) claims: valid for any mechanism) and
``fdp_dpsgd`` (the same test against the trade-off curves of DP-SGD at the run's q and T indexed by
σ′: a lower bound on ε for a mechanism that is DP-SGD at some noise level, which is what the audit
checks). The Gaussian-DP family is not offered: it does not bound subsampled mechanisms.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .one_run_analysis import OBSERVATIONS, IdealisedRuns, analyse
from .settings import Validated, choices, integer

__all__ = ["ANALYSES", "GUESS_SHARES", "GradientCanaryAuditConfig", "IdealisedRuns", "analyse", "choose_guesses"]

ANALYSES = ("steinke", "fdp_approx_dp", "fdp_dpsgd")
# Candidate guess counts (k₊, k₋) as shares of m; the best on the idealised mechanism is used.
GUESS_SHARES = ((0.01, 0.0), (0.02, 0.01), (0.04, 0.02), (0.05, 0.05), (0.08, 0.04), (0.1, 0.1), (0.2, 0.1))


@dataclass
class GradientCanaryAuditConfig(Validated):
    """White-box audit inside the target's own training: ``n_canaries`` gradient canaries, each
    included with probability ½; bounds for each observation model and analysis; the ceiling from
    ``ceiling_simulations`` runs of the idealised mechanism (which also choose the guess counts)."""

    n_canaries: int = integer(5000, 20)
    observations: list = choices(list(OBSERVATIONS), OBSERVATIONS)
    analyses: list = choices(["steinke", "fdp_dpsgd"], ANALYSES)
    ceiling_simulations: int = integer(3, 1)

    def check(self) -> None:
        if not self.observations or not self.analyses:
            raise ValueError("observations and analyses must each name at least one; "
                             f"choose from {', '.join(OBSERVATIONS)} and {', '.join(ANALYSES)}")


def choose_guesses(ideal: IdealisedRuns, *, delta: float, alpha: float, analyses) -> tuple[int, int, dict[str, float]]:
    """The (k₊, k₋) of :data:`GUESS_SHARES` with the largest mean bound of the last analysis listed
    (the tightest) on the idealised runs, and that ceiling per analysis (mean over simulations)."""
    best = None
    for share_plus, share_minus in GUESS_SHARES:
        k_plus, k_minus = int(round(share_plus * ideal.m)), int(round(share_minus * ideal.m))
        if k_plus + k_minus < 1:
            continue
        bounds = ideal.bounds(k_plus, k_minus, delta=delta, alpha=alpha, analyses=analyses)
        ceiling = {name: float(np.mean(values)) for name, values in bounds.items()}
        if best is None or ceiling[analyses[-1]] > best[2][analyses[-1]]:
            best = (k_plus, k_minus, ceiling)
    return best

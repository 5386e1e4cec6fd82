"""The white-box one-run audit with gradient canaries: settings, guess counts and the analyses.

The auditor of the DP guarantee itself (Nasr et al., "Tight auditing of differentially private
machine learning", USENIX Security 2023; Steinke, Nasr, Jagielski, NeurIPS 2023, white-box) inserts
m Dirac gradient canaries into one training run, each with probability ½, observes the run's
noisy updates (all iterates) or only their sum (key ``final_model``: the final model of plain SGD at
a constant learning rate, not of the recipe's momentum and schedule), scores every canary and
guesses the inclusion of the k₊ highest and the k₋ lowest scores. The engine trains with the canaries
(benchmark/canaries.py); this module is pure: scores and ground truth in, bounds out.

Guess counts are fixed before any observation is scored: they are the counts that give the
largest bound on the *idealised* mechanism with the run's σ, q, T and m
(:func:`medprivbench.attacks.one_run_analysis.simulate_ideal_canaries`), which depends on the
claimed recipe only. The same simulation gives the ceiling: what the analysis reaches when the
training is exactly the mechanism it claims to be; tightness = empirical ε / ceiling. With all
iterates the score is the optimal test, so the ceiling is what one run with m canaries at level α
can show, and a ceiling below the accountant's ε is a limit of that, not of the attack. The ceiling
is the mean over ``ceiling_simulations`` idealised runs at the guess counts that did best on those
same runs, so it is biased upward; its spread over the runs is returned with it
(:class:`GuessChoice`).

Analyses (:func:`medprivbench.attacks.one_run_analysis.one_run_bounds`): ``steinke`` (the binomial
test of Steinke et al., valid for any (ε, δ)-DP training), ``fdp_approx_dp`` (the f-DP one-run test
of Mahloujifar, Melis, Chaudhuri, ICML 2025, against (ε, δ) claims: valid for any mechanism) and
``fdp_dpsgd`` (the same test against the trade-off curves of DP-SGD at the run's q and T indexed by
σ′: as a test of the claimed σ valid for any mechanism, but its ε is a lower bound on ε only for a
training that is DP-SGD at the claimed q and T, at some noise level). The Gaussian-DP family is not
offered: it does not bound subsampled mechanisms.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .one_run_analysis import OBSERVATIONS, IdealisedRuns, analyse, at_limit, spread
from .settings import Validated, choices, integer

__all__ = ["ANALYSES", "GUESS_SHARES", "GradientCanaryAuditConfig", "GuessChoice", "IdealisedRuns", "analyse",
           "at_limit", "choose_guesses"]

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


class GuessChoice(NamedTuple):
    """The guess counts fixed on the idealised runs, and the ceiling they give there.

    ``ceiling`` is the mean bound per analysis over the ``n_simulations`` idealised runs, at the
    (k₊, k₋) that gave the largest mean of the last analysis on those same runs: the best of several
    noisy means, so biased upward. ``ceiling_sd`` is its spread over the runs (sample standard
    deviation, NaN for one run), ``ceiling_at_limit`` the share of runs whose bound is a limit of the
    analysis (:func:`at_limit`: every guess right, or the σ′ search at its edge)."""

    k_plus: int
    k_minus: int
    ceiling: dict[str, float]
    ceiling_sd: dict[str, float]
    ceiling_at_limit: dict[str, float]
    n_simulations: int


def choose_guesses(ideal: IdealisedRuns, *, delta: float, alpha: float, analyses) -> GuessChoice:
    """The (k₊, k₋) of :data:`GUESS_SHARES` with the largest mean bound of the last analysis listed
    (the tightest) on the idealised runs, and that ceiling per analysis (mean over simulations), with
    its spread (:class:`GuessChoice`; the first three fields are (k₊, k₋, ceiling))."""
    best = None
    for share_plus, share_minus in GUESS_SHARES:
        k_plus, k_minus = int(round(share_plus * ideal.m)), int(round(share_minus * ideal.m))
        if k_plus + k_minus < 1:
            continue
        found = ideal.results(k_plus, k_minus, delta=delta, alpha=alpha, analyses=analyses)
        bounds = {name: [float(result["epsilon_lb"]) for result in results] for name, results in found.items()}
        ceiling = {name: float(np.mean(values)) for name, values in bounds.items()}
        if best is None or ceiling[analyses[-1]] > best.ceiling[analyses[-1]]:
            best = GuessChoice(
                k_plus, k_minus, ceiling,
                ceiling_sd={name: spread(values) for name, values in bounds.items()},
                ceiling_at_limit={name: float(np.mean([at_limit(r) for r in results])) for name, results in found.items()},
                n_simulations=len(ideal.runs),
            )
    return best

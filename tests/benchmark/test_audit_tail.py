"""The audit's privacy tail (benchmark/audit_tail.py): the sweep's tail computed on the reference models."""

from __future__ import annotations

import numpy as np
import pytest

from medprivbench.benchmark.audit_tail import reference_tail, tail_lines
from medprivbench.benchmark.shadow import PoolResult

M, N, LEAKY = 8, 200, 20


def _references(leak: bool, models: int = M) -> PoolResult:
    """Reference logits that carry no membership signal, except (with ``leak``) for the first
    LEAKY records, which every reference that trained on them predicts with certainty."""
    rng = np.random.default_rng(0)
    member = rng.random((models, N)) < 0.5
    labels = rng.integers(0, 2, N)
    logits = rng.normal(size=(models, N, 1, 2)).astype(np.float32)
    if leak:
        for m in range(models):
            seen = np.flatnonzero(member[m, :LEAKY])
            logits[m, seen, 0, :] = 0.0
            logits[m, seen, 0, labels[seen]] = 8.0
    return PoolResult(logits=logits, member=member, labels=labels, queries=["identity"], wall_time_s=0.0)


def test_a_planted_leaky_subset_is_found_and_beats_chance():
    result, table = reference_tail(_references(leak=True), alpha=0.05, seed=0)
    tpr = next(s for s in result.shares.values() if s.criterion == "tpr")
    assert tpr.beats_chance and tpr.ci[0] <= LEAKY / result.n_records <= tpr.ci[1]
    assert {e["record"] for e in result.most_exposed} <= set(range(LEAKY))
    assert set(table["membership"]) == {"observed", "permuted"}
    assert all("beats chance" in line for line in tail_lines(result))


def test_without_leakage_no_share_beats_chance():
    result, _ = reference_tail(_references(leak=False), alpha=0.05, seed=0)
    assert not any(s.beats_chance for s in result.shares.values())
    assert result.n_models == M and result.threat_model.endswith("not the audited model's")


@pytest.mark.parametrize("models", [2, 3])
def test_too_few_references_give_no_tail(models):
    assert reference_tail(_references(leak=True, models=models), alpha=0.05, seed=0) is None

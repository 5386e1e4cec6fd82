"""The privacy tail of an audit: which candidate records the stated recipe exposes, over the references.

The K reference models of ``medprivbench-audit --reference-models K`` train on random halves of the
candidates, so each candidate is in about half of them and out of the others: the same design as a
sweep's pool. The tail of the sweep (benchmark/membership_run.py ``pool_tail``,
attacks/privacy_tail.py) applies unchanged: per-record AUC and per-record TPR at 0.1 % FPR from each
record's in and out scores over the references, the share of records above each threshold with a
Clopper–Pearson interval, against the same shares with membership permuted across the references.

What it describes: the per-record risk of a model trained with the stated recipe on such data, not
of the audited model itself (one model gives each record one score, not a distribution). With few
references per-record estimates are coarse; the permuted null says how many records pass a
threshold by chance alone.
"""

from __future__ import annotations

import pandas as pd

from medprivbench.attacks.privacy_tail import PrivacyTailConfig

from .families.tail import TailResult
from .membership_run import pool_tail
from .shadow import PoolResult
from .streams import Streams

THREAT_MODEL = ("black box, per candidate record, over the auditor's reference models trained with the stated recipe "
                "(each record in about half of them): the share of records whose in and out scores separate, against "
                "chance given by permuting that membership across the references; the recipe's risk per record, not "
                "the audited model's")
MIN_REFERENCES = 4  # as the sweep's tail: with 3, a record's AUC can only be 0, ½ or 1


def reference_tail(references: PoolResult, *, alpha: float, seed: int) -> tuple[TailResult, pd.DataFrame] | None:
    """The tail over the reference models (None with fewer than :data:`MIN_REFERENCES`): its typed
    result and its per-record table; the permutations draw from ``Streams(seed).of("tail")``."""
    if references.num_models < MIN_REFERENCES:
        return None
    return pool_tail(references.logits, references.labels, references.member, PrivacyTailConfig(), alpha=alpha,
                     seed=Streams(seed).of("tail").seed_for("statistics"), threat_model=THREAT_MODEL)


def tail_lines(result: TailResult) -> list[str]:
    """One line per threshold: the share [CI] of records above it, and chance (null mean, its upper quantile)."""
    return [f"{result.criterion(share)}: {share.share:.3f} [{share.ci[0]:.3f}, {share.ci[1]:.3f}] of {result.n_records} "
            f"records; chance {share.null_mean:.3f} (≤ {share.null_upper:.3f}); "
            f"{'beats chance' if share.beats_chance else 'within chance'}" for share in result.shares.values()]

"""The run's summary: the one place where a run's numbers become the sweep table's columns.

``summarise(record)`` is computed once, when the run is recorded; ``table.csv`` is the summaries of
the sweep's runs, and the report reads those columns and never recomputes them. One quantity, one
name:

* ``task``: classification or segmentation; the utility columns are the task's (``test_accuracy``,
  ``test_auroc``…; a segmenter's ``test_dice``, ``test_iou``, ``test_dice_<class>``…);
* ``epsilon``: the target ε of the run (the sweep axis; inf for non-private); ``epsilon_spent``:
  the accountant's ε at the σ, q and T actually used; ``epsilon_planned`` is in the record only.
* each attack contributes its typed result's columns (benchmark/families), e.g.
  ``mia_<variant>_auc``, ``audit_epsilon_lb``, ``recon_<attack>_rero_psnr``;
* each family's bests over its attacks: ``mia_best_auc``, ``mia_best_tpr_at_0.1%fpr``,
  ``mia_best_epsilon_lb``, ``mia_best_epsilon_ceiling`` (the largest bound the membership
  protocol's guesses allow) and ``recon_best_rero`` (the largest ReRo@η by PSNR over the
  reconstruction attacks);
* ``reference``: empty for a DP run; for ε = ∞, which non-private reference the run is:
  ``same_recipe`` (the DP recipe without clipping and noise; every Δ of the report is against it)
  or ``tuned`` (the non-private recipe, ``train.nonprivate``);
* ``verdict_<threat model>`` and ``verdict_<threat model>_evidence`` for each realistic threat
  model (benchmark/threats.py, benchmark/chance.py): ``beats chance``, ``no attack beat chance``
  or ``not run``, and the result that decided it; ``worst_case_epsilon_lb`` and
  ``worst_case_tightness`` (that bound ÷ the accountant's ε) for the worst-case audit;
* ``epsilon_lb_max``: the largest of all the run's ε lower bounds (each family says which its
  results hold). Each is computed at the run's α divided by their number, so this maximum is a
  lower bound at level α; DP requires it to stay at or below ``epsilon_spent``.
"""

from __future__ import annotations

import math

from . import registry
from .chance import threat_columns
from .families import ordered


def base_columns(record: dict) -> dict:
    p, t, d = record["privacy"], record["train"], record["dataset"]
    return {
        "dataset": d["name"], "model": record["model"]["name"], "seed": record["seed"],
        "epsilon": p["epsilon_target"], "reference": p.get("reference") or "", "epsilon_spent": p["epsilon_spent"], "delta": p["delta"],
        "sigma": p["noise_multiplier"], "sample_rate": p["sample_rate"], "steps": t["steps_taken"],
        "epochs": t["epochs"], "batch_size": t["batch_size"], "max_grad_norm": p["max_grad_norm"],
        "accountant": p["accountant"], "n_train": d["n_train"], "n_test": d["n_test"],
    }


def utility_columns(record: dict) -> dict:
    """``task``, every utility metric of both splits (``test_accuracy``…, or a segmenter's
    ``test_dice``, ``test_dice_<class>``…) and the generalisation gap of the task's headline metric."""
    u = record["utility"]
    headline = u.get("headline", "accuracy")
    row = {"task": u.get("task", "classification")}
    row.update({f"{split}_{k}": v for split in ("test", "train") for k, v in u[split].items()})
    row["generalization_gap"] = u["train"][headline] - u["test"][headline]
    return row


def attack_columns(record: dict) -> dict:
    """Each attack's own columns, then each family's bests, the largest ε lower bound, the verdicts
    and the ReRo bounds."""
    results = registry.read_results(record.get("attacks") or {})
    row: dict = {}
    for name, result in results.items():
        row.update(result.columns(name))
    bounds: list[float] = []
    for family in ordered():
        mine = {name: r for name, r in results.items() if registry.ATTACKS[name].family is family}
        if mine:
            row.update(family.bests(mine))
            bounds += [b for name, r in mine.items() for b in family.bounds(name, r)]
    bounds = [b for b in bounds if not math.isnan(b)]
    if bounds:
        row["epsilon_lb_max"] = max(bounds)
    row.update(threat_columns(results, record["privacy"]["epsilon_spent"]))
    rero = record.get("bounds")
    if rero:
        row["rero_bound_prior"] = rero["rero_prior"]["gamma"]
        row["rero_bound_train"] = rero["rero_train"]["gamma"]
        row["rero_bound_step"] = rero["rero_step"]["gamma"]
    return row


def summarise(record: dict) -> dict:
    """The flat row of the sweep table."""
    t = record["train"]
    row = {**base_columns(record), **utility_columns(record), **attack_columns(record)}
    row["train_wall_s"] = t["wall_time_s"]
    row["samples_per_s"] = t["samples_per_s"]
    row["run_wall_s"] = record["wall_time_s"]
    row["config_hash"] = record["config_hash"]
    return row

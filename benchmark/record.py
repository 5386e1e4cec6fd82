"""The run record's summary: the one place where a run's numbers become the sweep table's columns.

``summarise(record)`` is computed once, when the run is recorded; ``table.csv`` is the summaries of
the sweep's runs, and the report reads those columns and never recomputes them. One quantity, one
name:

* ``epsilon``: the target ε of the run (the sweep axis; inf for non-private); ``epsilon_spent``:
  the accountant's ε at the σ, q and T actually used; ``epsilon_planned`` is in the record only.
* each attack contributes its registry entry's columns (benchmark/registry.py), e.g.
  ``mia_<variant>_auc``, ``audit_epsilon_lb``, ``recon_<attack>_rero_psnr``;
* the best over attacks: ``mia_best_auc``, ``mia_best_tpr_at_0.1%fpr``, ``mia_best_epsilon_lb``,
  ``mia_best_epsilon_ceiling`` (the largest bound the membership protocol's guesses allow) and
  ``recon_best_rero`` (the largest ReRo@η by PSNR over the reconstruction attacks);
* ``reference``: empty for a DP run; for ε = ∞, which non-private reference the run is:
  ``same_recipe`` (the DP recipe without clipping and noise; every Δ of the report is against it)
  or ``tuned`` (the non-private recipe, ``train.nonprivate``);
* ``verdict_<threat model>`` and ``verdict_<threat model>_evidence`` for each realistic threat
  model (benchmark/threats.py, benchmark/chance.py): ``beats chance``, ``no attack beat chance``
  or ``not run``, and the result that decided it; ``worst_case_epsilon_lb`` and
  ``worst_case_tightness`` (that bound ÷ the accountant's ε) for the worst-case audit;
* ``epsilon_lb_max``: the largest of all the run's ε lower bounds (every column ending in
  ``_epsilon_lb``). Each is computed at the run's α divided by their number, so this maximum is a
  lower bound at level α; DP requires it to stay at or below ``epsilon_spent``.
"""

from __future__ import annotations

import math

from .chance import threat_columns
from .registry import ATTACKS, load

BOUND_SUFFIX = "_epsilon_lb"


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
    u = record["utility"]
    row = {f"{split}_{k}": v for split in ("test", "train") for k, v in u[split].items()}
    row["generalization_gap"] = u["train"]["accuracy"] - u["test"]["accuracy"]
    return row


def attack_columns(record: dict) -> dict:
    """Each attack's own columns (its registry entry says which), then the bests over attacks."""
    load()
    row: dict = {}
    for name, result in (record.get("attacks") or {}).items():
        row.update(ATTACKS[name].columns(name, result))
    row.update(_bests(record, row))
    row.update(threat_columns(record.get("attacks") or {}, record["privacy"]["epsilon_spent"]))
    bounds = record.get("bounds")
    if bounds:
        row["rero_bound_prior"] = bounds["rero_prior"]["gamma"]
        row["rero_bound_train"] = bounds["rero_train"]["gamma"]
        row["rero_bound_step"] = bounds["rero_step"]["gamma"]
    return row


def _bests(record: dict, row: dict) -> dict:
    out: dict = {}
    membership = [variant for name, result in (record.get("attacks") or {}).items() if ATTACKS[name].family == "membership"
                  for variant in result["variants"].values()]
    if membership:
        out["mia_best_auc"] = max(m["auc"] for m in membership)
        out["mia_best_tpr_at_0.1%fpr"] = max(m["tpr_at_fpr"][0] for m in membership)
        out["mia_best_epsilon_lb"] = max(m["empirical_epsilon"]["epsilon_lb"] for m in membership)
        out["mia_best_epsilon_ceiling"] = max(m["empirical_epsilon"]["epsilon_ceiling"] for m in membership)
    rero = [v for k, v in row.items() if k.startswith("recon_") and k.endswith("_rero_psnr")]
    if rero:
        out["recon_best_rero"] = max(rero)
    bounds = [v for k, v in row.items() if k.endswith(BOUND_SUFFIX) and not math.isnan(v)]
    if bounds:
        out["epsilon_lb_max"] = max(bounds)
    return out


def summarise(record: dict) -> dict:
    """The flat row of the sweep table."""
    t = record["train"]
    row = {**base_columns(record), **utility_columns(record), **attack_columns(record)}
    row["train_wall_s"] = t["wall_time_s"]
    row["samples_per_s"] = t["samples_per_s"]
    row["run_wall_s"] = record["wall_time_s"]
    row["config_hash"] = record["config_hash"]
    return row

"""The audit as a run: ``medprivbench-audit``'s folder is also a results folder that ``medprivbench-report`` reads.

Beside audit.json, an audit of a model (``--model``) writes one complete run through
benchmark/store.py (``runs/<run_id>/metrics.json`` with its manifest), ``table.csv`` and the
report, so that ``medprivbench-report <audit-out> <sweep>`` sets the team's own model beside a
sweep of the same data. The run record has the shape of a sweep run's (benchmark/experiment.py
``_run_record``); what the audit cannot know is recorded as unknown, never guessed:

* ``privacy``: the audit does not know the model's ε. ``epsilon_target`` and ``epsilon_spent``
  are the user's claim (``--epsilon``, default ∞: not stated, or not private); σ, q and C are NaN,
  T is None and the accountant ``"unknown"`` (the report shows "–" for them).
* ``train``: the recipe that trained the model is unknown: the settings the sweep table reads
  (epochs, batch size, steps) are None, the others absent; ``wall_time_s`` is the audit's own time.
* ``utility``: the model's test utility on the test split and its train utility on its members
  (benchmark/metrics.py), as a sweep computes them for its target.
* ``attacks``: each membership attack as its registry entry's result (``loss``, ``lira`` with the
  variant ``lira_offline``, ``rmia``), scored once on the audited model itself. As in a sweep the
  run's α is shared among its k variants (Bonferroni): the intervals are at confidence
  1 − α/(k·(1 + #FPR levels)) and each empirical ε lower bound (benchmark/audit_outputs.py's
  threshold audit, attacks/threshold_audit.py) at α/k, so the run's largest bound holds at level α.
  audit.json keeps its own intervals and bounds at α each; the AUCs and TPRs are the same numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from medprivbench.attacks.auditing import empirical_epsilon
from medprivbench.attacks.mia_metrics import roc_metrics

from . import store
from .audit_references import AUDIT_ATTACKS
from .families.membership import MembershipResult, VariantMetrics
from .families.tail import TailResult
from .summary import summarise

FPR_LEVELS = (0.001, 0.01)  # the sweep's (benchmark/membership_run.py)
N_BOOTSTRAP = 1000
# the training settings the sweep table reads (benchmark/summary.py): unknown for a model trained elsewhere;
# the others (optimiser, learning rate, …) are left out, and the report shows "–" for them
UNKNOWN_TRAIN = ("epochs", "batch_size", "steps_taken", "samples_per_s")


@dataclass(frozen=True)
class AuditedModel:
    """What the audit knows of the model: its dataset's info record (as a sweep records it), its
    architecture and size, its utility, the claimed ε, and the audit's own settings."""

    dataset: dict
    model: dict  # name, parameters, width
    utility: dict
    epsilon: float  # the user's claim (--epsilon), not something the audit measured
    delta: float
    alpha: float
    seed: int
    source: str


def utility_of(model, ds, member: np.ndarray, device: str = "cpu") -> dict:
    """The model's utility as a sweep records its target's: the test split, and its members for train."""
    import torch

    from .metrics import per_class_accuracy, utility_metrics
    from .training import predict_logits

    n_classes = len(ds.info.class_names)
    test = predict_logits(model, torch.as_tensor(ds.test_x), device=device)
    train = predict_logits(model, torch.as_tensor(ds.train_x[member]), device=device)
    return {"test": utility_metrics(test, ds.test_y, n_classes),
            "train": utility_metrics(train, ds.train_y[member], n_classes),
            "test_per_class_accuracy": per_class_accuracy(test, ds.test_y, ds.info.class_names)}


def membership_results(audit: dict, scores: pd.DataFrame, *, delta: float, alpha: float,
                       seed: int) -> dict[str, MembershipResult]:
    """Each attack of the audit as its registry entry's typed result, at the run's shared α."""
    from .audit_references import THREAT_MODEL
    from .registry import ATTACKS, load

    load()
    member = scores["member"].to_numpy().astype(bool)
    k = len(audit["attacks"])
    confidence = 1.0 - alpha / (k * (1 + len(FPR_LEVELS)))
    results = {}
    for name in audit["attacks"]:
        values = scores[f"score_{name}"].to_numpy(dtype=np.float64)
        metrics = roc_metrics(values, member, fpr_levels=FPR_LEVELS, n_bootstrap=N_BOOTSTRAP, seed=seed,
                              confidence=confidence)
        metrics["empirical_epsilon"] = empirical_epsilon(values, member, delta, alpha=alpha / k, seed=seed)
        threat = ATTACKS[name].threat_model if name == "loss" else THREAT_MODEL
        # the audit's scorer is the sweep's variant of the same name (loss, lira_offline, rmia)
        results[name] = MembershipResult(threat_model=threat,
                                         variants={AUDIT_ATTACKS[name].scorer: VariantMetrics.from_record(metrics)})
    return results


def per_class_risk(scores: pd.DataFrame, attacks: dict, class_names: list[str]) -> dict:
    """The audited model's membership risk per class: the AUC of its strongest membership attack (by
    AUC over all candidates) among the class's candidates only (NaN where a class lacks members or
    non-members). One target gives each record one score, so this stands in for the sweep's mean
    per-record AUC over a pool."""
    from sklearn.metrics import roc_auc_score

    aucs = {name: next(iter(r.variants.values())).auc for name, r in attacks.items() if isinstance(r, MembershipResult)}
    if not aucs:
        return {}
    best = max(aucs, key=aucs.get)
    out = {}
    for index, name in enumerate(class_names):
        part = scores[scores["label"] == index]
        member = part["member"].to_numpy().astype(bool)
        out[str(name)] = (float(roc_auc_score(member, part[f"score_{best}"].to_numpy(dtype=np.float64)))
                          if member.any() and (~member).any() else math.nan)
    return {"attack": best, "auc": out}


def _protocol(audit: dict) -> dict:
    """``protocols.membership``: the audited model is the one target; the references, if any."""
    references = audit.get("references")
    if references is None:
        return {"num_models": 1, "pool": "none (the loss attack needs no other model)", "queries": ["identity"],
                "description": "The audited model is the only target: the loss attack scores each candidate by its "
                               "loss; no other model is trained."}
    return {"num_models": references["count"], "pool": "training split (reference models)",
            "queries": list(references["queries"]), "population": references["population"],
            "description": f"The audited model is the only target (trained outside the benchmark); {references['count']} "
                           f"reference models trained by the audit with the stated recipe on {references['trained_on']} "
                           f"score each candidate offline; queries: {', '.join(references['queries'])}. "
                           "The numbers describe the audited model itself."}


def run_record(audit: dict, scores: pd.DataFrame, model: AuditedModel, wall_time_s: float) -> tuple[dict, dict]:
    """The audit's run record (the shape of benchmark/experiment.py's), with its ``summary``, and the
    configuration it is hashed from (its run id)."""
    attacks = membership_results(audit, scores, delta=model.delta, alpha=model.alpha, seed=model.seed)
    tail = (audit.get("references") or {}).get("tail")
    if tail is not None:  # the recipe's privacy tail over the references (benchmark/audit_tail.py)
        attacks["tail"] = TailResult.from_record(tail)
    run_config = {"audit": {"source": model.source, "attacks": list(audit["attacks"]),
                            "references": (audit.get("references") or {}).get("recipe_overrides")},
                  "dataset": model.dataset["name"], "model": model.model, "privacy": {"epsilon": model.epsilon},
                  "seed": model.seed, "delta": model.delta, "alpha": model.alpha}
    record = {
        "schema": store.SCHEMA_VERSION, "run_id": store.run_id_for(run_config),
        "config_hash": store.config_hash(run_config), "seed": model.seed, "dataset": model.dataset,
        "model": {"name": model.model["name"], "parameters": model.model["parameters"], "grad_sample_mode": None},
        "privacy": {"epsilon_target": model.epsilon, "epsilon_spent": model.epsilon, "epsilon_claimed": True,
                    "delta": model.delta, "noise_multiplier": math.nan, "sample_rate": math.nan, "steps": None,
                    "max_grad_norm": math.nan, "accountant": "unknown", "reference": None,
                    "accountant_note": "ε is the user's claim (--epsilon; ∞: not stated or not private); the audit "
                                       "does not know how the model was trained"},
        "train": {**dict.fromkeys(UNKNOWN_TRAIN), "wall_time_s": wall_time_s},
        "utility": model.utility, "attacks": attacks, "protocols": {"membership": _protocol(audit)},
        "audit": {"source": model.source, "not_run": audit.get("not_run", {}), "alpha": model.alpha,
                  "per_class_risk": per_class_risk(scores, attacks, model.dataset.get("class_names") or [])},
        "environment": _environment(), "wall_time_s": wall_time_s,
    }
    record["summary"] = summarise(record)
    return record, run_config


def _environment() -> dict:
    """What computed the audit (the sweep's versions; the device of the references is in audit.json)."""
    import torch

    from .experiment import versions

    return {**versions(), "threads": torch.get_num_threads()}


def write_run_folder(folder: Path, record: dict, run_config: dict, final: Path) -> None:
    """Into ``folder`` (an audit folder being staged): the run, table.csv/.parquet and the report.

    The report names ``final``, where the folder will be published, not the staging path."""
    from omegaconf import OmegaConf

    from .report import build_report

    writer = store.RunWriter(folder, record["run_id"])
    try:
        writer.write_text("config.yaml", OmegaConf.to_yaml(OmegaConf.create(run_config)))
        writer.write_json(store.METRICS, record)
        writer.publish({"config_hash": record["config_hash"]})
    except BaseException:
        writer.discard()
        raise
    (folder / "runs" / ".partial").rmdir()
    store.write_table(folder, store.aggregate(folder))
    for path in build_report([folder]):
        path.write_text(path.read_text().replace(str(folder), str(final)))

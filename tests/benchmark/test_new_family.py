"""One family, one place: a new attack family is one module, one config file and one registry entry.

The test plays a contributor who adds a family the benchmark does not have: a "confidence gap"
attack (the target's mean confidence on its training images minus that on test images, with a
bootstrap interval; above 0 means the model treats members differently, a black-box signal). The
family's module (written to a file and imported, as ``benchmark/families/confidence_gap.py``
would be) holds its typed result, its chance rule, its headline column and its report section;
its config file goes on Hydra's search path; its attack is one decorated class in the same module.
No engine or report file is edited, yet validation, the experiment, the sweep table, the verdict
of its threat model and the report (its column, its section) all pick it up.
"""

from __future__ import annotations

import importlib.util
import json
import sys

import pytest

from medprivbench.benchmark import registry, store
from medprivbench.benchmark.callbacks import finish_sweeps
from medprivbench.benchmark.experiment import run_experiment
from medprivbench.benchmark.families import unregister_family
from medprivbench.benchmark.validate import validate_config

from ..conftest import TINY
from .test_registry import _compose

# --- the new module -------------------------------------------------------------------------
MODULE = '''
"""The confidence-gap family: does the model trust its training images more than unseen ones?"""
from dataclasses import dataclass

import numpy as np
import torch

from medprivbench.attacks.settings import Validated, integer
from medprivbench.benchmark.families import AttackResult, Family, Finding, family, register_family
from medprivbench.benchmark.numbers import fmt, fmt_ci
from medprivbench.benchmark.registry import Attack, register_attack
from medprivbench.benchmark.training import predict_logits


@dataclass
class ConfidenceGapConfig(Validated):
    n_bootstrap: int = integer(200, 10)


@dataclass(frozen=True, kw_only=True)
class GapResult(AttackResult):
    gap: float
    ci_low: float
    ci_high: float

    def columns(self, name):
        return {f"{name}_gap": self.gap, f"{name}_gap_ci_low": self.ci_low}


@register_family
class ConfidenceGap(Family):
    key, title, rank, result = "confidence_gap", "Confidence gap between members and non-members", 50, GapResult
    summary_columns = ("confidence_gap_gap",)

    def findings(self, label, result):
        if result.ci_low > 0:
            yield Finding(label, f"gap {fmt_ci(result.gap, result.ci_low, result.ci_high)} lies above 0",
                          f"{label} gap {fmt(result.gap)}")

    def intervals(self, result):
        return 1

    def strongest(self, label, result):
        return result.gap, f"{label} gap {fmt_ci(result.gap, result.ci_low, result.ci_high)}"

    def headline_columns(self, sweep, runs):
        from medprivbench.benchmark.report.columns import Column, value

        return [Column("confidence gap", value("confidence_gap_gap"), "confidence_gap_gap")]

    def section(self, ctx):
        rows = [[r.point.label, str(r.seed), fmt_ci(g.gap, g.ci_low, g.ci_high)]
                for s in ctx.sweeps for r in s.runs for g in r.results(self.key).values()]
        if rows:
            ctx.doc.heading(self.title)
            ctx.doc.paragraph("Mean softmax confidence on training images minus that on test images (95% bootstrap CI).")
            ctx.doc.table(["ε", "seed", "gap [CI]"], rows)


def _confidence(model, x, y, device):
    p = torch.softmax(torch.from_numpy(predict_logits(model, torch.from_numpy(x), device=device)), dim=1)
    return p[torch.arange(len(y)), torch.from_numpy(y).long()].numpy()


@register_attack
class ConfidenceGapAttack(Attack):
    name, label, schema = "confidence_gap", "confidence gap", ConfidenceGapConfig
    family, threat = family("confidence_gap"), "black_box"
    threat_model = "black box: the target's confidence on known members and on unseen images"

    def run(self, ctx, settings):
        member = _confidence(ctx.target, ctx.ds.train_x, ctx.ds.train_y, ctx.device)
        unseen = _confidence(ctx.target, ctx.ds.test_x, ctx.ds.test_y, ctx.device)
        rng = ctx.streams.of(self.name).numpy("attack")
        boot = [rng.choice(member, len(member)).mean() - rng.choice(unseen, len(unseen)).mean()
                for _ in range(settings.n_bootstrap)]
        lo, hi = np.quantile(boot, [0.025, 0.975])
        return GapResult(threat_model=self.threat_model, gap=float(member.mean() - unseen.mean()),
                         ci_low=float(lo), ci_high=float(hi))
'''

# --- the new config file ---------------------------------------------------------------------
CONFIG = """# @package attack.confidence_gap
defaults:
  - confidence_gap_schema@_here_
  - _self_
n_bootstrap: 50
"""


@pytest.fixture
def new_family(tmp_path):
    registry.load()
    path = tmp_path / "confidence_gap.py"
    path.write_text(MODULE)
    spec = importlib.util.spec_from_file_location("confidence_gap_family", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    extra = tmp_path / "extra" / "attack"
    extra.mkdir(parents=True)
    (extra / "confidence_gap.yaml").write_text(CONFIG)
    yield tmp_path / "extra"
    registry.unregister("confidence_gap")
    unregister_family("confidence_gap")
    sys.modules.pop(spec.name, None)


@pytest.mark.slow
def test_a_new_family_needs_one_module_one_config_and_one_entry(new_family, tmp_path):
    overrides = [o for o in TINY if not o.startswith(("attack", "membership"))]
    cfg = _compose([*overrides, "attack=[confidence_gap]", f"results_root={tmp_path}",
                    f"hydra.searchpath=[file://{new_family}]", "privacy.epsilon=inf", "train.epochs=20"])
    validate_config(cfg)
    assert registry.settings_of(cfg, "confidence_gap").n_bootstrap == 50  # the YAML's value, typed by the schema
    outcome = run_experiment(cfg)
    record = json.loads((outcome.run_dir / store.METRICS).read_text())
    gap = record["attacks"]["confidence_gap"]
    assert gap["ci_low"] <= gap["gap"] <= gap["ci_high"] and gap["threat_model"].startswith("black box")
    finish_sweeps([outcome.sweep_dir])
    table = store.aggregate(outcome.sweep_dir)
    assert table["confidence_gap_gap"].iloc[0] == gap["gap"]
    # its threat model's verdict is decided by the family's chance rule
    expected = "beats chance" if gap["ci_low"] > 0 else "no attack beat chance"
    assert table["verdict_black_box"].iloc[0] == expected
    assert table["verdict_black_box_evidence"].iloc[0].startswith("confidence gap")
    md = (outcome.sweep_dir / "report.md").read_text()
    assert "## Confidence gap between members and non-members" in md  # its own section, from its module
    headline = md.split("## Headline table")[1].split("## ")[0]
    assert "confidence gap" in headline  # its column of the attack table
    assert "| ∞ (same recipe) | 0 | " in md  # its section's table, one row per run

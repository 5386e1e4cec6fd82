"""The privacy-tail family and its attack (benchmark/families/tail.py, benchmark/membership_run.py): the
entry's check, its run on a pool with a planted leak, the chance rule, the per-image file read back
safely, and a tiny sweep whose table and report carry the family's columns, section and figure."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from medprivbench.attacks.privacy_tail import PrivacyTailConfig
from medprivbench.benchmark import chance, membership_run, registry, store
from medprivbench.benchmark.callbacks import finish_sweeps
from medprivbench.benchmark.errors import ConfigError
from medprivbench.benchmark.experiment import run_experiment
from medprivbench.benchmark.families import family
from medprivbench.benchmark.families.tail import TailResult, TailShare
from medprivbench.benchmark.report import tail_risk
from medprivbench.benchmark.shadow import PoolResult
from medprivbench.benchmark.streams import Streams
from medprivbench.benchmark.validate import validate_config

from ..conftest import TINY
from .test_registry import _compose

registry.load()


def _cfg(num_models: int):
    return OmegaConf.create({"membership": {"num_models": num_models, "queries": ["identity"]}})


def test_the_entry_needs_four_pool_models():
    entry = registry.ATTACKS["tail"]
    assert entry.family is family("tail") and entry.threat == "black_box" and entry.lower_bounds(PrivacyTailConfig()) == 0
    with pytest.raises(ConfigError, match="num_models=3 is too small for attack 'tail'.*at least 4"):
        entry.check(PrivacyTailConfig(), _cfg(3))
    entry.check(PrivacyTailConfig(), _cfg(4))


# ----------------------------------------------------------------------------- the run, on a stand-in context
class Writer:
    def __init__(self):
        self.files = {}

    def write_parquet(self, name, df):
        self.files[name] = df


def _leaky_pool(m: int = 8, n: int = 300, leaky: int = 30, seed: int = 0) -> PoolResult:
    """Logits whose true-class margin rises by 6 on the first ``leaky`` images in the models that trained on them."""
    rng = np.random.default_rng(seed)
    member = rng.random((m, n)) < 0.5
    margin = rng.normal(size=(m, n)) + rng.normal(size=n)
    margin[:, :leaky] += 6.0 * member[:, :leaky]
    labels = rng.integers(0, 2, n)
    logits = np.zeros((m, n, 1, 2))
    logits[np.arange(m)[:, None], np.arange(n)[None], 0, labels[None]] = margin
    return PoolResult(logits=logits.astype(np.float32), member=member, labels=labels, queries=["identity"], wall_time_s=0.0)


def test_the_run_finds_a_planted_leak_records_indices_and_saves_every_images_values():
    pool, writer = _leaky_pool(), Writer()
    ctx = SimpleNamespace(shared=lambda key, factory: SimpleNamespace(pool=pool), writer=writer, alpha=0.05,
                          streams=Streams(0))
    settings = PrivacyTailConfig(permutations=10, most_exposed=5)
    result = registry.ATTACKS["tail"].run(ctx, settings)
    assert isinstance(result, TailResult) and result.n_models == 8 and result.variance == "fixed"
    assert result.confidence == pytest.approx(0.975)  # α shared by the two thresholds
    assert set(result.shares) == {"auc_ge_0.95", "tpr_ge_0.5"} and all(s.beats_chance for s in result.shares.values())
    assert [e["record"] for e in result.most_exposed] and all(e["record"] < 30 for e in result.most_exposed)
    assert set(result.most_exposed[0]) == {"record", "label", "auc", "tpr"}  # indices and numbers, never images
    table = writer.files[membership_run.TAIL_FILE]
    assert result.records_file == membership_run.TAIL_FILE
    assert (table["membership"] == "observed").sum() == 300 and (table["membership"] == "permuted").sum() == 10 * 300
    observed = table[table["membership"] == "observed"]
    share = (observed["tpr"].dropna() >= 0.5).mean()
    assert share == result.shares["tpr_ge_0.5"].share
    # the record form round-trips, and the black-box verdict follows the family's rule
    again = TailResult.from_record(json.loads(json.dumps(result.to_record())))
    assert again.shares["tpr_ge_0.5"] == result.shares["tpr_ge_0.5"]
    verdict, evidence = chance.verdict({"tail": again}, "black_box")
    assert verdict == "beats chance" and evidence.startswith("privacy tail (per-record risk):")


# ----------------------------------------------------------------------------- the chance rule
def _result(lo: float, upper: float) -> TailResult:
    share = TailShare(criterion="tpr", threshold=0.5, share=lo + 0.01, ci=[lo, lo + 0.02], count=3, null_mean=upper / 2,
                      null_upper=upper)
    return TailResult(shares={"tpr_ge_0.5": share}, n_records=100, n_models=6, fpr=0.001, confidence=0.975,
                      null_quantile=0.95, permutations=20, variance="fixed", mean_auc=0.5, mean_tpr=0.01)


def test_a_share_beats_chance_only_when_its_interval_lies_above_the_nulls_upper_quantile():
    tail = family("tail")
    above, level = _result(0.05, 0.04), _result(0.04, 0.04)
    found = list(tail.findings("privacy tail", above))
    assert len(found) == 1 and "per-record TPR at 0.1% FPR ≥ 0.5" in found[0].text and "20 membership permutations" in found[0].text
    assert not list(tail.findings("privacy tail", level))
    assert tail.intervals(above) == 1
    value, text = tail.strongest("privacy tail", level)
    assert math.isnan(value) and "chance ≤ 0.040" in text  # never competes with an AUC
    assert above.columns("tail") == pytest.approx({
        "tail_share_tpr_ge_0.5": 0.06, "tail_share_tpr_ge_0.5_ci_low": 0.05, "tail_share_tpr_ge_0.5_ci_high": 0.07,
        "tail_share_tpr_ge_0.5_null": 0.02, "tail_share_tpr_ge_0.5_null_upper": 0.04,
        "tail_mean_record_auc": 0.5, "tail_mean_record_tpr": 0.01})


def test_the_per_image_file_is_read_only_from_inside_the_run_folder_and_only_when_whole(tmp_path):
    run = SimpleNamespace(folder=tmp_path / "run")
    run.folder.mkdir()
    good = pd.DataFrame({"membership": ["observed"], "permutation": [-1], "record": [0], "auc": [1.0], "tpr": [0.2]})
    good.to_parquet(run.folder / "tail.parquet")
    good.to_parquet(tmp_path / "outside.parquet")
    (run.folder / "fake.parquet").write_text("not parquet")
    good.drop(columns="tpr").to_parquet(run.folder / "partial.parquet")
    assert tail_risk.records_path(run, "tail.parquet") is not None
    assert tail_risk.records_path(run, "../outside.parquet") is None and tail_risk.records_path(run, "") is None
    assert tail_risk.records_path(run, "fake.parquet") is None and tail_risk.records_path(run, "missing.parquet") is None
    assert tail_risk._read(run.folder / "partial.parquet") is None
    x, share = tail_risk.complementary_cdf(np.array([0.2, 1.0, 1.0, np.nan, 0.5]))
    assert list(x) == [0.2, 0.5, 1.0] and list(share) == [1.0, 0.75, 0.5]  # ties make one step


# ----------------------------------------------------------------------------- a tiny sweep
@pytest.mark.slow
def test_a_tiny_sweep_tables_and_reports_the_tail(tmp_path):
    overrides = [o for o in TINY if not o.startswith("attack")]
    cfg = _compose([*overrides, "attack=[loss,tail]", "attack.tail.permutations=5", f"results_root={tmp_path}",
                    "privacy.epsilon=inf"])
    validate_config(cfg)
    outcome = run_experiment(cfg)
    record = json.loads((outcome.run_dir / store.METRICS).read_text())
    tail = TailResult.from_record(record["attacks"]["tail"])
    assert tail.n_models == 4 and tail.permutations == 5 and set(tail.shares) == {"auc_ge_0.95", "tpr_ge_0.5"}
    values = pd.read_parquet(outcome.run_dir / membership_run.TAIL_FILE)
    assert (values["membership"] == "permuted").sum() == 5 * (values["membership"] == "observed").sum() == 5 * 300
    finish_sweeps([outcome.sweep_dir])
    table = store.aggregate(outcome.sweep_dir)
    for key, s in tail.shares.items():
        assert table[f"tail_share_{key}"].iloc[0] == s.share and table[f"tail_share_{key}_null"].iloc[0] == s.null_mean
    md = (outcome.sweep_dir / "report.md").read_text()
    section = md.split("## The privacy tail: training images at high risk")[1].split("\n## ")[0]
    assert "figures/privacy_tail.png" in section and (outcome.sweep_dir / "figures" / "privacy_tail.png").is_file()
    s = tail.shares["auc_ge_0.95"]
    row = (f"| ∞ (same recipe) | 0 | per-record AUC ≥ 0.95 | {tail.n_records} | {tail.mean_auc:.3f} | "
           f"{s.share:.3f} [{s.ci[0]:.3f}, {s.ci[1]:.3f}] |")
    assert row in section
    assert "most exposed training images" in section
    headline = md.split("## Headline table")[1].split("\n## ")[0]
    assert "share of images with per-record AUC ≥ 0.95 (chance: up to)" in headline

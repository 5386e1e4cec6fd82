"""benchmark/callbacks.py: the sweep folders named by the jobs' pointer files, and finishing a sweep
(its table and report) from one recorded run, directly and through the Hydra callback."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf

from medprivbench.benchmark import callbacks, store
from medprivbench.benchmark.callbacks import SweepReportCallback, finish_sweeps, sweep_dirs_from_pointers
from medprivbench.benchmark.errors import ConfigError
from medprivbench.benchmark.paths import POINTER
from tests.benchmark.test_report import make_sweep


def _pointer(job_dir: Path, content) -> None:
    job_dir.mkdir(parents=True, exist_ok=True)
    (job_dir / POINTER).write_text(content if isinstance(content, str) else json.dumps(content))


# ----------------------------------------------------------------------------- pointers
def test_pointers_give_each_sweep_folder_once_in_job_order(tmp_path):
    hydra = tmp_path / "multirun"
    a, b, c = (str(tmp_path / "results" / name) for name in ("a", "b", "c"))
    _pointer(hydra / "0", {"sweep_dir": a, "run_dir": f"{a}/runs/x", "skipped": False})
    _pointer(hydra / "1", {"sweep_dir": b, "run_dir": f"{b}/runs/y", "skipped": True})
    _pointer(hydra / "2", {"sweep_dir": a, "run_dir": f"{a}/runs/z", "skipped": False})  # same sweep again
    _pointer(hydra / "3", '{"sweep_dir": "/trunc')  # a job killed while writing
    _pointer(hydra / "4", {"run_dir": "/elsewhere"})  # no sweep_dir
    _pointer(hydra / "5" / ".hydra" / "deeper", {"sweep_dir": c})
    (hydra / "6").mkdir()
    (hydra / "6" / "other.json").write_text(json.dumps({"sweep_dir": "/not/a/pointer"}))
    assert sweep_dirs_from_pointers(hydra) == [Path(a), Path(b), Path(c)]


def test_no_pointers_no_sweeps(tmp_path):
    assert sweep_dirs_from_pointers(tmp_path) == []
    assert sweep_dirs_from_pointers(tmp_path / "missing") == []


@pytest.mark.parametrize("content", ["null", "[]", '{"sweep_dir": null}'])
def test_pointers_that_are_not_objects_with_a_folder_are_skipped(tmp_path, content):
    _pointer(tmp_path / "0", content)
    _pointer(tmp_path / "1", {"sweep_dir": str(tmp_path / "good")})
    assert sweep_dirs_from_pointers(tmp_path) == [tmp_path / "good"]


# ----------------------------------------------------------------------------- finishing a sweep
@pytest.fixture(scope="module")
def one_run_sweep(tmp_path_factory) -> Path:
    """A sweep folder holding one complete non-private run of real patient data (see test_report.py).
    Each test finishes it anew and checks only what it wrote itself."""
    return make_sweep(tmp_path_factory.mktemp("results") / "fake-cnn", budgets=(math.inf,), seeds=(0,), real=True)


def test_finish_sweeps_writes_the_table_and_the_report(one_run_sweep, capsys):
    folder = one_run_sweep
    written = finish_sweeps([folder])  # default options: real patient data, reconstructions withheld
    assert written == [folder / "table.csv", folder / "table.parquet", folder / "report.html", folder / "report.md"]
    assert all(p.is_file() and p.stat().st_size > 0 for p in written)
    (run_dir, record), = store.iter_complete_runs(folder)
    table = pd.read_csv(folder / "table.csv")
    assert len(table) == 1 and table["config_hash"][0] == record["config_hash"]
    assert table["run_dir"][0] == run_dir.name
    assert table["test_accuracy"][0] == pytest.approx(record["summary"]["test_accuracy"])
    parquet = pd.read_parquet(folder / "table.parquet")
    assert list(parquet.columns) == list(table.columns) and parquet["config_hash"][0] == record["config_hash"]
    md = (folder / "report.md").read_text()
    assert "# medprivbench budget report: fake-cnn" in md and "Reconstructed images of fake-cnn withheld" in md
    out = capsys.readouterr().out
    assert f"1 run(s) in {folder}" in out and str(folder / "table.csv") in out and str(folder / "report.html") in out


def test_report_options_reach_the_report(one_run_sweep):
    folder = one_run_sweep
    finish_sweeps([folder], OmegaConf.create({"show_reconstructions": True}))  # as the sweep config passes them
    md = (folder / "report.md").read_text()
    assert "withheld" not in md and "figures/recon_fake-cnn_" in md
    with pytest.raises(ConfigError, match="report.show_reconstruction is not a report option"):
        finish_sweeps([folder], {"show_reconstruction": True})


@pytest.fixture
def finished(monkeypatch):
    """The calls the Hydra callback makes to finish_sweeps (each checked above; not rerun here)."""
    calls = []
    monkeypatch.setattr(callbacks, "finish_sweeps", lambda dirs, report_cfg=None, cfg=None: calls.append((dirs, report_cfg)))
    return calls


def test_the_hydra_callback_finishes_the_sweeps_its_jobs_point_to(tmp_path, finished):
    hydra = tmp_path / "multirun" / "2026-01-01"
    sweep = tmp_path / "results" / "fake-cnn"
    for job in ("0", "1"):  # two jobs of one sweep: the sweep is finished once
        _pointer(hydra / job, {"sweep_dir": str(sweep), "run_dir": "x", "skipped": False})
    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(hydra)}, "run": {"dir": str(tmp_path / "single")}},
                               "report": {"show_reconstructions": True}})
    SweepReportCallback().on_multirun_end(config)
    assert finished == [([sweep], config.report)]
    SweepReportCallback().on_run_end(config)  # a single run reads hydra.run.dir, where no job pointed
    assert finished[-1] == ([], config.report)
    _pointer(tmp_path / "single", {"sweep_dir": str(sweep)})
    SweepReportCallback().on_run_end(OmegaConf.create({"hydra": {"run": {"dir": str(tmp_path / "single")}}}))
    assert finished[-1] == ([sweep], None)  # no report section: the defaults

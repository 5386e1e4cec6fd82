"""Sweeps survive SIGKILL at any moment, concurrent sweeps share a results root, numbers repeat.

CI runs 2 kill-and-resume trials; ``MEDPRIVBENCH_CRASH_TRIALS=10`` runs the longer profile.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from medprivbench.benchmark import store

from ..conftest import REPO, TINY, run_cli

SWEEP = [*[a for a in TINY if not a.startswith(("attack", "membership", "train.epochs"))],
         "attack=[loss]", "membership.num_models=2", "train.epochs=1", "num_threads=1"]
TIMING = ("train_wall_s", "samples_per_s", "run_wall_s")


def _table(root: Path) -> pd.DataFrame:
    df = pd.read_csv(root / "synthetic-cnn" / "table.csv")
    return df.drop(columns=[c for c in TIMING if c in df]).sort_values("run_dir").reset_index(drop=True)


def _start(args: list[str]) -> subprocess.Popen:
    code = "import sys; from medprivbench.benchmark.cli import main; sys.argv[0] = 'medprivbench'; main()"
    return subprocess.Popen([sys.executable, "-c", code, *args], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> pd.DataFrame:
    root = tmp_path_factory.mktemp("reference")
    result = run_cli([*SWEEP, "privacy.epsilon=1,8,inf", f"results_root={root}"])
    assert result.returncode == 0, result.stderr[-2000:]
    return _table(root)


@pytest.mark.slow
@pytest.mark.parametrize("trial", range(int(os.environ.get("MEDPRIVBENCH_CRASH_TRIALS", "2"))))
def test_sigkill_at_random_moments_then_resume_gives_the_uninterrupted_table(tmp_path, reference, trial):
    rng = random.Random(trial)
    args = [*SWEEP, "privacy.epsilon=1,8,inf", f"results_root={tmp_path}"]
    for _ in range(2):  # two kills per trial, at random moments
        proc = _start(args)
        time.sleep(rng.uniform(2.0, 15.0))
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        for run_dir in (tmp_path / "synthetic-cnn" / "runs").glob("eps=*"):
            assert store.validate_run(run_dir) is None  # only complete runs are ever visible
    final = run_cli(args)
    assert final.returncode == 0, final.stderr[-2000:]
    pd.testing.assert_frame_equal(_table(tmp_path), reference, check_exact=True)
    assert not list((tmp_path / "synthetic-cnn" / "runs" / ".partial").glob("*"))  # leftovers cleaned


@pytest.mark.slow
def test_two_sweeps_share_one_results_root(tmp_path, reference):
    a = _start([*SWEEP, "privacy.epsilon=1,inf", f"results_root={tmp_path}"])
    b = _start([*SWEEP, "privacy.epsilon=inf,8", f"results_root={tmp_path}"])
    assert a.wait(timeout=600) == 0 and b.wait(timeout=600) == 0
    runs = [p for p in (tmp_path / "synthetic-cnn" / "runs").iterdir() if not p.name.startswith(".")]
    assert len(runs) == 3 and all(store.validate_run(p) is None for p in runs)
    pd.testing.assert_frame_equal(_table(tmp_path), reference, check_exact=True)


def test_same_config_and_seed_give_identical_records(tmp_path, reference):
    """Bit-for-bit on CPU: the reference sweep's records are reproduced by a fresh process."""
    result = run_cli([*SWEEP, "privacy.epsilon=8", f"results_root={tmp_path}"])
    assert result.returncode == 0
    again = _table(tmp_path).iloc[0]
    ref = reference[reference["epsilon"] == 8.0].iloc[0]
    pd.testing.assert_series_equal(again, ref, check_names=False, check_exact=True)
    record = json.loads(next((tmp_path / "synthetic-cnn" / "runs").glob("eps=8_*/metrics.json")).read_text())
    assert record["seed"] == 0 and record["config_hash"] and record["environment"]["torch"]

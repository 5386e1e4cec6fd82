"""Each Hydra launcher path runs a tiny sweep and produces the same table."""

import os
import secrets
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from medprivbench.benchmark.cli import launcher_threads

from ..conftest import TINY, run_cli

LAUNCHER_TINY = [*[a for a in TINY if not a.startswith(("attack", "membership"))],
                 "attack=[loss]", "membership.num_models=2", "train.epochs=1", "privacy.epsilon=1,inf"]


def _check_table(root: Path) -> None:
    table = pd.read_csv(root / "synthetic-cnn" / "table.csv")
    assert sorted(table["epsilon"]) == [1.0, float("inf")]
    assert table["mia_loss_auc"].notna().all()
    assert (root / "synthetic-cnn" / "report.html").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["parallel", "submitit_local"])
def test_launcher_runs_a_tiny_sweep(tmp_path, launcher):
    result = run_cli([*LAUNCHER_TINY, f"results_root={tmp_path}", f"hydra/launcher={launcher}"])
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    _check_table(tmp_path)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_ray_launcher_on_a_local_cluster(tmp_path):
    ray = shutil.which("ray", path=str(Path(sys.executable).parent)) or shutil.which("ray")
    if ray is None:
        pytest.skip("the ray command is not installed (pip install 'medprivbench[scale]')")
    port = _free_port()
    # A token of our own, so that a token left in ~/.ray by another cluster cannot interfere.
    auth = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    env = {**os.environ, **auth}
    start = subprocess.run(
        [ray, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=2",
         "--include-dashboard=false", "--disable-usage-stats"],
        capture_output=True, text=True, env=env, timeout=180,
    )
    assert start.returncode == 0, start.stderr[-2000:]
    try:
        result = run_cli([*LAUNCHER_TINY, f"results_root={tmp_path}", "hydra/launcher=ray_cluster",
                          f"hydra.launcher.ray.init.address=127.0.0.1:{port}"], env=auth)
        assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
        _check_table(tmp_path)
    finally:
        subprocess.run([ray, "stop", "--force"], capture_output=True, env=env, timeout=120)


def test_threads_per_job_do_not_oversubscribe():
    assert launcher_threads({"_target_": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher", "n_jobs": 2}, 2) == 1
    assert launcher_threads({"_target_": "x.JoblibLauncher", "n_jobs": 2}, 16) == 8
    assert launcher_threads({"_target_": "x.JoblibLauncher", "n_jobs": -1}, 4) == 1
    assert launcher_threads({"_target_": "x.RayLauncher", "ray": {"remote": {"num_cpus": 3}}}, 16) == 3
    assert launcher_threads({"_target_": "x.SlurmLauncher", "cpus_per_task": 8}, 64) == 8
    assert launcher_threads({"_target_": "hydra._internal.core_plugins.basic_launcher.BasicLauncher"}, 2) is None

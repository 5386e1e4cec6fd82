"""Experiment tracking against a real local MLflow store (no mock): runs logged and read back."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from medprivbench.benchmark.tracking import metric_name

from ..conftest import run_cli

SWEEP = ["privacy.epsilon=8,inf", "attack=[loss]", "membership.num_models=2", "train.epochs=1", "train.nonprivate.epochs=1",
         "dataset.n_train=200", "dataset.n_val=50", "dataset.n_test=100", "progress=off", "logger=mlflow"]


@pytest.mark.slow
def test_a_sweep_is_logged_to_mlflow_and_read_back(tmp_path, monkeypatch):
    mlflow = pytest.importorskip("mlflow", reason="logger=mlflow needs the tracking extra")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # a local file store, as the logger writes
    result = run_cli([*SWEEP, f"results_root={tmp_path}"])
    assert result.returncode == 0, result.stderr[-2000:]
    table = pd.read_csv(tmp_path / "synthetic-cnn" / "table.csv")

    mlflow.set_tracking_uri((tmp_path / "mlruns").as_uri())
    runs = mlflow.search_runs(experiment_names=["synthetic-cnn"])
    kinds = runs["tags.medprivbench.kind"].value_counts().to_dict()
    assert kinds == {"run": 3, "sweep": 1}  # ε = 8 and the two non-private references
    logged = runs[runs["tags.medprivbench.kind"] == "run"].set_index("tags.mlflow.runName")
    for _, row in table.iterrows():
        run = logged.loc[row["run_dir"]]
        assert float(run["params.epsilon"]) == row["epsilon"] and run["params.config_hash"] == row["config_hash"]
        for column in ("test_accuracy", "test_auroc", "mia_loss_auc", "mia_best_tpr_at_0.1%fpr"):
            assert math.isclose(run[f"metrics.{metric_name(column)}"], row[column], rel_tol=1e-12)
    sweep = runs[runs["tags.medprivbench.kind"] == "sweep"].iloc[0]
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(sweep["run_id"])}
    assert {"report.html", "report.md", "table.csv", "figures"} <= artifacts


def test_an_unknown_or_missing_tracker_is_one_line(tmp_path):
    from medprivbench.benchmark.errors import ConfigError
    from medprivbench.benchmark.paths import CONFIG_DIR
    from medprivbench.benchmark.preflight import preflight

    with pytest.raises(ConfigError, match=r"^logger=wandb is not valid; choose one of mlflow, none$"):
        preflight(["logger=wandb"], str(CONFIG_DIR))

"""Experiment tracking: each benchmark run, and each sweep's report, logged to MLflow.

Off by default (``logger=none``). With ``logger=mlflow`` every completed run becomes an MLflow run
(parameters: dataset, model, ε, seed, σ, q, T, C, accountant, config hash; metrics: every numeric
column of the run's table row; artifact: the run record), and each finished sweep one more run
holding the report, the table and the figures. Tracking happens after the run is published:
a tracking failure is a warning, never a lost result.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import os
import re
from pathlib import Path

from .errors import ConfigError

log = logging.getLogger("medprivbench")
TRACKERS = ("none", "mlflow")
# Parameters of a run (from the record's summary) as MLflow parameters rather than metrics.
PARAMETERS = ("dataset", "model", "epsilon", "seed", "sigma", "sample_rate", "steps", "max_grad_norm", "accountant",
              "config_hash", "delta")


def check(cfg) -> None:
    """Preflight: a known tracker, installed."""
    name = cfg.logger.name
    if name not in TRACKERS:
        raise ConfigError(f"logger={name!r} is not valid; choose one of {', '.join(TRACKERS)}")
    if name == "mlflow" and importlib.util.find_spec("mlflow") is None:
        raise ConfigError("logger=mlflow needs the mlflow package; install it with pip install 'medprivbench[tracking]'")


def _client(cfg, sweep_name: str):  # noqa: ANN202 - the mlflow module
    import mlflow

    uri = cfg.logger.tracking_uri or (Path(str(cfg.results_root)).expanduser().absolute() / "mlruns").as_uri()
    if uri.startswith("file:"):
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # a local store needs no server
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(cfg.logger.experiment or sweep_name)
    return mlflow


def metric_name(column: str) -> str:
    """A table column as an MLflow metric key (letters, digits, _ - . / and spaces only)."""
    return re.sub(r"[^\w\-. /]", "_", column.replace("%", "pct"))


def log_run(cfg, record: dict, run_dir: Path) -> None:
    """One MLflow run for one benchmark run (after it is published)."""
    if cfg.logger.name != "mlflow":
        return
    try:
        mlflow = _client(cfg, run_dir.parent.parent.name)  # <results_root>/<name>/runs/<run>
        summary = record["summary"]
        params = {k: summary[k] for k in PARAMETERS if k in summary}
        metrics = {metric_name(k): float(v) for k, v in summary.items()
                   if k not in params and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}
        with mlflow.start_run(run_name=run_dir.name):
            mlflow.set_tags({"medprivbench.kind": "run", "medprivbench.run_dir": str(run_dir)})
            mlflow.log_params(params)
            mlflow.log_metrics(metrics)
            mlflow.log_artifact(str(run_dir / "metrics.json"))
    except Exception as exc:  # noqa: BLE001 - tracking must never cost a result
        log.warning("MLflow tracking of %s failed (%s: %s); the run itself is complete", run_dir, type(exc).__name__, exc)


def log_sweep(cfg, sweep_dir: Path, files: list[Path]) -> None:
    """One MLflow run per finished sweep: its report, table and figures."""
    if cfg is None or cfg.get("logger") is None or cfg.logger.name != "mlflow":
        return
    try:
        mlflow = _client(cfg, sweep_dir.name)
        with mlflow.start_run(run_name=f"sweep {sweep_dir.name}"):
            mlflow.set_tags({"medprivbench.kind": "sweep", "medprivbench.sweep_dir": str(sweep_dir)})
            for path in files:
                mlflow.log_artifact(str(path))
            if (sweep_dir / "figures").is_dir():
                mlflow.log_artifacts(str(sweep_dir / "figures"), artifact_path="figures")
    except Exception as exc:  # noqa: BLE001
        log.warning("MLflow tracking of the sweep %s failed (%s: %s)", sweep_dir, type(exc).__name__, exc)

"""Hydra callback that turns a finished sweep into its table and report.

Every job writes a small pointer file (benchmark/cli.py) into its Hydra job folder; after the
last job, this callback reads the pointers, aggregates each sweep folder's complete runs into
table.csv/.parquet and rebuilds report.html/.md. Jobs never write shared files, so any launcher
(serial, joblib, submitit, Ray) can run them in parallel.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from .paths import POINTER

log = logging.getLogger("medprivbench")


def sweep_dirs_from_pointers(hydra_dir: Path) -> list[Path]:
    dirs = []
    for pointer in sorted(Path(hydra_dir).rglob(POINTER)):
        try:
            d = Path(json.loads(pointer.read_text())["sweep_dir"])
        except (ValueError, KeyError, TypeError):  # damaged, or not an object naming a folder
            continue
        if d not in dirs:
            dirs.append(d)
    return dirs


def finish_sweeps(sweep_dirs: list[Path], report_cfg=None, cfg=None) -> list[Path]:
    """Aggregate each sweep folder's table and rebuild its report (and log them to the tracker
    ``cfg.logger`` names, if any); returns the files written."""
    from . import store, tracking
    from .report import build_report, report_options

    written = []
    for sweep_dir in sweep_dirs:
        df = store.aggregate(sweep_dir)
        csv_path, parquet_path = store.write_table(sweep_dir, df)
        paths = build_report([sweep_dir], **report_options(report_cfg))
        written += [csv_path, parquet_path, *paths]
        tracking.log_sweep(cfg, Path(sweep_dir), [csv_path, *paths])
        print(f"\nmedprivbench: {len(df)} run(s) in {sweep_dir}")
        print(f"  results table: {csv_path}")
        print(f"                 {parquet_path}")
        for p in paths:
            print(f"  report:        {p}")
    return written


class SweepReportCallback(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        finish_sweeps(sweep_dirs_from_pointers(Path(str(config.hydra.sweep.dir))), config.get("report"), config)

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        finish_sweeps(sweep_dirs_from_pointers(Path(str(config.hydra.run.dir))), config.get("report"), config)

"""Command-line entry points.

``medprivbench``         Hydra application: one job per sweep point (see configs/config.yaml).
``medprivbench-report``  rebuild the report of one results folder, or compare several.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from .config import register_configs
from .errors import USER_ERRORS, fail
from .paths import CONFIG_DIR, POINTER


log = logging.getLogger("medprivbench")


def _fail(message: str) -> None:
    fail("medprivbench", message)


def launcher_threads(launcher, cpu_count: int) -> int | None:
    """Torch threads per job so that parallel jobs do not oversubscribe the cores they are given."""
    target = str(launcher.get("_target_", "")).lower()
    if "joblib" in target:
        n_jobs = int(launcher.get("n_jobs") or 1)
        n_jobs = cpu_count if n_jobs < 0 else n_jobs
        return max(1, cpu_count // max(1, n_jobs))
    if "ray" in target:
        cpus = launcher.get("ray", {}).get("remote", {}).get("num_cpus")
        return max(1, int(cpus)) if cpus else None
    if "submitit" in target or "slurm" in target:
        cpus = launcher.get("cpus_per_task")
        return max(1, int(cpus)) if cpus else None
    return None


def _task(cfg) -> str:
    import os

    import torch
    from hydra.core.hydra_config import HydraConfig

    from .experiment import run_experiment

    if cfg.num_threads is None:
        threads = launcher_threads(HydraConfig.get().launcher, os.cpu_count() or 1)
        if threads is not None:
            torch.set_num_threads(threads)
    try:
        outcome = run_experiment(cfg)
    except USER_ERRORS as exc:
        _fail(str(exc))
    output_dir = Path(HydraConfig.get().runtime.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / POINTER).write_text(
        json.dumps({"sweep_dir": str(outcome.sweep_dir.resolve()), "run_dir": str(outcome.run_dir.resolve()),
                    "skipped": outcome.skipped})
    )
    return str(outcome.run_dir)


def main() -> None:
    import hydra

    from .preflight import preflight

    register_configs()
    try:
        preflight(sys.argv[1:], str(CONFIG_DIR))
    except USER_ERRORS as exc:
        _fail(str(exc))
    hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="config")(_task)()


def report_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="medprivbench-report",
        description="Rebuild the budget report from results folders without rerunning anything. "
        "One folder: its report.html/.md are rewritten in place. Several: a side-by-side comparison.",
    )
    parser.add_argument("folders", nargs="+", type=Path, help="sweep folders (results/<name>)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: the sweep folder, or ./report-comparison)")
    parser.add_argument(
        "--show-reconstructions", action="store_true",
        help="include reconstructed images of real (patient) data in the report; off by default",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from .report import build_report
    from .store import require_sweep_folder

    try:
        for folder in args.folders:
            require_sweep_folder(folder)
        paths = build_report(args.folders, out_dir=args.out, show_reconstructions=args.show_reconstructions)
    except USER_ERRORS as exc:
        _fail(str(exc))
    for p in paths:
        print(p)
    return 0


if __name__ == "__main__":
    main()

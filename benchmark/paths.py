"""Where the engine's files are: the Hydra configs, and the pointer each Hydra job leaves behind."""

from __future__ import annotations

from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
POINTER = "medprivbench_run.json"  # written in each Hydra job folder; read by the sweep callback

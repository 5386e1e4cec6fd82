"""Shared fixtures. Real MedMNIST files live in ../shared/data beside the repository, never inside it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

# Under pytest-xdist (``make test`` runs two workers) each worker, and every command it starts,
# uses one thread: two workers of two threads each on two cores slow each other down several-fold.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["MKL_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("MEDPRIVBENCH_SHARED_DATA", REPO.parent / "shared" / "data"))

# A sweep small enough for tests: a few hundred synthetic images, two epochs, the loss attack and
# offline LiRA on four models.
TINY = [
    "dataset.n_train=300", "dataset.n_val=100", "dataset.n_test=200",
    "train.epochs=2", "train.batch_size=64", "train.nonprivate.batch_size=64", "train.nonprivate.epochs=null", "progress=off",
    "attack=[loss,lira]", "attack.lira.online=false", "membership.num_models=4",
    # one non-private reference keeps the tiny sweeps small; test_sweep.py runs both end to end
    "privacy.references=[same_recipe]",
]


def shared_file(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.is_file():
        pytest.skip(f"real-data test: {path} is absent (MedMNIST files are kept outside the repository in ../shared/data)")
    return path


@pytest.fixture
def shared_data() -> Path:
    shared_file("breastmnist.npz")
    return SHARED_DATA


def run_cli(args: list[str], *, cwd: Path | None = None, timeout: int = 600, program: str = "medprivbench",
            env: dict | None = None) -> subprocess.CompletedProcess:
    """Run a console entry point in a fresh interpreter (Hydra keeps global state per process)."""
    module = {"medprivbench": "medprivbench.benchmark.cli:main", "medprivbench-report": "medprivbench.benchmark.cli:report_main",
              "medprivbench-audit": "medprivbench.benchmark.audit_cli:main"}[program]
    mod, fn = module.split(":")
    code = f"import sys; from {mod} import {fn} as f; sys.argv[0] = {program!r}; r = f(); sys.exit(r if isinstance(r, int) else 0)"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "0", **(env or {})}
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd or REPO, capture_output=True, text=True, timeout=timeout, env=env)


def record_train_calls(monkeypatch, module) -> list[dict]:
    """Every call of ``module.train`` from now on: its inputs and the trained model (training itself unchanged)."""
    calls = []
    real_train = module.train

    def recording(model, x, y, **kwargs):
        result = real_train(model, x, y, **kwargs)
        calls.append({"x": x.clone(), "y": y.clone(), "result": result, **kwargs})
        return result

    monkeypatch.setattr(module, "train", recording)
    return calls

"""medprivbench's Python API: run sweeps, read results, rebuild reports and audit outputs you have.

The command line (``medprivbench``, ``medprivbench-report``, ``medprivbench-audit``) and this API
share one engine. A notebook session::

    >>> import medprivbench
    >>> table = medprivbench.run_sweep(["privacy.epsilon=1,inf", "attack=[loss]"])  # doctest: +SKIP
    >>> table[["epsilon", "test_accuracy", "mia_best_auc"]]  # doctest: +SKIP

Attacks and bounds without any training (pure functions on arrays) live in
:mod:`medprivbench.attacks`, e.g. ``medprivbench.attacks.rero_bound``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pandas is imported when a function needs it, audit_outputs on first use (``__getattr__``)
    import pandas as pd

    from .benchmark.audit_outputs import audit_outputs

try:
    __version__ = version("medprivbench")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

__all__ = ["__version__", "audit_outputs", "load_results", "report", "run_sweep"]


def run_sweep(overrides: Sequence[str] = (), *, quiet: bool = True) -> pd.DataFrame:
    """Run a sweep exactly as ``medprivbench <overrides>`` does and return its table.

    The sweep runs in a child process (Hydra owns its process: logging, working directory,
    multirun state), composed from the same config and command-line overrides, with the same
    validation: a bad value raises :class:`~medprivbench.benchmark.errors.ConfigError` with the
    command line's one-line message and nothing is written. Runs already complete are reused.

    Args:
        overrides: Hydra overrides, e.g. ``["privacy.epsilon=1,8,inf", "attack=[loss]"]``.
        quiet: hide the child's log (its errors are still raised).

    Returns:
        One row per run of every sweep folder the sweep wrote to (``load_results`` of each).

    Example::

        >>> t = run_sweep(["privacy.epsilon=inf", "attack=[loss]", "membership.num_models=2",
        ...                "train.epochs=1", "dataset.n_train=200"])  # doctest: +SKIP
        >>> float(t["test_accuracy"].iloc[0]) > 0.4  # doctest: +SKIP
        True
    """
    import pandas as pd

    from .benchmark.errors import ConfigError
    from .benchmark.paths import POINTER

    with tempfile.TemporaryDirectory(prefix="medprivbench-sweep-") as jobs:
        code = "import sys; from medprivbench.benchmark.cli import main; sys.argv[0] = 'medprivbench'; main()"
        args = [sys.executable, "-c", code, *overrides, f"hydra.sweep.dir={jobs}"]
        done = subprocess.run(args, capture_output=True, text=True)
        if done.returncode != 0:
            lines = [line for line in done.stderr.splitlines() if line.strip()]
            prefix = "medprivbench: error: "
            message = next((line[len(prefix):] for line in lines if line.startswith(prefix)), None)
            if message is not None:
                raise ConfigError(message)
            raise RuntimeError(f"the sweep failed (exit status {done.returncode}):\n" + "\n".join(lines[-20:]))
        if not quiet:
            print(done.stdout + done.stderr, end="")
        folders = []
        for pointer in sorted(Path(jobs).glob(f"*/{POINTER}")):
            folder = json.loads(pointer.read_text())["sweep_dir"]
            if folder not in folders:
                folders.append(folder)
    tables = [load_results(folder) for folder in folders]
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()


def load_results(folder: str | Path) -> pd.DataFrame:
    """The results table of a sweep folder (``results/<name>``): one row per complete run.

    Read from the run records themselves (damaged or interrupted runs are left out), so it is
    the table ``table.csv`` holds, also when that file is older than the runs.

    Example::

        >>> t = load_results("results/synthetic-cnn")  # doctest: +SKIP
        >>> t.plot(x="epsilon", y="test_accuracy", logx=True)  # utility vs ε  # doctest: +SKIP
    """
    from .benchmark import store

    return store.aggregate(store.require_sweep_folder(Path(folder)))


def report(folders: str | Path | Sequence[str | Path], out: str | Path | None = None, *,
           show_reconstructions: bool = False) -> list[Path]:
    """Rebuild the budget report of one sweep folder, or compare several side by side.

    Same as ``medprivbench-report``; returns the files written (HTML, then Markdown).
    Reconstructions of real patient images appear only with ``show_reconstructions=True``.

    Example::

        >>> report("results/synthetic-cnn")  # doctest: +SKIP
        [PosixPath('results/synthetic-cnn/report.html'), PosixPath('results/synthetic-cnn/report.md')]
    """
    from .benchmark.report import build_report
    from .benchmark.store import require_sweep_folder

    paths = [require_sweep_folder(Path(f)) for f in ([folders] if isinstance(folders, (str, Path)) else folders)]
    return build_report(paths, out_dir=Path(out) if out is not None else None, show_reconstructions=show_reconstructions)


def __getattr__(name: str):  # noqa: ANN202 - PEP 562: subpackages on first use (``medprivbench.attacks``)
    if name in ("attacks", "benchmark", "datasets"):
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    if name == "audit_outputs":  # the engine's module, loaded on first use like the subpackages
        from .benchmark.audit_outputs import audit_outputs

        return audit_outputs
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""The results store: one folder per run, made visible atomically, and the sweep table.

Layout of a sweep folder (``<results_root>/<name>/``)::

    runs/<run_id>/config.yaml        resolved configuration of the run
                  metrics.json       the run record (see benchmark/experiment.py)
                  *.parquet, *.safetensors, figures …
                  COMPLETE.json      manifest: every file with size and SHA-256; written last
    runs/.partial/                   runs being written (never read)
    runs/.damaged/                   folders that failed validation, moved aside for inspection
    table.csv, table.parquet         one row per complete run
    report.html, report.md           the budget report

A run is written into ``runs/.partial/<run_id>.<unique>/``; the manifest is written last (to a
temporary name, then renamed), and the whole folder is then renamed to ``runs/<run_id>``. A
killed run therefore leaves nothing under ``runs/<run_id>``, and two processes computing the
same run never mix their files: the first rename wins and the second discards its copy.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .numbers import format_epsilon  # noqa: F401  (run folder names; importable from here as before)

log = logging.getLogger(__name__)

SCHEMA_VERSION = 3  # 3: one result per attack (registry), protocols and bounds apart; 2: streams, held-out empirical ε
MANIFEST = "COMPLETE.json"
METRICS = "metrics.json"

# Config keys that change where or how a run is reported, not what it computes.
NON_SEMANTIC_KEYS = ("name", "results_root", "device", "num_threads", "shadow_workers", "progress", "report", "sizing", "logger")


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=_json_default, allow_nan=True)


def _json_default(obj: Any):
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "to_record"):  # an attack's typed result (benchmark/families)
        return obj.to_record()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def config_hash(run_config: dict) -> str:
    """SHA-256 of the canonical JSON of the semantic part of a resolved run configuration."""
    semantic = {k: v for k, v in run_config.items() if k not in NON_SEMANTIC_KEYS}
    semantic["_schema"] = SCHEMA_VERSION
    return hashlib.sha256(canonical_json(semantic).encode()).hexdigest()


def run_id_for(run_config: dict) -> str:
    h = config_hash(run_config)
    eps = float(run_config["privacy"]["epsilon"])
    return f"eps={format_epsilon(eps)}_seed={run_config['seed']}_{h[:12]}"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def publish_folder(out: Path, files: dict[str, bytes], fill: Callable[[Path], None] | None = None) -> Path:
    """Write ``files`` (name → contents) as the folder ``out``, all or nothing.

    The files are written and synced into a private folder beside ``out`` (named as ``out``, inside
    a hidden staging folder), then ``fill(folder)`` may add more (an audit's run and report), and
    the folder is renamed into place: a failure on the way removes it and leaves ``out`` as it was.
    An existing ``out`` (an earlier result the caller may replace) is first moved aside, put back if
    the rename fails, and deleted once the new folder is in place, so its files never mix with the new ones.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    holder = out.with_name(f".{out.name}.{uuid.uuid4().hex[:8]}.partial")
    staging = holder / out.name
    previous = None
    staging.mkdir(parents=True)
    try:
        for name, data in files.items():
            with open(staging / name, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        if fill is not None:
            fill(staging)
        if out.exists():
            previous = out.with_name(f".{out.name}.{uuid.uuid4().hex[:8]}.previous")
            os.rename(out, previous)
        try:
            os.rename(staging, out)
        except BaseException:
            if previous is not None:
                os.rename(previous, out)
            raise
    finally:
        shutil.rmtree(holder, ignore_errors=True)
    if previous is not None:
        shutil.rmtree(previous, ignore_errors=True)
    return out


class RunWriter:
    """Collects a run's files in a private folder and publishes them in one rename."""

    def __init__(self, sweep_dir: Path, run_id: str):
        self.sweep_dir = Path(sweep_dir)
        self.run_id = run_id
        self.final_dir = self.sweep_dir / "runs" / run_id
        partial = self.sweep_dir / "runs" / ".partial"
        remove_stale_partials(partial)
        # host and pid in the name let a later run tell a crashed writer's leftovers from a live one
        self.dir = partial / f"{run_id}.{_HOST}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
        self.dir.mkdir(parents=True, exist_ok=False)

    def path(self, name: str) -> Path:
        p = self.dir / name
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def write_json(self, name: str, obj: Any) -> Path:
        p = self.path(name)
        p.write_text(json.dumps(obj, indent=2, default=_json_default, allow_nan=True))  # key order kept: table columns
        return p

    def write_text(self, name: str, text: str) -> Path:
        p = self.path(name)
        p.write_text(text)
        return p

    def write_parquet(self, name: str, df: pd.DataFrame) -> Path:
        p = self.path(name)
        df.to_parquet(p, index=False)
        return p

    def save_state_dict(self, name: str, module) -> Path:
        from safetensors.torch import save_file

        p = self.path(name)
        state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
        save_file(state, str(p))
        return p

    def publish(self, manifest_extra: dict | None = None) -> Path:
        """Write the manifest last, then rename the folder into place. Returns the run folder."""
        files = {}
        for p in sorted(self.dir.rglob("*")):
            if p.is_file():
                rel = p.relative_to(self.dir).as_posix()
                files[rel] = {"bytes": p.stat().st_size, "sha256": sha256_file(p)}
        manifest = {"run_id": self.run_id, "schema": SCHEMA_VERSION, "completed_at": time.time(), "files": files}
        manifest.update(manifest_extra or {})
        atomic_write_text(self.dir / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True))
        if self.final_dir.exists():
            problem = validate_run(self.final_dir)
            if problem is None:  # another process finished the same run first
                log.info("run %s was completed by another process; keeping that copy", self.run_id)
                shutil.rmtree(self.dir, ignore_errors=True)
                return self.final_dir
            quarantine(self.final_dir, problem)
        try:
            os.rename(self.dir, self.final_dir)
        except OSError:
            if validate_run(self.final_dir) is None:
                shutil.rmtree(self.dir, ignore_errors=True)
                return self.final_dir
            raise
        return self.final_dir

    def discard(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


_HOST = (os.uname().nodename if hasattr(os, "uname") else "host").replace(".", "-")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_partials(partial: Path) -> None:
    """Delete half-written run folders left by processes of this host that no longer exist."""
    if not partial.is_dir():
        return
    for d in partial.iterdir():
        parts = d.name.split(".")
        if len(parts) < 4 or parts[-3] != _HOST or not parts[-2].isdigit():
            continue
        if not _pid_alive(int(parts[-2])):
            shutil.rmtree(d, ignore_errors=True)


def validate_run(run_dir: Path, *, check_hashes: bool = True) -> str | None:
    """None when ``run_dir`` is a complete, undamaged run; otherwise what is wrong, in a few words."""
    return _check_run(Path(run_dir), check_hashes)[0]


def _check_run(run_dir: Path, check_hashes: bool = True) -> tuple[str | None, dict | None]:
    """(None, the parsed record) for a complete, undamaged run; (what is wrong, None) otherwise."""
    manifest_path = run_dir / MANIFEST
    if not manifest_path.is_file():
        return "no completion manifest (the run was interrupted)", None
    try:
        manifest = json.loads(manifest_path.read_text())
        files = manifest["files"]
    except (ValueError, KeyError, TypeError) as exc:
        return f"unreadable manifest ({type(exc).__name__})", None
    if METRICS not in files:
        return "manifest lists no metrics.json", None
    for rel, meta in files.items():
        p = run_dir / rel
        if not p.is_file():
            return f"{rel} is missing", None
        if p.stat().st_size != meta.get("bytes"):
            return f"{rel} has {p.stat().st_size} bytes, the manifest says {meta.get('bytes')} (truncated?)", None
        if check_hashes and sha256_file(p) != meta.get("sha256"):
            return f"{rel} does not match its checksum", None
    try:  # a record whose checksums match but which does not parse is damage too
        record = load_record(run_dir)
    except (ValueError, UnicodeDecodeError) as exc:
        return f"{METRICS} does not parse ({type(exc).__name__})", None
    if not isinstance(record, dict) or not isinstance(record.get("summary"), dict) or "schema" not in record:
        return f"{METRICS} is not a run record (no schema or summary)", None
    return None, record


def quarantine(run_dir: Path, reason: str) -> Path:
    """Move a damaged run folder aside (never delete what may be worth inspecting)."""
    run_dir = Path(run_dir)
    target = run_dir.parent / ".damaged" / f"{run_dir.name}.{time.strftime('%Y%m%d-%H%M%S')}.{uuid.uuid4().hex[:6]}"
    target.parent.mkdir(parents=True, exist_ok=True)
    log.warning("damaged run folder %s (%s): moved to %s; it will be redone", run_dir, reason, target)
    os.rename(run_dir, target)
    return target


def find_complete_run(sweep_dir: Path, run_id: str) -> Path | None:
    """The complete run folder of ``run_id``, or None. A damaged folder is quarantined."""
    run_dir = Path(sweep_dir) / "runs" / run_id
    if not run_dir.exists():
        return None
    problem = validate_run(run_dir)
    if problem is None:
        return run_dir
    try:
        quarantine(run_dir, problem)
    except OSError:
        pass  # another process moved it first
    return None


def load_record(run_dir: Path) -> dict:
    return json.loads((Path(run_dir) / METRICS).read_text())


def iter_complete_runs(sweep_dir: Path):
    """(run_dir, record) of every complete run; damaged folders are reported and skipped."""
    runs = Path(sweep_dir) / "runs"
    if not runs.is_dir():
        return
    for run_dir in sorted(p for p in runs.iterdir() if p.is_dir() and not p.name.startswith(".")):
        problem, record = _check_run(run_dir)
        if problem is not None:
            log.warning("skipping %s: %s", run_dir, problem)
            continue
        if record.get("schema") != SCHEMA_VERSION:
            log.warning("skipping %s: recorded by another version of medprivbench (record schema %s, this version "
                        "reads %s); rerun the sweep to redo it", run_dir, record.get("schema"), SCHEMA_VERSION)
            continue
        yield run_dir, record


def require_sweep_folder(folder: Path) -> Path:
    """``folder`` if it is a sweep's results folder (it holds runs/), else a one-line ConfigError."""
    from .errors import ConfigError

    folder = Path(folder)
    if not (folder / "runs").is_dir():
        raise ConfigError(f"{folder} is not a results folder (no runs/ inside); give results/<name> of a sweep")
    return folder


def aggregate(sweep_dir: Path) -> pd.DataFrame:
    """The sweep table: one row per complete run, from each record's flat ``summary``."""
    rows = []
    for run_dir, record in iter_complete_runs(sweep_dir):
        row = dict(record["summary"])
        row["run_dir"] = str(Path(run_dir).name)
        rows.append(row)
    df = pd.DataFrame(rows)
    if len(df):
        df = df.sort_values(["dataset", "model", "epsilon", "seed"], key=_epsilon_sort_key).reset_index(drop=True)
    return df


def _epsilon_sort_key(col: pd.Series) -> pd.Series:
    return col.astype(float) if col.name == "epsilon" else col


def write_table(sweep_dir: Path, df: pd.DataFrame) -> tuple[Path, Path]:
    sweep_dir = Path(sweep_dir)
    csv_path, parquet_path = sweep_dir / "table.csv", sweep_dir / "table.parquet"
    atomic_write_text(csv_path, df.to_csv(index=False))
    tmp = sweep_dir / f".table.{uuid.uuid4().hex}.parquet.tmp"
    df.to_parquet(tmp, index=False)
    os.replace(tmp, parquet_path)
    return csv_path, parquet_path

"""Building the report: read the sweeps, derive the frames once, write every section, then the files."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pandas as pd

from .. import store
from ..errors import ConfigError
from .document import Document
from ..families import ordered
from .records import load_sweeps, run_frame
from .sections import Context, sections
from .verdicts import evidence_by_point

log = logging.getLogger("medprivbench")

FIGURE_LIST = ".report-files"  # figures/ files written by the last build, removed by the next
OPTIONS = ("show_reconstructions",)


def report_options(report_cfg) -> dict:
    """build_report keyword arguments from a sweep config's ``report`` section (e.g. report.show_reconstructions=true)."""
    options = dict(report_cfg or {})
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ConfigError(f"report.{unknown[0]} is not a report option; the only one is report.show_reconstructions=true|false")
    value = options.get("show_reconstructions", False)
    if not isinstance(value, bool):
        raise ConfigError(f"report.show_reconstructions={value!r} must be true or false")
    return {"show_reconstructions": value}


def _clear_previous_figures(fig_dir: Path) -> None:
    """Remove the figures the last build wrote (reconstruction grids of patient data must not linger)."""
    listing = fig_dir / FIGURE_LIST
    if not listing.is_file():
        return
    for name in listing.read_text().split("\n"):
        path = fig_dir / name
        if name and path.parent == fig_dir and path.is_file():
            path.unlink()
    listing.unlink()


def family_frames(sweeps) -> dict[str, pd.DataFrame]:
    """Each family's frame over all sweeps (its rows of every sweep), by family key."""
    frames = {}
    for family in ordered():
        parts = [f for f in (family.frame(s) for s in sweeps) if f is not None]
        if parts:
            frames[family.key] = pd.concat(parts, ignore_index=True)
    return frames


def build_report(folders: list[Path], out_dir: Path | None = None, show_reconstructions: bool = False) -> list[Path]:
    """Write report.html and report.md for one sweep folder (in place) or several (a comparison).

    ``show_reconstructions`` includes reconstructed images of real patient data; images of
    synthetic or public data are always shown. Returns the paths written (HTML, then Markdown).
    """
    sweeps = load_sweeps(list(folders))
    out_dir = Path(out_dir) if out_dir is not None else (sweeps[0].folder if len(sweeps) == 1 else Path("report-comparison"))
    out_dir.mkdir(parents=True, exist_ok=True)
    title = (f"medprivbench budget report: {sweeps[0].label}" if len(sweeps) == 1
             else "medprivbench budget comparison: " + " vs ".join(s.label for s in sweeps))
    doc = Document(title, out_dir)
    _clear_previous_figures(doc.fig_dir)
    ctx = Context(
        sweeps=sweeps, doc=doc, show_reconstructions=bool(show_reconstructions),
        runs={s.label: run_frame(s) for s in sweeps},
        frames=family_frames(sweeps),
        evidence={s.label: evidence_by_point(s) for s in sweeps},
    )
    for section in sections():
        section(ctx)
    if doc.figures:
        store.atomic_write_text(doc.fig_dir / FIGURE_LIST, "\n".join(p.name for p in doc.figures) + "\n")
    generated = (f"Generated {time.strftime('%Y-%m-%d %H:%M:%S %Z')} from "
                 f"{', '.join(str(s.folder) for s in sweeps)} ({sum(len(s.runs) for s in sweeps)} complete runs).")
    paths = doc.write(generated)
    log.info("report written to %s", ", ".join(map(str, paths)))
    return paths

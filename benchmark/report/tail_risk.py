"""The privacy tail's per-image values, read back from the run folders, and its figure.

Each privacy-tail result names a Parquet file in its run folder (benchmark/membership_run.py,
``TAIL_COLUMNS``): one row per image and membership assignment, ``membership`` "observed" (the
protocol's) or "permuted" (permutation ``permutation`` of the null), with the image's per-record
AUC and TPR. The figure draws, per budget, the complementary CDF of each: the share of images whose
risk is at least x, on a log axis, so that a tail of a few exposed images is visible beside the
bulk (conventions: report/figures.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..numbers import fmt_percent
from .figures import legend, plain_text, plt, save, series_style
from .records import run_file

PARQUET_MAGIC = b"PAR1"
COLUMNS = ("membership", "permutation", "record", "auc", "tpr")


def records_path(run, relative: str) -> Path | None:
    """The per-image file a result names, only if it lies inside the run folder and is a Parquet file."""
    return run_file(run, relative, PARQUET_MAGIC)


def _read(path: Path) -> pd.DataFrame | None:
    """The file's rows, or None when it cannot be read or lacks a column of :data:`COLUMNS`."""
    try:
        frame = pd.read_parquet(path, columns=list(COLUMNS))
    except (OSError, ValueError, KeyError, TypeError):  # damaged or foreign files: no figure rather than a crash
        return None
    if not all(pd.api.types.is_numeric_dtype(frame[c]) for c in ("auc", "tpr")):
        return None
    return frame


def record_values(sweeps, family: str) -> pd.DataFrame:
    """Every run's per-image values of the family's results, with sweep, ε, reference, point, seed and fpr."""
    parts = []
    for sweep in sweeps:
        for r in sweep.runs:
            for name, result in r.results(family).items():
                path = records_path(r, result.records_file)
                frame = _read(path) if path else None
                if frame is not None:
                    parts.append(frame.assign(sweep=sweep.label, epsilon=r.epsilon, reference=r.reference,
                                              point=r.point.label, seed=r.seed, name=name, fpr=result.fpr))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def complementary_cdf(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(x, share of the finite values ≥ x) at each distinct finite value x, ascending: drawn with
    steps-pre, the share on (x_{i−1}, x_i] is that at x_i, and tied values make one step."""
    finite = np.sort(values[np.isfinite(values)])
    x = np.unique(finite)
    return x, (finite.size - np.searchsorted(finite, x, side="left")) / max(finite.size, 1)


def _point_order(values: pd.DataFrame) -> list[tuple[str, float, str]]:
    keys = values[["sweep", "epsilon", "point"]].drop_duplicates()
    order = {s: i for i, s in enumerate(dict.fromkeys(values["sweep"]))}
    return sorted(keys.itertuples(index=False), key=lambda k: (order[k.sweep], k.epsilon))


def ccdf(values: pd.DataFrame, thresholds: dict[str, list[float]], path: Path) -> Path:
    """Complementary CDF of per-record TPR (left) and AUC (right), one line per (sweep, budget), log y;
    dashed: with membership permuted (chance; all permutations pooled, i.e. their mean complementary CDF),
    dotted verticals: ``thresholds`` by criterion.

    ``values``: rows of :func:`record_values` (the baseline reference only at ε = ∞).
    """
    points = _point_order(values)
    sweeps = list(dict.fromkeys(values["sweep"]))
    colours = {p: plt.cm.viridis(i / max(1, len(points) - 1)) for i, p in enumerate(points)}
    fpr = "/".join(fmt_percent(f) for f in sorted(set(values["fpr"])))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    floor = 1.0
    for ax, column, xlabel in ((axes[0], "tpr", f"per-record TPR at {fpr} FPR"), (axes[1], "auc", "per-record AUC")):
        for p in points:
            here = values[(values["sweep"] == p.sweep) & (values["epsilon"] == p.epsilon)]
            observed = here[here["membership"] == "observed"][column].to_numpy(float)
            permuted = here[here["membership"] == "permuted"][column].to_numpy(float)  # every permutation pooled
            name = f"{p.sweep}: ε = {p.point}" if len(sweeps) > 1 else f"ε = {p.point}"
            style = series_style(sweeps.index(p.sweep))
            x, share = complementary_cdf(observed)
            if x.size:
                ax.plot(x, share, drawstyle="steps-pre", color=colours[p], linestyle=style["linestyle"],
                        linewidth=1.6, label=plain_text(name))
                floor = min(floor, share[-1])
            x, share = complementary_cdf(permuted)
            if x.size:
                floor = min(floor, share[-1])
                ax.plot(x, share, drawstyle="steps-pre", color=colours[p], linestyle="--", linewidth=0.9, alpha=0.6,
                        label="chance (membership permuted)" if p == points[-1] else None)
        for t in thresholds.get(column, []):
            ax.axvline(t, color="0.4", linestyle=":", linewidth=1)
        ax.set_yscale("log")
        ax.set_xlim(0, 1.0)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("share of training images with risk ≥ x (log)")
        ax.grid(True, which="major", alpha=0.3)
        legend(ax, loc="lower left")
    for ax in axes:
        ax.set_ylim(floor / 2, 1.5)
    axes[0].set_title("Per-record TPR of the Gaussian test")
    axes[1].set_title("Per-record AUC")
    return save(fig, path)

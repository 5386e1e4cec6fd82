"""The budget report: Markdown and a self-contained HTML page built from a sweep's run records.

Every number comes from the run records (benchmark/store.py); every string that comes from data
or configuration is HTML-escaped. Figures are PNG files in ``figures/`` (linked from Markdown)
and embedded as data URIs in the HTML, so the HTML is one file that can be mailed or archived.
"""

from __future__ import annotations

import base64
import html
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from . import store  # noqa: E402
from .errors import ConfigError  # noqa: E402

log = logging.getLogger("medprivbench")


# ----------------------------------------------------------------------------- ε axis
def epsilon_positions(eps: np.ndarray | pd.Series, finite_max: float | None = None) -> np.ndarray:
    """x positions on a log10 ε axis; ∞ (non-private) is placed apart, right of the largest finite ε."""
    eps = np.asarray(eps, dtype=float)
    finite = eps[np.isfinite(eps)]
    top = math.log10(finite_max if finite_max is not None else (finite.max() if len(finite) else 1.0))
    return np.where(np.isfinite(eps), np.log10(np.where(np.isfinite(eps), eps, 1.0)), top + max(1.0, 0.15 * (top + 1)))


def style_epsilon_axis(ax, eps_values) -> None:
    eps_values = np.unique(np.asarray(eps_values, dtype=float))
    pos = epsilon_positions(eps_values)
    labels = [("∞\n(non-private)" if math.isinf(e) else store.format_epsilon(e)) for e in eps_values]
    ax.set_xticks(pos)
    ax.set_xticklabels(labels)
    finite = pos[np.isfinite(eps_values)]
    if len(finite) and np.isinf(eps_values).any():
        gap = (finite.max() + pos[np.isinf(eps_values)][0]) / 2
        ax.axvline(gap, color="0.6", linestyle=":", linewidth=1)
    ax.set_xlabel("privacy budget ε (log scale)")
    ax.grid(True, alpha=0.3)


# ----------------------------------------------------------------------------- data
@dataclass
class Sweep:
    folder: Path
    table: pd.DataFrame
    records: list[dict] = field(default_factory=list)

    @property
    def label(self) -> str:
        return self.folder.name


def load_sweep(folder: Path) -> Sweep:
    folder = Path(folder)
    records = [rec for _, rec in store.iter_complete_runs(folder)]
    return Sweep(folder=folder, table=store.aggregate(folder), records=records)


def by_budget(df: pd.DataFrame, column: str) -> pd.DataFrame:
    """Mean, spread (std over seeds, 0 for one seed) and count of ``column`` per ε."""
    g = df.groupby("epsilon")[column]
    out = pd.DataFrame({"mean": g.mean(), "std": g.std(ddof=1).fillna(0.0), "n": g.count()})
    return out.sort_index()


# ----------------------------------------------------------------------------- figures
def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def fig_utility(sweeps: list[Sweep], path: Path) -> Path:
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    all_eps = np.concatenate([s.table["epsilon"].to_numpy(float) for s in sweeps])
    for ax, metric, title in ((axes[0], "test_accuracy", "test accuracy"), (axes[1], "test_auroc", "test AUROC")):
        for s in sweeps:
            stats = by_budget(s.table, metric)
            x = epsilon_positions(stats.index.to_numpy(float), finite_max=np.nanmax(np.where(np.isfinite(all_eps), all_eps, np.nan)) if np.isfinite(all_eps).any() else None)
            ax.errorbar(x, stats["mean"], yerr=stats["std"], marker="o", capsize=3, label=s.label)
        style_epsilon_axis(ax, all_eps)
        ax.set_ylabel(title)
        ax.set_title(f"{title} vs privacy budget")
    axes[1].legend(fontsize=8)
    return _save(fig, path)


# ----------------------------------------------------------------------------- tables
def _fmt(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, (float, np.floating)):
        if math.isinf(value):
            return "∞"
        if value != 0 and (abs(value) >= 1e4 or abs(value) < 1e-3):
            return f"{value:.3g}"
        return f"{value:.{digits}f}"
    return str(value)


def _eps_label(e: float) -> str:
    return "∞ (non-private)" if math.isinf(e) else store.format_epsilon(e)


UTILITY_COLUMNS = [
    ("ε target", "epsilon"),
    ("ε spent", "epsilon_spent"),
    ("σ", "sigma"),
    ("q", "sample_rate"),
    ("steps", "steps"),
    ("test accuracy", "test_accuracy"),
    ("test AUROC", "test_auroc"),
    ("train accuracy", "train_accuracy"),
    ("gap", "generalization_gap"),
    ("train time (s)", "train_wall_s"),
]


def utility_table(df: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """Header and rows: one row per budget, mean ± spread over seeds where there are several."""
    header = [h for h, _ in UTILITY_COLUMNS] + ["runs"]
    rows = []
    for eps, group in df.groupby("epsilon", sort=True):
        row = []
        for _, col in UTILITY_COLUMNS:
            if col == "epsilon":
                row.append(_eps_label(eps))
                continue
            vals = group[col].astype(float)
            if len(vals) > 1 and vals.std(ddof=1) > 0:
                row.append(f"{_fmt(vals.mean())} ± {_fmt(vals.std(ddof=1))}")
            else:
                row.append(_fmt(vals.iloc[0], 0 if col == "steps" else 3))
        row.append(str(len(group)))
        rows.append(row)
    return header, rows


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def html_table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


# ----------------------------------------------------------------------------- document
class Document:
    """Accumulates a report as Markdown and HTML in parallel."""

    def __init__(self, title: str, out_dir: Path):
        self.title = title
        self.out_dir = out_dir
        self.md: list[str] = [f"# {title}", ""]
        self.html: list[str] = []

    def heading(self, text: str, level: int = 2) -> None:
        self.md += [f"{'#' * level} {text}", ""]
        self.html.append(f"<h{level}>{html.escape(text)}</h{level}>")

    def paragraph(self, text: str) -> None:
        self.md += [text, ""]
        self.html.append(f"<p>{html.escape(text)}</p>")

    def table(self, header, rows) -> None:
        self.md += [markdown_table(header, rows), ""]
        self.html.append(html_table(header, rows))

    def figure(self, path: Path, caption: str) -> None:
        rel = path.relative_to(self.out_dir).as_posix()
        self.md += [f"![{caption}]({rel})", "", f"*{caption}*", ""]
        data = base64.b64encode(path.read_bytes()).decode()
        self.html.append(
            f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(caption)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        )

    def write(self) -> list[Path]:
        md_path, html_path = self.out_dir / "report.md", self.out_dir / "report.html"
        store.atomic_write_text(md_path, "\n".join(self.md).rstrip() + "\n")
        page = (
            "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            f"<title>{html.escape(self.title)}</title><style>{CSS}</style></head><body>"
            f"<h1>{html.escape(self.title)}</h1>" + "\n".join(self.html) + "</body></html>"
        )
        store.atomic_write_text(html_path, page)
        return [html_path, md_path]


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:0.9em}th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}figure{margin:1.5em 0}img{max-width:100%}
figcaption{font-size:0.85em;color:#555}.note{background:#fff8e1;padding:0.6em;border-left:4px solid #f0c000}
"""


def build_report(folders: list[Path], out_dir: Path | None = None, show_reconstructions: bool = False) -> list[Path]:
    """Write report.html and report.md for one sweep folder (in place) or several (a comparison)."""
    sweeps = [load_sweep(Path(f)) for f in folders]
    empty = [str(s.folder) for s in sweeps if s.table.empty]
    if empty:
        raise ConfigError(f"no complete runs in {', '.join(empty)}; run a sweep there first")
    if out_dir is None:
        out_dir = sweeps[0].folder if len(sweeps) == 1 else Path("report-comparison")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fig_dir = out_dir / "figures"
    title = (
        f"medprivbench budget report: {sweeps[0].label}" if len(sweeps) == 1
        else "medprivbench budget comparison: " + " vs ".join(s.label for s in sweeps)
    )
    doc = Document(title, out_dir)
    doc.paragraph(f"Generated {time.strftime('%Y-%m-%d %H:%M:%S')} from {', '.join(str(s.folder) for s in sweeps)}.")

    doc.heading("Utility at each privacy budget")
    for s in sweeps:
        if len(sweeps) > 1:
            doc.heading(s.label, 3)
        doc.table(*utility_table(s.table))
    doc.figure(fig_utility(sweeps, fig_dir / "utility_vs_epsilon.png"),
               "Test accuracy and AUROC against ε (log axis); the non-private run (ε = ∞) is shown apart on the right. "
               "Error bars: standard deviation over seeds.")
    doc.heading("Run metadata")
    for s in sweeps:
        rec = s.records[0]
        ds, env = rec["dataset"], rec["environment"]
        doc.paragraph(
            f"{s.label}: dataset {ds['name']} ({ds['n_train']} train / {ds['n_test']} test images, "
            f"{ds['n_channels']}×{'×'.join(map(str, ds['image_size']))}, classes {', '.join(ds['class_names'])}; "
            f"licence {ds['licence']}; duplicates dropped {ds['duplicates_dropped']}), model {rec['model']['name']} "
            f"({rec['model']['parameters']:,} parameters), seeds {sorted(set(s.table['seed']))}, "
            f"torch {env['torch']}, opacus {env['opacus']}, monai {env['monai']}, device {env['device']}."
        )
    return doc.write()

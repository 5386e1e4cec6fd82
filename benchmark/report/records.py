"""The run records of a sweep, read once, and the tidy frames that the tables and figures draw from.

A run record (schema 3, benchmark/experiment.py) holds each attack's result under
``record["attacks"][name]``, ``name`` a registry name (benchmark/registry.py), and the sweep
table's row under ``record["summary"]`` (benchmark/summary.py computes it once, and ``table.csv``
holds it). A :class:`Run` gives its attacks' results typed (their family's result classes,
benchmark/families), grouped by family; the report reads numbers from the summary wherever it
has them:

* :func:`run_frame`: one row per run, the summary's own columns under their own names;
* each family's ``frame``: one row per run and attack with what the summary does not hold
  (intervals, ROC curves, shares per criterion, the attack's setting);
* :func:`sample_risk` and :func:`class_frame`: per-image and per-class membership risk from the
  per-sample scores a run saved.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from medprivbench.attacks.mia_metrics import per_sample_auc

from .. import registry, store, tasks
from ..chance import threat_columns
from ..config import REFERENCES, SAME_RECIPE
from ..errors import ConfigError
from ..families import AttackResult, ordered
from ..numbers import format_epsilon

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SCORES_FILE = "membership_scores.parquet"  # per-sample membership scores (benchmark/membership_run.py)
# The summary columns the headline table, the sentences and the ε figures read; NaN in the run
# frame where no run has them (a sweep without that attack); each family adds its own
# (``Family.summary_columns``).
SUMMARY_COLUMNS = ("epsilon_spent", "sigma", "test_accuracy", "test_auroc", "test_dice", "test_iou", "epsilon_lb_max")


def task_of(runs: pd.DataFrame) -> tasks.Task:
    """What the sweep's runs learn (their ``task`` column; classification for tables without one):
    it names the utility metrics the report sets against ε."""
    names = runs["task"].dropna().unique() if "task" in runs else []
    return tasks.get(str(names[0])) if len(names) else tasks.CLASSIFICATION


class Point(NamedTuple):
    """One row of the budget comparison: a DP budget ε (``reference`` empty), or a non-private
    reference at ε = ∞ (``same_recipe``: the DP recipe without clipping and noise; ``tuned``)."""

    epsilon: float
    reference: str = ""

    @property
    def order(self) -> tuple[float, int]:
        return self.epsilon, REFERENCES.index(self.reference) if self.reference in REFERENCES else -1

    @property
    def label(self) -> str:
        """'8', '∞ (non-private)' for an unlabelled ε = ∞ run, '∞ (same recipe)', '∞ (tuned recipe)'."""
        if not self.reference:
            return "∞ (non-private)" if math.isinf(self.epsilon) else format_epsilon(self.epsilon)
        return f"∞ ({reference_label(self.reference)})"


def reference_label(reference: str) -> str:
    return {"same_recipe": "same recipe", "tuned": "tuned recipe"}.get(reference, reference.replace("_", " "))


def point_rows(runs: pd.DataFrame, point: Point) -> pd.DataFrame:
    """The rows of a run frame at one point."""
    return runs[(runs["epsilon"] == point.epsilon) & (runs["reference"] == point.reference)]


def baseline_of(references: set[str]) -> str | None:
    """Of the non-private references a sweep has, the one every Δ is computed against:
    ``same_recipe`` where there is one, else the other (``tuned``, or '' for an unlabelled ε = ∞
    run recorded before references existed); None without any."""
    if not references:
        return None
    return SAME_RECIPE if SAME_RECIPE in references else min(references)


def baseline_reference(runs: pd.DataFrame) -> str | None:
    """:func:`baseline_of` the non-private rows of a run frame."""
    return baseline_of(set(runs.loc[np.isinf(runs["epsilon"]), "reference"]))


def baseline_only(frame: pd.DataFrame) -> pd.DataFrame:
    """The DP rows and the baseline reference's rows of a frame (figures draw one series at ε = ∞)."""
    if frame.empty or "reference" not in frame:
        return frame
    parts = []
    for sweep in frame["sweep"].unique():  # each sweep against its own baseline
        part = frame[frame["sweep"] == sweep]
        baseline = baseline_reference(part)
        parts.append(part[(part["reference"] == "") | (part["reference"] == (baseline or ""))])
    return pd.concat(parts, ignore_index=True)


# ============================================================================= records
@dataclass(frozen=True)
class Run:
    """One complete run folder and its record (benchmark/experiment.py)."""

    folder: Path
    record: dict

    @property
    def summary(self) -> dict:
        return self.record["summary"]

    @property
    def epsilon(self) -> float:
        return float(self.summary["epsilon"])

    @property
    def seed(self) -> int:
        return int(self.record["seed"])

    @property
    def reference(self) -> str:
        """Which non-private reference the run is ('' for a DP run, and for ε = ∞ runs recorded
        before references existed)."""
        return str(self.summary.get("reference") or "")

    @property
    def point(self) -> Point:
        return Point(self.epsilon, self.reference)

    @property
    def attacks(self) -> dict[str, AttackResult]:
        """Every attack's typed result, by registry name, in run order (read from the record each time)."""
        return registry.read_results(self.record.get("attacks") or {})

    def results(self, family: str) -> dict[str, AttackResult]:
        """The results of one attack family (its key, benchmark/families), by attack name, in run order."""
        return {name: result for name, result in self.attacks.items() if registry.ATTACKS[name].family.key == family}

    def protocol(self, name: str) -> dict:
        """What a protocol shared by several attacks recorded (``membership``: the pool of models), or {}."""
        return (self.record.get("protocols") or {}).get(name) or {}

    @property
    def completed_at(self) -> float | None:
        try:
            return float(json.loads((self.folder / store.MANIFEST).read_text())["completed_at"])
        except (OSError, ValueError, KeyError, TypeError):
            return None


@dataclass
class Sweep:
    folder: Path
    label: str
    runs: list[Run]

    @property
    def budgets(self) -> list[float]:
        return sorted({r.epsilon for r in self.runs})

    def at(self, eps: float) -> list[Run]:
        """The runs at ε; at ε = ∞ those of the baseline reference (same_recipe where there is one)."""
        runs = [r for r in self.runs if r.epsilon == eps]
        if math.isinf(eps):
            baseline = baseline_of({r.reference for r in runs})
            runs = [r for r in runs if r.reference == baseline]
        return sorted(runs, key=lambda r: r.seed)

    @property
    def points(self) -> list[Point]:
        """Every budget and non-private reference of the sweep, in order (DP budgets by ε, then the references)."""
        return sorted({r.point for r in self.runs}, key=lambda p: p.order)

    def at_point(self, point: Point) -> list[Run]:
        return sorted((r for r in self.runs if r.point == point), key=lambda r: r.seed)

    @property
    def real_patient_data(self) -> bool:
        """True unless every run's dataset says it holds no real patient data (unknown counts as real)."""
        return any(r.record["dataset"].get("real_patient_data", True) for r in self.runs)

    @property
    def attacked(self) -> bool:
        """Whether any attack ran in the sweep (a sweep with attack=[] measures utility only)."""
        return any(r.attacks for r in self.runs)

    def attacks_of(self, family: str) -> list[registry.Attack]:
        """The attacks of one family (its key) that ran in some run of the sweep, in run order."""
        ran = {name for r in self.runs for name in r.results(family)}
        return [spec for name, spec in registry.load().items() if name in ran]


def load_sweeps(folders: list[Path]) -> list[Sweep]:
    """The complete runs of each folder; a folder without any, or a run naming an unregistered attack, is an error."""
    folders = [Path(f) for f in folders]
    labels = _unique_labels(folders)
    registry.load()
    sweeps = []
    for folder, label in zip(folders, labels):
        runs = [Run(run_dir, record) for run_dir, record in store.iter_complete_runs(folder)]
        for run in runs:
            unknown = sorted(set(run.record.get("attacks") or {}) - set(registry.ATTACKS))
            if unknown:
                raise ConfigError(f"{run.folder} records attack {unknown[0]!r}, which is not registered; "
                                  f"registered attacks: {', '.join(registry.ATTACKS)}")
        sweeps.append(Sweep(folder, label, sorted(runs, key=lambda r: (r.epsilon, r.seed))))
    empty = [str(s.folder) for s in sweeps if not s.runs]
    if empty:
        raise ConfigError(f"no complete runs in {', '.join(empty)}; run a sweep there first")
    return sweeps


def _unique_labels(folders: list[Path]) -> list[str]:
    """Folder names, with their parent prepended where two sweeps share a name (and a number if still equal)."""
    names = [f.resolve().name for f in folders]
    labels = [f"{f.resolve().parent.name}/{n}" if names.count(n) > 1 else n for f, n in zip(folders, names)]
    return [f"{label} ({labels[:i].count(label) + 1})" if labels.count(label) > 1 else label
            for i, label in enumerate(labels)]


def run_file(run: Run, relative: str | None, signature: bytes) -> Path | None:
    """A file a run's result names (a path that comes from data), only if it lies inside the run
    folder and starts with ``signature`` (the file type's magic bytes); None otherwise."""
    if not relative:
        return None
    folder = run.folder.resolve()
    path = (folder / str(relative)).resolve()
    if not path.is_relative_to(folder) or not path.is_file():
        return None
    with open(path, "rb") as f:
        return path if f.read(len(signature)) == signature else None


def grid_file(run: Run, attack: dict) -> Path | None:
    """A reconstruction attack's grid PNG, only if it lies inside the run folder and is a PNG."""
    return run_file(run, attack.get("grid"), PNG_SIGNATURE)


# ============================================================================= tidy frames
def _numbers(summary: dict) -> dict[str, float]:
    """The numeric columns of a summary as floats (a missing value, null in JSON, as NaN); text is left out."""
    return {k: math.nan if v is None else float(v) for k, v in summary.items()
            if v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))}


def _verdicts(run: Run) -> dict:
    """The verdict columns of a run's summary (a verdict per threat model and the result that decided
    it, the worst-case audit's bound and tightness); computed from the record's attack results for
    runs recorded before the summary held them."""
    found = {k: v for k, v in run.summary.items() if k.startswith("verdict_") and isinstance(v, str)}
    if found:
        return found
    return threat_columns(run.attacks, float(run.summary["epsilon_spent"]))


def run_frame(sweep: Sweep) -> pd.DataFrame:
    """One row per run: sweep, ε, seed, task and every numeric column of its summary, under the table's names.

    :data:`SUMMARY_COLUMNS` are always present (NaN where no run has them).
    """
    frame = pd.DataFrame([{**_numbers(r.summary), **_verdicts(r), "sweep": sweep.label, "epsilon": r.epsilon,
                           "reference": r.reference, "seed": r.seed,
                           "task": r.record.get("utility", {}).get("task", "classification")} for r in sweep.runs])
    wanted = dict.fromkeys([*SUMMARY_COLUMNS, *(c for family in ordered() for c in family.summary_columns)])
    return frame.reindex(columns=[*frame.columns, *(c for c in wanted if c not in frame)])


def strongest_attack(attacks: pd.DataFrame) -> str | None:
    """The membership variant with the highest mean AUC over the sweep's runs."""
    return None if attacks.empty else str(attacks.groupby("key")["auc"].mean().idxmax())


def sample_risk(sweep: Sweep, key: str) -> pd.DataFrame:
    """Per-sample AUC of membership variant ``key`` for every run that saved its scores (one row per run and image)."""
    parts = []
    for r in sweep.runs:
        path = r.folder / SCORES_FILE
        if not path.is_file():
            continue
        scores = pd.read_parquet(path)
        if f"score_{key}" not in scores:
            continue
        part = per_sample_auc(scores, f"score_{key}")
        if "group" in scores:  # the dataset's subgroup of each image (e.g. the synthetic data's rare findings)
            part["group"] = part["sample"].map(scores.drop_duplicates("sample").set_index("sample")["group"])
        names = r.record["dataset"]["class_names"]
        if r.record["utility"].get("task") == "segmentation":  # an image has a mask, not one class
            part["class_name"] = "(mask)"
        else:
            part["class_name"] = [names[int(i)] if 0 <= int(i) < len(names) else str(i) for i in part["label"]]
        parts.append(part.assign(sweep=sweep.label, epsilon=r.epsilon, reference=r.reference, point=r.point.label,
                                 seed=r.seed))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def class_frame(sweep: Sweep, risk: pd.DataFrame) -> pd.DataFrame:
    """One row per (run, class): test accuracy of the class and its membership risk: the mean
    per-sample AUC over the pool, or for an audited model (one target, no pool) its strongest
    attack's AUC among the class's candidates, as the audit recorded it (benchmark/audit_record.py)."""
    rows = []
    for r in sweep.runs:
        mine = (risk[(risk["epsilon"] == r.epsilon) & (risk["reference"] == r.reference) & (risk["seed"] == r.seed)]
                if len(risk) else risk)
        mean_risk = mine.groupby("class_name")["auc"].mean() if len(mine) else pd.Series(dtype=float)
        audited = ((r.record.get("audit") or {}).get("per_class_risk") or {}).get("auc")
        if mean_risk.empty and audited:
            mean_risk = pd.Series(audited, dtype=float)
        for name, accuracy in r.record["utility"].get("test_per_class_accuracy", {}).items():
            rows.append({"sweep": sweep.label, "epsilon": r.epsilon, "reference": r.reference, "point": r.point.label,
                         "seed": r.seed, "class_name": name,
                         "accuracy": float(accuracy), "risk": float(mean_risk.get(name, math.nan))})
    return pd.DataFrame(rows)

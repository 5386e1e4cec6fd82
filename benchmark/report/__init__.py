"""The budget report: at each privacy budget ε, what accuracy do we keep and what can an attacker still do?

Built from the run records of one sweep folder (or several, side by side) without rerunning
anything (:func:`build_report`). Writes ``report.html`` (one self-contained file: figures
embedded as data URIs, a Content-Security-Policy that forbids any outside resource) and
``report.md`` (figures linked from ``figures/``).

Rules the code keeps:

* Every number comes from the run records (benchmark/store.py): the sweep table's columns
  (``record["summary"]``, benchmark/summary.py) are read, never recomputed; what the summary does
  not hold (intervals, curves, settings) is read from the attacks' typed results.
* The report loops over the attack registry (benchmark/registry.py) and the attack families
  (benchmark/families): each family gives its headline columns, its frame, its setting text and
  its own section, so a new attack or a new family needs no edit here.
* Every sentence of the summary is chosen by a test on those numbers (verdicts.py).
* Every string that comes from data, configuration or the file system is escaped (HTML, and the
  Markdown that could carry HTML or links; document.py).
* Reconstructed images of real patient data are patient data: they are shown only when the user
  opts in (``show_reconstructions``), and the report says when they were withheld.

Modules, one concept each:

* records.py: the runs of a sweep (:class:`Run`, :class:`Sweep`, :func:`load_sweeps`) and the run frame;
* verdicts.py: one verdict per threat model and point of the sweep (the chance rules are the
  families', benchmark/chance.py), their evidence, the summary sentences and the consistency check of
  empirical against accountant ε;
* tables.py and columns.py: the headline (verdicts, utility, attack numbers), comparison, ReRo
  bound, per-class and per-image tables;
* sections.py: the sections in order (:func:`sections`); metadata.py: the run metadata table;
* figures.py and attack_figures.py: the figures; document.py: the Markdown/HTML writer with its
  escaping, CSS and Content-Security-Policy;
* formatting.py: numbers, intervals and budgets as text; build.py: :func:`build_report`.
"""

from __future__ import annotations

from .build import FIGURE_LIST, build_report, report_options
from .document import CSP, CSS, Document, md_escape, safe_file_part
from .formatting import cell, epsilon_label, fmt, fmt_ci, fmt_percent, fmt_signed
from .metadata import MetaField, metadata_fields
from .records import (
    Point, Run, Sweep, class_frame, grid_file, load_sweeps, run_frame, sample_risk, strongest_attack,
)
from .sections import Context, sections
from .tables import TOP_VULNERABLE, attack_table, headline_table, utility_table, verdict_table
from .verdicts import (
    CHANCE_RULE_TEXT, UNIT_OF_PRIVACY_TEXT, Finding, Verdict, chance_evidence, chance_tests,
    evidence_by_point, point_verdict, summary_sentences,
)

__all__ = [
    "CHANCE_RULE_TEXT", "CSP", "CSS", "FIGURE_LIST", "TOP_VULNERABLE", "UNIT_OF_PRIVACY_TEXT", "Context", "Document", "Finding", "MetaField", "Point", "Run", "Sweep", "Verdict", "attack_table",
    "build_report", "cell", "chance_evidence", "chance_tests", "class_frame", "epsilon_label", "evidence_by_point",
    "point_verdict", "utility_table", "verdict_table", "fmt", "fmt_ci", "fmt_percent", "fmt_signed",
    "grid_file", "headline_table", "load_sweeps", "md_escape", "metadata_fields", "report_options", "run_frame", "safe_file_part", "sample_risk", "sections", "strongest_attack",
    "summary_sentences",
]

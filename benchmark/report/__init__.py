"""The budget report: at each privacy budget ε, what accuracy do we keep and what can an attacker still do?

Built from the run records of one sweep folder (or several, side by side) without rerunning
anything (:func:`build_report`). Writes ``report.html`` (one self-contained file: figures
embedded as data URIs, a Content-Security-Policy that forbids any outside resource) and
``report.md`` (figures linked from ``figures/``).

Rules the code keeps:

* Every number comes from the run records (benchmark/store.py): the sweep table's columns
  (``record["summary"]``, benchmark/record.py) are read, never recomputed; what the summary does
  not hold (intervals, curves, settings) is read from the attacks' results.
* The report loops over the attack registry (benchmark/registry.py): attacks are grouped by
  family, labelled by their entry, and a new attack of a known family needs no edit here.
* Every sentence of the summary is chosen by a test on those numbers (verdicts.py).
* Every string that comes from data, configuration or the file system is escaped (HTML, and the
  Markdown that could carry HTML or links; document.py).
* Reconstructed images of real patient data are patient data: they are shown only when the user
  opts in (``show_reconstructions``), and the report says when they were withheld.

Modules, one concept each:

* records.py: the runs of a sweep (:class:`Run`, :class:`Sweep`, :func:`load_sweeps`) and the tidy frames;
* verdicts.py: one verdict per threat model and point of the sweep (the chance rules are the
  engine's, benchmark/chance.py), their evidence, the summary sentences and the consistency check of
  empirical against accountant ε;
* tables.py: the headline (verdicts, utility, attack numbers), membership, comparison,
  reconstruction, per-class and per-image tables;
* sections.py: the sections in order (:data:`SECTIONS`); metadata.py: the run metadata table;
* document.py: the Markdown/HTML writer with its escaping, CSS and Content-Security-Policy;
* formatting.py: numbers, intervals and budgets as text; build.py: :func:`build_report`.
"""

from __future__ import annotations

from .build import FIGURE_LIST, build_report, report_options
from .document import CSP, CSS, Document, md_escape, safe_file_part
from .formatting import cell, epsilon_label, fmt, fmt_ci, fmt_percent, fmt_signed
from .metadata import MetaField, metadata_fields
from .records import (
    Point, Run, Sweep, class_frame, grid_file, load_sweeps, membership_frame, reconstruction_frame, run_frame, sample_risk,
    strongest_attack,
)
from .sections import SECTIONS, Context
from .tables import TOP_VULNERABLE, attack_table, headline_table, utility_table, verdict_table
from .verdicts import (
    CHANCE_RULE_TEXT, CHANCE_RULES, UNIT_OF_PRIVACY_TEXT, ChanceRule, Finding, Verdict, chance_evidence, chance_tests,
    evidence_by_point, point_verdict, summary_sentences,
)

__all__ = [
    "CHANCE_RULES", "CHANCE_RULE_TEXT", "CSP", "CSS", "FIGURE_LIST", "SECTIONS", "TOP_VULNERABLE", "UNIT_OF_PRIVACY_TEXT",
    "ChanceRule", "Context", "Document", "Finding", "MetaField", "Point", "Run", "Sweep", "Verdict", "attack_table",
    "build_report", "cell", "chance_evidence", "chance_tests", "class_frame", "epsilon_label", "evidence_by_point",
    "point_verdict", "utility_table", "verdict_table", "fmt", "fmt_ci", "fmt_percent", "fmt_signed",
    "grid_file", "headline_table", "load_sweeps", "md_escape", "membership_frame", "metadata_fields",
    "reconstruction_frame", "report_options", "run_frame", "safe_file_part", "sample_risk", "strongest_attack",
    "summary_sentences",
]

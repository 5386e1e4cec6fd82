"""What an attack family is: the one place that says how its results are judged, tabled and reported.

An attack (benchmark/registry.py) belongs to one :class:`Family`. The attack's ``run`` returns a
small typed result (:class:`AttackResult`, one class per kind of result) that stays structured
from the attack to the run record: the record's JSON is its :meth:`~AttackResult.to_record`, the
report reads it back with :meth:`~AttackResult.from_record`, and nothing downstream parses a
column name to recover what a result holds. The family holds everything that is the same for
its attacks:

* the sweep table: each result's columns (:meth:`AttackResult.columns`), the bests over the
  family's attacks (:meth:`Family.bests`) and every ε lower bound it computes (:meth:`Family.bounds`);
* its chance rule (:meth:`Family.findings`, :meth:`Family.intervals`, :meth:`Family.strongest`),
  from which benchmark/chance.py gives one verdict per threat model;
* the report: its headline columns, its tidy frame, its setting text in the metadata table and its
  own section (:meth:`Family.section`), each read by the report's generic code.

A new family is one module: a :class:`Family` subclass decorated with :func:`register_family`
(its ``rank`` places its columns, its attacks' run order and its report section among the others)
and its result classes.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar



@dataclass(frozen=True)
class Finding:
    """One attack result that beats chance: which attack, the numbers that show it, and a short form."""

    attack: str
    text: str
    short: str


@dataclass(frozen=True, kw_only=True)
class Structured:
    """A typed part of a run record. The named fields are what the engine and the report read;
    ``details`` keeps the rest of what the attack recorded (per-image scores, timings, its
    configuration), so that a record read back and written again loses nothing."""

    details: dict = field(default_factory=dict)

    # fields holding nested typed values: name -> a function from the record form to the typed value
    NESTED: ClassVar[dict[str, Any]] = {}

    def to_record(self) -> dict:
        out = dict(self.details)
        for f in fields(self):
            if f.name != "details":
                out[f.name] = _plain(getattr(self, f.name))
        return out

    @classmethod
    def from_record(cls, data):
        """The typed value of a record's JSON form (a typed value is returned as it is)."""
        if isinstance(data, Structured):
            return data
        names = {f.name for f in fields(cls)} - {"details"}
        known = {k: (cls.NESTED[k](v) if k in cls.NESTED else v) for k, v in data.items() if k in names}
        return cls(**known, details={k: v for k, v in data.items() if k not in names})

    def get(self, key: str, default: Any = None) -> Any:
        """A named field or a recorded detail (for code that reads optional parts of older records)."""
        if key in {f.name for f in fields(self)} - {"details"}:
            return getattr(self, key)
        return self.details.get(key, default)


@dataclass(frozen=True, kw_only=True)
class AttackResult(Structured):
    """What one attack's ``run`` returns: its threat model in words, and the fields of its kind."""

    threat_model: str = ""

    def columns(self, name: str) -> dict:
        """The sweep table's columns of this result of attack ``name``."""
        return {}


def _plain(value: Any) -> Any:
    if isinstance(value, Structured):
        return value.to_record()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def label_of(key: str) -> str:
    """The report label of an attack or of one of its variants (the registry's, read when needed:
    the registry imports the families)."""
    from .. import registry

    return registry.label(key)


def typed_dict(kind: type[Structured]):
    """NESTED converter of a ``{key: record form}`` field into ``{key: kind}``."""
    return lambda value: {k: kind.from_record(v) for k, v in value.items()}


class Family:
    """An attack family (see the module docstring). Subclasses override what applies to them."""

    key: ClassVar[str]
    title: ClassVar[str]  # the report section's heading
    rank: ClassVar[int] = 100  # position among the families: columns, run order, report section
    result: ClassVar[type[AttackResult]] = AttackResult
    # run-frame columns the report reads for this family, NaN where no run has them
    summary_columns: ClassVar[tuple[str, ...]] = ()

    # ------------------------------------------------------------------ the sweep table
    def read(self, data: "dict | AttackResult") -> AttackResult:
        return self.result.from_record(data)

    def bests(self, results: dict[str, AttackResult]) -> dict:
        """Columns that take the best over the family's attacks of one run."""
        return {}

    def bounds(self, name: str, result: AttackResult) -> list[float]:
        """Every ε lower bound the result holds (the run's largest, ``epsilon_lb_max``, is over all families)."""
        return []

    # ------------------------------------------------------------------ the chance rule
    def findings(self, label: str, result: AttackResult) -> Iterator[Finding]:
        """The result's findings past chance; ``label`` is the attack's report label."""
        return iter(())

    def intervals(self, result: AttackResult) -> int:
        """How many intervals and tests the rule looks at in one result (each one a chance of a false alarm)."""
        return 0

    def strongest(self, label: str, result: AttackResult) -> tuple[float, str]:
        """The result's best value and its text, shown when no attack of a threat model beat chance."""
        return math.nan, f"{label}: no result"

    # ------------------------------------------------------------------ the report
    def setting(self, result: AttackResult) -> str | None:
        """The attack's own setting for the metadata table (None: no row)."""
        return None

    def headline_columns(self, sweep, runs) -> list:
        """The family's columns in the report's attack table (report/columns.py ``Column`` objects)."""
        return []

    def frame(self, sweep):
        """A tidy frame of the family's results in one sweep, for its section (None: the family has none)."""
        return None

    def section(self, ctx) -> None:
        """The family's report section (report/sections.py ``Context``); nothing by default."""
        return None

    def warnings(self, sweep) -> list[str]:
        """Sentences for the report's summary when a result breaks a bound it must respect."""
        return []

    def variant_keys(self, name: str, result: AttackResult) -> list[str]:
        """The keys under which the result's parts are labelled (a membership attack's variants)."""
        return [name]


FAMILIES: dict[str, Family] = {}


def register_family(cls: type[Family]) -> type[Family]:
    """Class decorator: register one instance of a :class:`Family` subclass under its ``key``."""
    if not getattr(cls, "key", "") or not getattr(cls, "title", ""):
        raise ValueError(f"family {cls.__name__} needs a key and a title")
    if cls.key in FAMILIES and type(FAMILIES[cls.key]) is not cls:
        raise ValueError(f"family {cls.key!r} is already registered")
    FAMILIES[cls.key] = cls()
    return cls


def unregister_family(key: str) -> None:
    FAMILIES.pop(key, None)


def ordered() -> list[Family]:
    """The registered families by rank (then registration)."""
    return sorted(FAMILIES.values(), key=lambda f: f.rank)

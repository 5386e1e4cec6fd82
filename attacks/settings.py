"""Declared constraints for settings dataclasses (scikit-learn's ``_parameter_constraints`` habit).

A setting is a dataclass field whose metadata says what values are valid: a range for numbers, a
list of choices for strings. The attacks' own config dataclasses declare their settings with the
helpers below, and the engine validates every setting from these declarations, once, where the
configuration enters (benchmark/validate.py): one declaration, one validator, one message format.

Plain data only: this module imports nothing from the engine, so attack modules stay pure.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

KEY = "constraint"


@dataclasses.dataclass(frozen=True)
class Constraint:
    """What values a setting may take.

    kind: "int", "float", "bool", "str" or "list" (each element checked against ``choices``).
    low/high: bounds for numbers (None: unbounded), open or closed; floats must be finite unless
    ``allow_inf``; ``nullable``: None (YAML null) is valid too.
    """

    kind: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple | None = None
    allow_inf: bool = False
    nullable: bool = False

    def describe(self) -> str:
        """What would be valid, in words: 'a whole number ≥ 1', 'one of adam, lbfgs', …"""
        if self.choices is not None:
            what = f"{'a list of' if self.kind == 'list' else 'one of'} {', '.join(map(str, self.choices))}"
        elif self.kind == "bool":
            what = "true or false"
        else:
            what = "a whole number" if self.kind == "int" else "a number"
            parts = []
            if self.low is not None:
                parts.append(f"{'>' if self.low_open else '≥'} {self.low:g}")
            if self.high is not None:
                parts.append(f"{'<' if self.high_open else '≤'} {self.high:g}")
            if parts:
                what += " " + " and ".join(parts)
            if self.allow_inf:
                what += " (or inf)"
        return what + (" or null" if self.nullable else "")

    def violation(self, value: Any) -> str | None:
        """None when ``value`` is valid, else what would be valid."""
        if value is None:
            return None if self.nullable else self.describe()
        if self.kind == "list":
            if not isinstance(value, (list, tuple)) or any(v not in self.choices for v in value):
                return self.describe()
            return None
        if self.kind == "bool":
            return None if isinstance(value, bool) else self.describe()
        if self.kind == "str":
            return None if isinstance(value, str) and (self.choices is None or value in self.choices) else self.describe()
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return self.describe()
        if math.isnan(value) or (math.isinf(value) and not self.allow_inf):
            return self.describe()
        if self.kind == "int" and (math.isinf(value) or value != int(value)):
            return self.describe()
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return self.describe()
        if self.high is not None and (value >= self.high if self.high_open else value > self.high):
            return self.describe()
        return None


def _field(default: Any, constraint: Constraint, doc: str) -> Any:
    metadata = {KEY: constraint, "doc": doc}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def integer(default: int | None, low: int | None = None, high: int | None = None, *, nullable: bool = False,
            doc: str = "") -> Any:
    return _field(default, Constraint("int", low, high, nullable=nullable), doc)


def real(default: float | None, low: float | None = None, high: float | None = None, *, low_open: bool = False,
         high_open: bool = False, allow_inf: bool = False, nullable: bool = False, doc: str = "") -> Any:
    return _field(default, Constraint("float", low, high, low_open, high_open, allow_inf=allow_inf, nullable=nullable), doc)


def choice(default: str | None, options: Sequence[str], *, nullable: bool = False, doc: str = "") -> Any:
    return _field(default, Constraint("str", choices=tuple(options), nullable=nullable), doc)


def text(default: str, *, doc: str = "") -> Any:
    return _field(default, Constraint("str"), doc)


def flag(default: bool, *, doc: str = "") -> Any:
    return _field(default, Constraint("bool"), doc)


def choices(default: list, options: Sequence[str], *, nullable: bool = False, doc: str = "") -> Any:
    return _field(default, Constraint("list", choices=tuple(options), nullable=nullable), doc)


def constraint_of(field: dataclasses.Field) -> Constraint | None:
    return field.metadata.get(KEY)


def violations(settings: Any, prefix: str) -> list[str]:
    """One line per invalid setting of a dataclass instance: 'prefix.name=value is not valid; use …'.

    Nested dataclasses are checked too (their prefix extended by the field name).
    """
    out = []
    for f in dataclasses.fields(settings):
        value = getattr(settings, f.name)
        key = f"{prefix}.{f.name}" if prefix else f.name
        if dataclasses.is_dataclass(value):
            out += violations(value, key)
            continue
        constraint = constraint_of(f)
        if constraint is None:
            continue
        problem = constraint.violation(value)
        if problem is not None:
            out.append(f"{key}={_show(value)} is not valid; use {problem}")
    return out


def _show(value: Any) -> str:
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


class Validated:
    """Mixin for settings dataclasses: constructing one checks every declared constraint, then the
    class's own cross-field rules (:meth:`check`); the first problem is a one-line ValueError."""

    def __post_init__(self) -> None:
        problems = violations(self, "")
        if problems:
            raise ValueError(problems[0])
        self.check()

    def check(self) -> None:
        """Rules that involve several settings; raise ValueError naming them."""

"""Numbers, intervals and budgets as the report writes them, in tables and in sentences."""

from __future__ import annotations

import math

import pandas as pd

from ..numbers import fmt, fmt_ci, fmt_percent, format_epsilon  # noqa: F401  (the one formatter, re-exported)


def epsilon_label(eps: float) -> str:
    return "∞ (non-private)" if math.isinf(eps) else format_epsilon(eps)


def fmt_signed(value: float) -> str:
    return "–" if math.isnan(value) else ("+" if value >= 0 else "−") + fmt(abs(value))


def join(values) -> str:
    return ", ".join(str(v) for v in values)


def pairs(mapping: dict | None) -> str:
    """'key value' pairs of a mapping, underscores in the keys read as spaces."""
    return join(f"{str(k).replace('_', ' ')} {v}" for k, v in (mapping or {}).items())


def cell(values: pd.Series) -> str:
    """Mean ± standard deviation over seeds; a single value where all seeds agree (or one seed)."""
    values = values.dropna().astype(float)
    if values.empty:
        return "–"
    if len(values) == 1 or values.nunique() == 1:
        return fmt(values.iloc[0])
    return f"{fmt(values.mean())} ± {fmt(values.std(ddof=1))}"

"""Numbers, intervals and budgets as the report writes them, in tables and in sentences."""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd

from .. import store


def epsilon_label(eps: float) -> str:
    return "∞ (non-private)" if math.isinf(eps) else store.format_epsilon(eps)


def fmt(value, digits: int = 3) -> str:
    """A number for a table or sentence: 3 decimals, or 3 significant digits when very large/small."""
    if value is None or (isinstance(value, (float, np.floating)) and math.isnan(value)):
        return "–"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return f"{value:,}" if abs(value) >= 10_000 else str(value)
    if isinstance(value, (float, np.floating)):
        if math.isinf(value):
            return "∞" if value > 0 else "−∞"
        if value != 0 and (abs(value) >= 1e4 or abs(value) < 1e-3):
            return re.sub(r"e([+-])0*(\d)", lambda m: "e" + ("-" if m[1] == "-" else "") + m[2], f"{value:.3g}")
        return f"{value:.{digits}f}"
    return str(value)


def fmt_signed(value: float) -> str:
    return "–" if math.isnan(value) else ("+" if value >= 0 else "−") + fmt(abs(value))


def fmt_ci(value: float, lo: float, hi: float) -> str:
    return f"{fmt(value)} [{fmt(lo)}, {fmt(hi)}]"


def fmt_percent(level: float) -> str:
    return f"{100 * level:g}%"


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

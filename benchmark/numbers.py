"""Numbers as medprivbench writes them for people: in the sweep table's text columns (the evidence
behind a verdict), in the report's tables and sentences, and ε in folder names and labels.

One formatter for every place a number becomes text, so that the table and the report never
print the same value two ways.
"""

from __future__ import annotations

import math
import re

import numpy as np


def format_epsilon(eps: float) -> str:
    """ε as a short, file-name-safe string: 1, 8, 0.5, 1e6, inf."""
    if math.isinf(eps):
        return "inf"
    if eps >= 1e4:
        mantissa, exponent = f"{eps:.6e}".split("e")
        mantissa = mantissa.rstrip("0").rstrip(".")
        return f"{mantissa}e{int(exponent)}"
    return f"{eps:g}"


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


def fmt_ci(value: float, lo: float, hi: float) -> str:
    return f"{fmt(value)} [{fmt(lo)}, {fmt(hi)}]"


def fmt_percent(level: float) -> str:
    return f"{100 * level:g}%"

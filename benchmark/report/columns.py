"""A column of the report's headline tables: its header and how one point's runs become its cell.

Families (benchmark/families) give their columns of the attack table as :class:`Column` objects;
the tables module renders them with its own (utility, verdicts).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from .formatting import cell

# (runs at the point, the point, all runs of the sweep) -> the cell's text
Render = Callable[[pd.DataFrame, object, pd.DataFrame], str]


@dataclass(frozen=True)
class Column:
    header: str
    render: Render
    needs: str | None = None  # the run column that must have a value somewhere, else the column is left out


def value(column: str) -> Render:
    """The cell of a run-frame column: mean ± sd over the point's seeds ('–' where the frame lacks it)."""
    return lambda at, point, runs: cell(at[column]) if column in at else "–"


def shown(column: Column, runs: pd.DataFrame) -> bool:
    return column.needs is None or (column.needs in runs and runs[column.needs].notna().any())

"""The parts of a report page: a table and a figure with its caption.

Claims (:mod:`skiplab.claims`) and diagnostic probes (:mod:`skiplab.diagnostics.probes`) both
fill pages with them, and :mod:`skiplab.report` renders them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class Table:
    """A table for the report: ``rows`` are lists of cells matching ``columns``."""

    title: str
    columns: list[str]
    rows: list[list[Any]]
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"title": self.title, "columns": self.columns, "rows": self.rows, "note": self.note}


@dataclass(frozen=True)
class Figure:
    """A figure file (relative to the report directory) and its caption."""

    path: str
    caption: str

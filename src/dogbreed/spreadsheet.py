"""CSV files people open in a spreadsheet: a cell that starts like a formula (class names come from folder names,
which anyone can choose) is written as text, so opening a report never runs anything."""

from __future__ import annotations

import csv
from typing import IO, Any, Iterable

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> Any:
    """Strings that a spreadsheet would evaluate get a leading apostrophe (OWASP's advice); numbers stay numbers."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def write_rows(f: IO[str], rows: Iterable[Iterable[Any]]) -> None:
    w = csv.writer(f)
    for row in rows:
        w.writerow([safe_cell(v) for v in row])

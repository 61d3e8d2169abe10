"""Human output: numbers rounded, times readable, tables aligned, no Python reprs; JSON for machines."""

from __future__ import annotations

import json
import time
from typing import Any, Iterable


def print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=1, default=str))


def fmt_time(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t else "-"


def fmt(v: Any) -> str:
    """A value for people: 4 significant digits, no `None`, lists and mappings written out."""
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if v != v:
            return "nan"
        return f"{v:.4f}" if 1e-3 <= abs(v) < 1e4 or v == 0 else f"{v:.4g}"
    if isinstance(v, dict):
        return ", ".join(f"{k}={fmt(x)}" for k, x in v.items()) or "-"
    if isinstance(v, (list, tuple)):
        return ", ".join(fmt(x) for x in v) or "-"
    return str(v)


def table(headers: list[str], rows: Iterable[list[Any]], right: Iterable[int] = ()) -> str:
    """Aligned columns; `right` are the indexes of right-aligned (numeric) columns."""
    cells = [[fmt(c) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    right = set(right)

    def line(values: list[str]) -> str:
        return "  ".join(v.rjust(w) if i in right else v.ljust(w) for i, (v, w) in enumerate(zip(values, widths)))

    return "\n".join([line(headers), *(line(r) for r in cells)]).rstrip()

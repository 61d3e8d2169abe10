"""Figures for files and reports, drawn without pyplot: nothing here changes matplotlib's global backend, so a
notebook's inline plots keep working after dogbreed has written a PNG."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any


def new_figure(figsize: tuple[float, float], ncols: int = 1) -> tuple[Any, Any]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    return fig, fig.subplots(1, ncols) if ncols > 1 else fig.subplots()


def save(fig: Any, path: Path | Any, dpi: int = 100, fmt: str | None = None) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=dpi, format=fmt)


def accuracy_axis(ax: Any, values: list[float]) -> None:
    """An axis of accuracies (fractions) in percent that stops at 100%: a run at 1.0 throughout would otherwise get
    matplotlib's axis from 0.96 to 1.04, reading as accuracies above 100%."""
    from matplotlib.ticker import PercentFormatter

    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values or not 0 <= min(values) <= max(values) <= 1:
        return
    lo = min(values)
    bottom = max(0.0, lo - max(0.05, 0.1 * (1 - lo)))
    top = 1.0 + 0.06 * (1.0 - bottom)  # a line at 100% stays clear of the frame
    ax.set_ylim(bottom, top)
    ticks = [t for t in ax.get_yticks() if bottom - 1e-9 <= t <= 1.0 + 1e-9]
    ax.set_yticks(ticks)
    fine = len(ticks) > 1 and ticks[1] - ticks[0] < 0.01 - 1e-9
    ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=1 if fine else 0))

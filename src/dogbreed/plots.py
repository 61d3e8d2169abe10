"""Figures for files and reports, drawn without pyplot: nothing here changes matplotlib's global backend, so a
notebook's inline plots keep working after dogbreed has written a PNG."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def new_figure(figsize: tuple[float, float], ncols: int = 1) -> tuple[Any, Any]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    return fig, fig.subplots(1, ncols) if ncols > 1 else fig.subplots()


def save(fig: Any, path: Path | Any, dpi: int = 100, fmt: str | None = None) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=dpi, format=fmt)

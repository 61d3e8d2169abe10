"""Hyperparameters as command-line flags, from the metadata kept beside each field in `dogbreed.config`.

One spelling is documented: SageMaker's own names (`--learning_rate`); the dashed one (`--learning-rate`) is
accepted too but not shown. Every flag's help gives its default, allowed values and meaning.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from dogbreed.config import Hyperparameters


def _describe(f: dataclasses.Field) -> str:
    meta = f.metadata
    parts = [meta["help"]]
    choices = [c for c in meta["choices"] if c is not None]
    if choices:
        parts.append("one of " + ", ".join(str(c) for c in choices))
    low, high = meta["low"], meta["high"]
    if low is not None or high is not None:
        lo = "" if low is None else (f"> {low:g}" if meta["low_open"] else f">= {low:g}")
        hi = "" if high is None else f"<= {high:g}"
        parts.append(" and ".join(p for p in (lo, hi) if p))
    default = f.default
    shown = "(the preset's)" if default is None and "the preset's" in meta["help"] else (
        "(backbone's)" if default in (None, "") else default)
    parts.append(f"default {shown}")
    return "; ".join(parts).replace("%", "%%")


def add_hyperparameter_flags(parser: argparse.ArgumentParser, title: str = "hyperparameters") -> None:
    group = parser.add_argument_group(title, "SageMaker image-classification names where one exists")
    for f in dataclasses.fields(Hyperparameters):
        group.add_argument(f"--{f.name}", dest=f"hp_{f.name}", metavar="VALUE", default=argparse.SUPPRESS,
                           help=_describe(f))
        if "_" in f.name:
            group.add_argument(f"--{f.name.replace('_', '-')}", dest=f"hp_{f.name}", default=argparse.SUPPRESS,
                               help=argparse.SUPPRESS)


def hyperparameter_values(args: argparse.Namespace) -> dict[str, Any]:
    """The hyperparameters given on the command line, by name (strings; `Hyperparameters` types them)."""
    return {k[3:]: v for k, v in vars(args).items() if k.startswith("hp_")}

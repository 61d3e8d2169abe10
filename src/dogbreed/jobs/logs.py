"""Log files of jobs and endpoints: copying dogbreed's log lines into a job's own file, and reading them back."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Callable, TextIO

log = logging.getLogger("dogbreed")
FORMAT = "%(asctime)s %(levelname)s %(message)s"


def attach(path: Path) -> logging.Handler:
    """Copies dogbreed's log lines into `path` until `detach`."""
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.setLevel(logging.INFO)
    log.addHandler(handler)
    if log.level == logging.NOTSET or log.level > logging.INFO:
        log.setLevel(logging.INFO)
    return handler


def detach(handler: logging.Handler) -> None:
    log.removeHandler(handler)
    handler.close()


def follow(path: Path, running: Callable[[], bool], out: TextIO | None = None, follow: bool = True,
           poll: float = 0.5) -> None:
    """Writes the log to `out`; with `follow`, keeps writing new lines until `running()` turns false."""
    out = out or sys.stdout
    with path.open(errors="replace") as f:
        out.write(f.read())
        out.flush()
        while follow:
            line = f.readline()
            if line:
                out.write(line)
                out.flush()
                continue
            if not running():
                out.write(f.read())
                out.flush()
                return
            time.sleep(poll)

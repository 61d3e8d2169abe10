"""Progress and log lines where the user is: bars on a terminal, widgets in Jupyter, periodic lines in a log file.

`tqdm.auto` picks the notebook widget or the terminal bar; when stderr is neither a terminal nor a notebook (CI, a
redirected log, a worker process), a bar would be invisible or a mess of carriage returns, so progress becomes a
log line every `LINE_SECONDS` instead. Log lines go through `tqdm.write`, so they never cut a bar in half.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from typing import Callable, Iterator

LINE_SECONDS = 30.0
log = logging.getLogger("dogbreed")


def _in_notebook() -> bool:
    try:
        from IPython import get_ipython

        shell = get_ipython()
        return shell is not None and shell.__class__.__name__ == "ZMQInteractiveShell"
    except ImportError:
        return False


def interactive() -> bool:
    return _in_notebook() or (hasattr(sys.stderr, "isatty") and sys.stderr.isatty())


@contextlib.contextmanager
def progress(total: int | None, desc: str, enabled: bool = True, unit: str = "img"
             ) -> Iterator[Callable[[int], None]]:
    """Yields `tick(n)`; shows a bar (terminal, notebook) or periodic log lines (anything else)."""
    if not enabled:
        yield lambda n=1: None
        return
    if interactive():
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc=desc, unit=unit, leave=False, dynamic_ncols=True)
        try:
            yield bar.update
        finally:
            bar.close()
        return
    state = {"done": 0, "last": time.monotonic(), "start": time.monotonic()}

    def tick(n: int = 1) -> None:
        state["done"] += n
        now = time.monotonic()
        if now - state["last"] >= LINE_SECONDS:
            state["last"] = now
            of = f"/{total}" if total else ""
            rate = state["done"] / max(now - state["start"], 1e-9)
            log.info("%s: %d%s %s (%.1f %s/s)", desc, state["done"], of, unit, rate, unit)

    yield tick


class TqdmLoggingHandler(logging.StreamHandler):
    """A stderr handler that writes through tqdm, so log lines appear above progress bars."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm.auto import tqdm

            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # noqa: BLE001 - logging must never raise
            self.handleError(record)


def ensure_visible_logs(level: int = logging.INFO, fmt: str = "%(message)s") -> None:
    """Gives dogbreed's logger a handler when nobody configured logging, so library calls are not silent."""
    for noisy in ("alembic", "mlflow", "urllib3", "timm", "httpx", "httpcore", "optuna"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if log.handlers and any(not isinstance(h, logging.FileHandler) for h in log.handlers):
        return
    if logging.getLogger().handlers:  # the application configured logging itself
        log.setLevel(min(log.level or level, level))
        return
    handler = TqdmLoggingHandler()
    handler.setFormatter(logging.Formatter(fmt))
    log.addHandler(handler)
    log.setLevel(level)
    log.propagate = False

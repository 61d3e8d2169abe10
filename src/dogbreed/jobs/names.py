"""Names of jobs, endpoints and models, and the one place where a name becomes a path under the dogbreed home.

Every command that takes a name goes through `validate` before touching the file system, so a name can never
reach outside `DOGBREED_HOME` (`../../x`), carry a newline, or be too long for a file name.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from dogbreed.config import UserError, home

MAX_LENGTH = 63  # SageMaker's limit for training job and endpoint names
MAX_TUNING_LENGTH = 32  # SageMaker's limit for tuning job names
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")
# Kinds of named things and the folder under the home each lives in.
FOLDERS = {"job": "jobs", "endpoint": "endpoints", "model": "models"}


def validate(name: object, what: str = "job", max_length: int = MAX_LENGTH) -> str:
    """Returns `name` if it is a usable name of a `what`; a one-line UserError otherwise."""
    if not isinstance(name, str) or not name:
        raise UserError(f"{what} name is missing")
    shown = name if len(name) <= 40 else name[:37] + "..."
    if len(name) > max_length:
        raise UserError(f"{what} name {shown!r} is too long ({len(name)} characters; at most {max_length})")
    if not _NAME.fullmatch(name) or ".." in name:
        raise UserError(f"{what} name {shown!r} is invalid: use letters, digits, '-', '_' or '.', starting with a "
                        "letter or digit")
    return name


def path_for(what: str, name: str) -> Path:
    """The folder of a named job, endpoint or model: validated, and always inside the home."""
    validate(name, what)
    root = (home() / FOLDERS[what]).resolve()
    path = (root / name).resolve()
    if path.parent != root:  # cannot happen for a valid name; a last guard before anything is deleted
        raise UserError(f"{what} name {name!r} does not name a folder under {root}")
    return path


def job_dir(name: str) -> Path:
    return path_for("job", name)


def endpoint_dir(name: str) -> Path:
    return path_for("endpoint", name)


def timestamp(short: bool = False) -> str:
    """SageMaker's name suffix: `2026-11-24-15-04-05-123`, or `261124-150405-123` where names must be short."""
    now = time.time()
    ms = int(now * 1000) % 1000
    if short:
        return time.strftime("%y%m%d-%H%M%S", time.localtime(now)) + f"-{ms:03d}"
    return time.strftime("%Y-%m-%d-%H-%M-%S", time.localtime(now)) + f"-{ms:03d}"


def unique_name(base: str = "dogbreed", what: str = "job", max_length: int = MAX_LENGTH) -> str:
    """`base-<timestamp>`, as SageMaker names jobs, never a name already used (waits a millisecond and retries)."""
    short = max_length <= MAX_TUNING_LENGTH
    for _ in range(1000):
        suffix = timestamp(short)
        name = f"{base[: max_length - len(suffix) - 1].rstrip('-_.')}-{suffix}"
        if not path_for(what, name).exists():
            return validate(name, what, max_length)
        time.sleep(0.001)
    raise UserError(f"could not find an unused {what} name starting with {base!r}")

"""Job records: one JSON file per job under the dogbreed home, written atomically at every change.

A record is a frozen dataclass; a change makes a new record (`dataclasses.replace`) and saves it, so a crash
leaves the last complete state on disk, never a half-written one.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dogbreed.config import UserError, home

IN_PROGRESS, COMPLETED, FAILED, STOPPED = "InProgress", "Completed", "Failed", "Stopped"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9\-_.]{0,62}$")


@dataclass(frozen=True)
class JobRecord:
    name: str
    kind: str = "training"  # training | tuning
    status: str = IN_PROGRESS
    failure_reason: str | None = None
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)  # location, classes, counts, content key
    metrics: dict[str, float] = field(default_factory=dict)  # final metrics
    history: list[dict[str, float]] = field(default_factory=list)  # per-epoch metrics
    start_time: float = field(default_factory=time.time)
    end_time: float | None = None
    mlflow_run_id: str | None = None
    parent: str | None = None  # the tuning job a trial belongs to
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def elapsed_s(self) -> float:
        return (self.end_time or time.time()) - self.start_time

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def jobs_root() -> Path:
    return home() / "jobs"


def job_dir(name: str) -> Path:
    return jobs_root() / name


def validate_name(name: str) -> None:
    if not _NAME.match(name or ""):
        raise UserError(f"job name {name!r} is invalid: use 1-63 letters, digits, '-', '_' or '.'")


def create(record: JobRecord) -> JobRecord:
    """Claims the job name (atomically, so two processes cannot both take it) and saves the first record."""
    validate_name(record.name)
    jobs_root().mkdir(parents=True, exist_ok=True)
    try:
        job_dir(record.name).mkdir()
    except FileExistsError:
        raise UserError(f"job name {record.name!r} is already used; pick another --job-name") from None
    save(record)
    return record


def save(record: JobRecord) -> None:
    path = job_dir(record.name) / "job.json"
    tmp = path.with_name(f".job.json.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(record.to_dict(), indent=1, default=_json_default))
    os.replace(tmp, path)


def load(name: str) -> JobRecord:
    path = job_dir(name) / "job.json"
    if not path.exists():
        raise UserError(f"no job named {name!r} (see `dogbreed jobs list`)")
    data = json.loads(path.read_text())
    known = {f.name for f in dataclasses.fields(JobRecord)}
    return JobRecord(**{k: v for k, v in data.items() if k in known})


def list_records(kind: str | None = None) -> list[JobRecord]:
    root = jobs_root()
    if not root.exists():
        return []
    records = []
    for d in root.iterdir():
        if (d / "job.json").exists():
            r = load(d.name)
            if kind is None or r.kind == kind:
                records.append(r)
    return sorted(records, key=lambda r: r.start_time, reverse=True)


def update(record: JobRecord, **changes: Any) -> JobRecord:
    new = dataclasses.replace(record, **changes)
    save(new)
    return new


def _json_default(o: Any) -> Any:
    if hasattr(o, "item"):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")

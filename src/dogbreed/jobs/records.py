"""Job records: one JSON file per job (training or tuning) under the dogbreed home, written atomically at every change.

A record is a frozen dataclass; a change makes a new record (`dataclasses.replace`) and saves it, so a crash leaves
the last complete state on disk, never a half-written one. A record names the process that owns it; whoever reads
an InProgress record whose owner is gone (killed, crashed, machine lost) marks it Failed and ends its MLflow run, so
no job stays InProgress forever.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dogbreed.config import UserError, home
from dogbreed.jobs import names
from dogbreed.jobs.process import ProcessIdentity, owner_running

IN_PROGRESS, COMPLETED, FAILED, STOPPED = "InProgress", "Completed", "Failed", "Stopped"
ENDED = (COMPLETED, FAILED, STOPPED)
OWNER_GONE = "process ended without finishing (killed or crashed)"
KINDS = ("training", "tuning")
log = logging.getLogger("dogbreed")


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
    owner: dict[str, Any] | None = None  # ProcessIdentity of the process running the job
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def elapsed_s(self) -> float:
        return (self.end_time or time.time()) - self.start_time

    @property
    def ended(self) -> bool:
        return self.status in ENDED

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def jobs_root() -> Path:
    return home() / "jobs"


def job_dir(name: str) -> Path:
    return names.job_dir(name)


def heartbeat_path(name: str) -> Path:
    return job_dir(name) / "heartbeat"


def stop_request_path(name: str) -> Path:
    """Written by `dogbreed jobs stop`; the job's own process sees it and stops cleanly (SageMaker's StopTrainingJob)."""
    return job_dir(name) / "stop-requested"


def stop_requested(name: str) -> bool:
    return stop_request_path(name).exists()


def exists(name: str) -> bool:
    return (job_dir(name) / "job.json").exists()


def create(record: JobRecord) -> JobRecord:
    """Claims the job name (atomically, so two processes cannot both take it) and saves the first record,
    owned by this process."""
    names.validate(record.name, "job", names.MAX_TUNING_LENGTH if record.kind == "tuning" else names.MAX_LENGTH)
    jobs_root().mkdir(parents=True, exist_ok=True)
    try:
        job_dir(record.name).mkdir()
    except FileExistsError:
        raise UserError(f"job name {record.name!r} is already used; pick another job name") from None
    record = dataclasses.replace(record, owner=ProcessIdentity.current().to_dict())
    save(record)
    return record


def save(record: JobRecord) -> None:
    path = job_dir(record.name) / "job.json"
    tmp = path.with_name(f".job.json.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(record.to_dict(), indent=1, default=_json_default))
    os.replace(tmp, path)


def load(name: str, *, reconcile: bool = True) -> JobRecord:
    """The job's record; an InProgress record whose process is gone is marked Failed first."""
    path = job_dir(name) / "job.json"
    if not path.exists():
        raise UserError(f"no job named {name!r} (see `dogbreed jobs list`)")
    try:
        data = json.loads(path.read_text())
        known = {f.name for f in dataclasses.fields(JobRecord)}
        record = JobRecord(**{k: v for k, v in data.items() if k in known})
    except (ValueError, TypeError) as e:
        raise UserError(f"job record {path} is damaged ({str(e)[:80]})") from None
    return reconcile_owner(record) if reconcile else record


def owner_alive(record: JobRecord) -> bool:
    return owner_running(ProcessIdentity.from_dict(record.owner), heartbeat_path(record.name))


def reconcile_owner(record: JobRecord) -> JobRecord:
    """Marks a job Failed when it claims to run but its process is gone, and ends its MLflow run."""
    if record.status != IN_PROGRESS or owner_alive(record):
        return record
    stopping = stop_requested(record.name)
    status, reason = (STOPPED, "stopped by the user") if stopping else (FAILED, OWNER_GONE)
    ended = update(record, status=status, failure_reason=reason, end_time=time.time())
    log.debug("job %s: owner gone, marked %s", record.name, status)
    if record.mlflow_run_id:
        from dogbreed.jobs.tracking import end_run

        end_run(record.mlflow_run_id, status, reason)
    return ended


def claim(record: JobRecord, **changes: Any) -> JobRecord:
    """Makes this process the owner of an existing job (resuming it); refuses while its owner still runs."""
    if record.status == IN_PROGRESS and owner_alive(record):
        raise UserError(f"job {record.name!r} is still running (stop it first with `dogbreed jobs stop {record.name}`)")
    stop_request_path(record.name).unlink(missing_ok=True)
    return update(record, owner=ProcessIdentity.current().to_dict(), **changes)


def list_records(kind: str | None = None, parent: str | None = None) -> list[JobRecord]:
    root = jobs_root()
    if not root.exists():
        return []
    records = []
    for d in root.iterdir():
        if not (d / "job.json").exists():
            continue
        try:
            r = load(d.name)
        except UserError as e:  # one damaged record must not hide all the others
            log.warning("skipping %s: %s", d.name, e)
            continue
        if (kind is None or r.kind == kind) and (parent is None or r.parent == parent):
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

"""Endpoint records: what is served where, by which processes, and whether it still is.

The process that runs `dogbreed deploy` owns the record; every server worker process adds a file of its own
(`workers/PID.json`) once its model is loaded, so nothing races to rewrite the record. An endpoint is InService
while its owner runs and a worker has loaded the model; when the owner is gone without having said so (kill -9,
crash) it reads Failed, never InService, and `delete` still stops every worker it had.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import socket
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dogbreed.config import UserError, home
from dogbreed.jobs import names
from dogbreed.jobs.process import ProcessIdentity, stop_processes

CREATING, IN_SERVICE, STOPPED, FAILED = "Creating", "InService", "Stopped", "Failed"
OWNER_GONE = "the endpoint's process ended without stopping it (killed or crashed)"


@dataclass(frozen=True)
class EndpointRecord:
    name: str
    model: str
    model_dir: str
    url: str
    workers: int
    backend: str
    host: str = "127.0.0.1"
    port: int = 0
    status: str = CREATING  # as written by the owner: Creating, then Stopped or Failed when it ends
    failure_reason: str | None = None
    created: float = field(default_factory=time.time)
    onnx_parity_error: float | None = None
    owner: dict[str, Any] | None = None  # ProcessIdentity of the `dogbreed deploy` process

    @property
    def owner_identity(self) -> ProcessIdentity | None:
        return ProcessIdentity.from_dict(self.owner)

    def worker_identities(self) -> list[ProcessIdentity]:
        d = endpoint_dir(self.name) / "workers"
        out = []
        for f in sorted(d.glob("*.json")) if d.exists() else []:
            try:
                ident = ProcessIdentity.from_dict(json.loads(f.read_text()))
            except (ValueError, KeyError):
                continue
            if ident is not None:
                out.append(ident)
        return out

    @property
    def live_status(self) -> str:
        if self.status not in (CREATING, IN_SERVICE):
            return self.status
        owner = self.owner_identity
        if owner is None or not owner.alive():
            return FAILED
        return IN_SERVICE if any(w.alive() for w in self.worker_identities()) else CREATING

    @property
    def live_failure_reason(self) -> str | None:
        if self.status in (CREATING, IN_SERVICE) and self.live_status == FAILED:
            return OWNER_GONE
        return self.failure_reason

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["status"] = self.live_status
        d["failure_reason"] = self.live_failure_reason
        return d


def endpoint_dir(name: str) -> Path:
    return names.endpoint_dir(name)


def exists(name: str) -> bool:
    return (endpoint_dir(name) / "endpoint.json").exists()


def save(record: EndpointRecord) -> None:
    d = endpoint_dir(record.name)
    d.mkdir(parents=True, exist_ok=True)
    tmp = d / f".endpoint.json.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(asdict(record), indent=1))
    tmp.replace(d / "endpoint.json")


def load(name: str) -> EndpointRecord:
    path = endpoint_dir(name) / "endpoint.json"
    if not path.exists():
        raise UserError(f"no endpoint named {name!r} (see `dogbreed endpoints list`)")
    try:
        data = json.loads(path.read_text())
        known = {f.name for f in dataclasses.fields(EndpointRecord)}
        return EndpointRecord(**{k: v for k, v in data.items() if k in known})
    except (ValueError, TypeError) as e:
        raise UserError(f"endpoint record {path} is damaged ({str(e)[:80]})") from None


def update(record: EndpointRecord, **changes: Any) -> EndpointRecord:
    new = dataclasses.replace(record, **changes)
    if exists(record.name):  # not deleted meanwhile
        save(new)
    return new


def register_worker(name: str) -> Path:
    """Called by each server process once its model is loaded: the endpoint now counts it as serving."""
    d = endpoint_dir(name) / "workers"
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"{os.getpid()}.json"
    path.write_text(json.dumps(ProcessIdentity.current().to_dict()))
    return path


def list_endpoints() -> list[EndpointRecord]:
    root = home() / "endpoints"
    if not root.exists():
        return []
    out = []
    for d in root.iterdir():
        if (d / "endpoint.json").exists():
            try:
                out.append(load(d.name))
            except UserError:
                continue
    return sorted(out, key=lambda r: r.created, reverse=True)


def stop(record: EndpointRecord, timeout: float = 15.0) -> None:
    """Stops the owner and every worker it had (identity-checked, so no reused PID is hit), then waits for the
    port to be free."""
    processes = [p for p in (record.owner_identity, *record.worker_identities()) if p is not None]
    stop_processes(processes, timeout)
    if record.port:
        wait_port_free(record.host, record.port, timeout=5.0)


def delete(name: str, timeout: float = 15.0) -> EndpointRecord:
    record = load(name)
    stop(record, timeout)
    shutil.rmtree(endpoint_dir(name), ignore_errors=True)
    return record


def port_in_use(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host if host not in ("0.0.0.0", "") else "127.0.0.1", port)) == 0


def wait_port_free(host: str, port: int, timeout: float) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if not port_in_use(host, port):
            return True
        time.sleep(0.1)
    return False

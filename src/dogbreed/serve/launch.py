"""Endpoints started from Python (the SDK's `deploy()`): `dogbreed deploy` in its own process session, in the
background, with this call returning once the endpoint answers `/ping`. Nothing in the caller's process (its
environment, its signal handlers) is changed."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from dogbreed.config import UserError, home
from dogbreed.jobs import endpoint_records, names
from dogbreed.jobs.endpoint_records import CREATING, FAILED, IN_SERVICE, EndpointRecord


def launch_log(endpoint_name: str) -> Path:
    d = home() / "background"
    d.mkdir(parents=True, exist_ok=True)
    return d / f"endpoint-{endpoint_name}.log"


def start_endpoint(model_ref: str, endpoint_name: str, *, workers: int = 1, device: str | None = None,
                   api_key: str | None = None, wait: bool = True, timeout: float = 600.0) -> EndpointRecord | None:
    """Starts serving `model_ref` as `endpoint_name`; with `wait`, returns the record once it is InService."""
    names.validate(endpoint_name, "endpoint")
    if endpoint_records.exists(endpoint_name) and \
            endpoint_records.load(endpoint_name).live_status in (CREATING, IN_SERVICE):
        raise UserError(f"Cannot create already existing endpoint {endpoint_name!r} (delete it first)")
    cmd = [sys.executable, "-m", "dogbreed.cli", "deploy", "--model", model_ref, "--endpoint-name", endpoint_name,
           "--port", "0", "--workers", str(workers)]
    if device:
        cmd += ["--device", device]
    env = os.environ.copy()
    if api_key:
        env["DOGBREED_API_KEY"] = api_key  # never on the command line, where `ps` shows it
    log_path = launch_log(endpoint_name)
    with log_path.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                start_new_session=True)
    if not wait:
        return None
    return wait_in_service(endpoint_name, proc, timeout)


def wait_in_service(endpoint_name: str, proc: subprocess.Popen | None = None, timeout: float = 600.0
                    ) -> EndpointRecord:
    import httpx

    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise UserError(f"endpoint {endpoint_name} did not start: {_last_line(launch_log(endpoint_name))}")
        if endpoint_records.exists(endpoint_name):
            record = endpoint_records.load(endpoint_name)
            if proc is None or (record.owner or {}).get("pid") == proc.pid:
                status = record.live_status
                if status == FAILED:
                    raise UserError(f"endpoint {endpoint_name} failed: {record.live_failure_reason}")
                if status == IN_SERVICE:
                    try:
                        if httpx.get(f"{record.url}/ping", timeout=5).status_code == 200:
                            return record
                    except httpx.HTTPError:
                        pass
        time.sleep(0.3)
    raise UserError(f"endpoint {endpoint_name} was not in service after {timeout:.0f} s; see `dogbreed logs "
                    f"{endpoint_name}`")


def _last_line(path: Path) -> str:
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "no output"
    errors = [ln for ln in lines if ln.startswith("error:")]
    return (errors or lines or ["no output"])[-1]

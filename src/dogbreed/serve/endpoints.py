"""Endpoints: a record per endpoint under the dogbreed home, and `deploy`, which runs the server in the foreground."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dogbreed.config import UserError, home
from dogbreed.serve.app import ServeConfig
from dogbreed.train.records import validate_name

log = logging.getLogger("dogbreed")


@dataclass(frozen=True)
class EndpointRecord:
    name: str
    model: str
    model_dir: str
    url: str
    pid: int
    workers: int
    backend: str
    status: str = "InService"  # Creating | InService | Stopped | Failed
    created: float = field(default_factory=time.time)
    onnx_parity_error: float | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["status"] = self.live_status
        return d

    @property
    def live_status(self) -> str:
        if self.status in ("InService", "Creating") and not _alive(self.pid):
            return "Stopped"
        return self.status


def endpoint_dir(name: str) -> Path:
    return home() / "endpoints" / name


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def save(record: EndpointRecord) -> None:
    d = endpoint_dir(record.name)
    d.mkdir(parents=True, exist_ok=True)
    tmp = d / ".endpoint.json.tmp"
    tmp.write_text(json.dumps(asdict(record), indent=1))
    tmp.replace(d / "endpoint.json")


def load(name: str) -> EndpointRecord:
    path = endpoint_dir(name) / "endpoint.json"
    if not path.exists():
        raise UserError(f"no endpoint named {name!r} (see `dogbreed endpoints list`)")
    return EndpointRecord(**json.loads(path.read_text()))


def list_endpoints() -> list[EndpointRecord]:
    root = home() / "endpoints"
    if not root.exists():
        return []
    return sorted((load(d.name) for d in root.iterdir() if (d / "endpoint.json").exists()),
                  key=lambda r: r.created, reverse=True)


def delete(name: str, timeout: float = 15.0) -> EndpointRecord:
    record = load(name)
    if _alive(record.pid) and record.live_status == "InService":
        os.kill(record.pid, signal.SIGTERM)
        deadline = time.time() + timeout
        while _alive(record.pid) and time.time() < deadline:
            time.sleep(0.2)
        if _alive(record.pid):
            os.kill(record.pid, signal.SIGKILL)
    shutil.rmtree(endpoint_dir(name), ignore_errors=True)
    return record


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def deploy(model_ref: str, endpoint_name: str, *, host: str = "127.0.0.1", port: int = 8080, workers: int = 1,
           backend: str = "auto", device: str | None = None, api_key: str | None = None,
           max_batch_size: int = 16, max_wait_ms: float = 5.0) -> None:
    """Prepares the model (ONNX export + parity check) and serves it until interrupted or deleted."""
    import torch
    import uvicorn

    from dogbreed.train.registry import model_dir_for

    validate_name(endpoint_name)
    if workers < 1:
        raise UserError("--workers must be at least 1")
    if max_batch_size < 1 or max_wait_ms < 0:
        raise UserError("--max-batch-size must be >= 1 and --max-wait-ms >= 0")
    if (endpoint_dir(endpoint_name) / "endpoint.json").exists() and load(endpoint_name).live_status == "InService":
        raise UserError(f"endpoint {endpoint_name!r} is already running; delete it first")
    if backend not in ("auto", "onnx", "torch"):
        raise UserError(f"--backend must be auto, onnx or torch, not {backend!r}")
    model_dir = model_dir_for(model_ref)
    if backend == "auto":
        backend = "torch" if (device or "").startswith("cuda") or torch.cuda.is_available() else "onnx"
    onnx_path, parity = None, None
    if backend == "onnx":
        from dogbreed.serve.export import export_onnx

        onnx_path, parity = export_onnx(model_dir)
    port = port or free_port(host)
    d = endpoint_dir(endpoint_name)
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    config = ServeConfig(model_dir=str(model_dir), onnx_path=str(onnx_path) if onnx_path else None, backend=backend,
                         device=device, max_batch_size=max_batch_size, max_wait_ms=max_wait_ms, api_key=api_key,
                         endpoint_name=endpoint_name, model_ref=model_ref, log_file=str(d / "endpoint.log"),
                         threads=max(1, (os.cpu_count() or 1) // workers))
    config.save(d / "serve.json")
    os.environ["DOGBREED_SERVE_CONFIG"] = str(d / "serve.json")
    if workers > 1:  # metrics summed over worker processes
        (d / "prometheus").mkdir()
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(d / "prometheus")
    url = f"http://{host}:{port}"
    record = EndpointRecord(name=endpoint_name, model=model_ref, model_dir=str(model_dir), url=url, pid=os.getpid(),
                            workers=workers, backend=backend, onnx_parity_error=parity)
    save(record)
    print(f"endpoint {endpoint_name} serving {model_ref} at {url} (Ctrl-C or `dogbreed endpoints delete "
          f"{endpoint_name}` to stop)", flush=True)
    status = "Stopped"
    try:
        uvicorn.run("dogbreed.serve.app:create_app", factory=True, host=host, port=port, workers=workers,
                    log_level="warning", timeout_graceful_shutdown=5)
    except BaseException:
        status = "Failed"
        raise
    finally:
        if (d / "endpoint.json").exists():  # not deleted meanwhile
            save(EndpointRecord(**{**asdict(record), "status": status}))

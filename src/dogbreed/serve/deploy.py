"""`dogbreed deploy`: checks everything cheap first (name, port, model), exports the model, then serves it in the
foreground until interrupted or deleted. The endpoint's record (`dogbreed.jobs.endpoint_records`) names this
process and every worker, so `dogbreed endpoints delete` stops all of it from anywhere."""

from __future__ import annotations

import errno
import logging
import os
import shutil
import socket
from pathlib import Path

from dogbreed.config import UserError
from dogbreed.jobs import endpoint_records, names
from dogbreed.jobs.endpoint_records import CREATING, FAILED, IN_SERVICE, STOPPED, EndpointRecord
from dogbreed.jobs.process import ProcessIdentity
from dogbreed.serve.app import ServeConfig

log = logging.getLogger("dogbreed")
BACKENDS = ("auto", "onnx", "torch")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def check_port(host: str, port: int) -> int:
    """The port to serve on (a free one for 0), found usable before any model is loaded."""
    if not isinstance(port, int) or not 0 <= port <= 65535:
        raise UserError(f"--port {port} is not a port number (0-65535; 0 picks a free port)")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: TIME_WAIT is no obstacle
        try:
            s.bind((host, port))
        except socket.gaierror:
            raise UserError(f"--host {host!r} is not an address of this machine") from None
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise UserError(f"port {port} on {host} is already in use (pick another --port, or 0 for any "
                                "free one)") from None
            if e.errno == errno.EACCES:
                raise UserError(f"port {port} needs privileges on this machine (use a port above 1023)") from None
            if e.errno == errno.EADDRNOTAVAIL:
                raise UserError(f"--host {host!r} is not an address of this machine") from None
            raise UserError(f"cannot listen on {host}:{port}: {e.strerror}") from None
        return s.getsockname()[1]


def read_api_key(api_key: str | None, api_key_file: str | None) -> str | None:
    """The key from --api-key-file, DOGBREED_API_KEY, or --api-key (visible in `ps`, so the other two are better)."""
    if api_key_file:
        p = Path(api_key_file)
        if not p.is_file():
            raise UserError(f"--api-key-file {p} not found")
        api_key = p.read_text().strip()
        if not api_key:
            raise UserError(f"--api-key-file {p} is empty")
    elif not api_key:
        api_key = os.environ.get("DOGBREED_API_KEY") or None
    return api_key


def deploy(model_ref: str, endpoint_name: str, *, host: str = "127.0.0.1", port: int = 8080, workers: int = 1,
           backend: str = "auto", device: str | None = None, api_key: str | None = None,
           max_batch_size: int = 16, max_wait_ms: float = 5.0, docs: bool = False,
           body_timeout_s: float = 30.0, on_ready_line: bool = True) -> EndpointRecord:
    """Prepares the model (ONNX export + parity check) and serves it until interrupted or deleted."""
    import uvicorn

    from dogbreed.devices import resolve_device
    from dogbreed.jobs.model_registry import model_dir_for

    names.validate(endpoint_name, "endpoint")
    if not isinstance(workers, int) or not 1 <= workers <= 64:
        raise UserError("--workers must be between 1 and 64")
    if max_batch_size < 1 or max_batch_size > 256 or max_wait_ms < 0 or max_wait_ms > 10_000:
        raise UserError("--max-batch-size must be 1-256 and --max-wait-ms 0-10000")
    if not 0.1 <= body_timeout_s <= 3600:
        raise UserError("--body-timeout must be between 0.1 and 3600 seconds")
    if backend not in BACKENDS:
        raise UserError(f"--backend must be auto, onnx or torch, not {backend!r}")
    if endpoint_records.exists(endpoint_name):
        existing = endpoint_records.load(endpoint_name)
        if existing.live_status in (CREATING, IN_SERVICE):
            raise UserError(f"endpoint {endpoint_name!r} is already running; delete it first")
        endpoint_records.stop(existing, timeout=5)  # workers a killed deploy may have left
    device = resolve_device(device) if device else None
    port = check_port(host, port)
    model_dir = model_dir_for(model_ref)
    if backend == "auto":
        backend = "torch" if (device or "").startswith("cuda") else "onnx"
    onnx_path, parity = None, None
    if backend == "onnx":
        from dogbreed.models.onnx_export import export_onnx

        onnx_path, parity = export_onnx(model_dir)
    d = endpoint_records.endpoint_dir(endpoint_name)
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    me = ProcessIdentity.current()
    config = ServeConfig(model_dir=str(model_dir), onnx_path=str(onnx_path) if onnx_path else None, backend=backend,
                         device=device, max_batch_size=max_batch_size, max_wait_ms=max_wait_ms, api_key=api_key,
                         endpoint_name=endpoint_name, model_ref=model_ref, log_file=str(d / "endpoint.log"),
                         threads=max(1, (os.cpu_count() or 1) // workers), owner_pid=me.pid, docs=docs,
                         body_timeout_s=body_timeout_s)
    config.save(d / "serve.json")
    os.environ["DOGBREED_SERVE_CONFIG"] = str(d / "serve.json")
    if workers > 1:  # metrics summed over worker processes
        (d / "prometheus").mkdir()
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(d / "prometheus")
    shown_host = f"[{host}]" if ":" in host else host
    url = f"http://{shown_host}:{port}"
    record = EndpointRecord(name=endpoint_name, model=model_ref, model_dir=str(model_dir), url=url, host=host,
                            port=port, workers=workers, backend=backend, onnx_parity_error=parity,
                            owner=me.to_dict())
    endpoint_records.save(record)
    if on_ready_line:
        print(f"endpoint {endpoint_name} serving {model_ref} at {url} (Ctrl-C or `dogbreed endpoints delete "
              f"{endpoint_name}` to stop)", flush=True)
    status, reason = STOPPED, None
    try:
        uvicorn.run("dogbreed.serve.app:create_app", factory=True, host=host, port=port, workers=workers,
                    log_level="warning", timeout_graceful_shutdown=5, timeout_keep_alive=5)
    except KeyboardInterrupt:
        pass
    except SystemExit as e:  # uvicorn exits when it cannot start (port taken meanwhile, app failed to load)
        if e.code not in (0, None):
            status, reason = FAILED, f"the server could not start (exit code {e.code}); see `dogbreed logs " \
                                     f"{endpoint_name}`"
    except BaseException as e:
        status, reason = FAILED, f"{type(e).__name__}: {e}"
        raise
    finally:
        record = endpoint_records.update(record, status=status, failure_reason=reason)
    if status == FAILED:
        raise UserError(f"endpoint {endpoint_name} failed: {reason}")
    return record

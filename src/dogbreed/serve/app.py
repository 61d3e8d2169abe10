"""The HTTP endpoint: SageMaker's serving contract (GET /ping, POST /invocations), Prometheus /metrics, a web page.

Every bad request gets a 4xx with a JSON error and the server keeps serving. Configuration comes from a JSON file
named by DOGBREED_SERVE_CONFIG, so uvicorn's worker processes can each build the app (`create_app`).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import time
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from dogbreed.data.images import ImageError
from dogbreed.jobs.endpoint_records import register_worker
from dogbreed.jobs.process import die_with_parent
from dogbreed.serve.api import BreedClassifierAPI
from dogbreed.serve.batcher import MicroBatcher
from dogbreed.serve.decoding import DecodeLanes
from dogbreed.serve.requests import BODY_TIMEOUT_S, ClientGone, RequestError, images_from_request, read_body, top_k_of
from dogbreed.serve.page import PAGE
from dogbreed.serve.runtime_api import add_runtime_route

log = logging.getLogger("dogbreed.serve")
# One line per refused request goes to the endpoint's log file only: written to a console (or a pipe nobody reads)
# from the event loop, a flood of bad requests would block the server on a full pipe.
request_log = logging.getLogger("dogbreed.serve.requests")
request_log.propagate = False


@dataclass(frozen=True)
class ServeConfig:
    model_dir: str
    onnx_path: str | None = None
    backend: str = "auto"
    device: str | None = None
    max_batch_size: int = 16
    max_wait_ms: float = 5.0
    api_key: str | None = None
    endpoint_name: str = "local"
    model_ref: str = ""
    log_file: str | None = None
    threads: int | None = None
    owner_pid: int | None = None  # the `dogbreed deploy` process; any other process serving is a worker
    docs: bool = False  # /docs, /redoc and /openapi.json (behind the key when one is set)
    body_timeout_s: float = BODY_TIMEOUT_S
    decode_threads: int = 2

    def save(self, path: Path) -> None:
        """Written readable by the owner only: it may hold the API key."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(asdict(self)))
        os.chmod(path, 0o600)

    @classmethod
    def load(cls, path: str) -> "ServeConfig":
        return cls(**json.loads(Path(path).read_text()))


class Metrics:
    """Prometheus metrics; shared across uvicorn workers when PROMETHEUS_MULTIPROC_DIR is set."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter("dogbreed_requests", "Invocation requests", ["status"], registry=self.registry)
        self.errors = Counter("dogbreed_errors", "Invocation requests answered with an error", ["reason"],
                              registry=self.registry)
        self.latency = Histogram("dogbreed_request_latency_seconds", "Invocation latency", registry=self.registry,
                                 buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10))
        self.batch = Histogram("dogbreed_batch_size", "Images per model call", registry=self.registry,
                               buckets=(1, 2, 4, 8, 16, 32, 64))

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess

        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def create_app(config: ServeConfig | None = None) -> FastAPI:
    if config is None:
        config = ServeConfig.load(os.environ["DOGBREED_SERVE_CONFIG"])
    if config.log_file:
        handler = logging.FileHandler(config.log_file)
        handler.setFormatter(logging.Formatter(f"%(asctime)s [{os.getpid()}] %(levelname)s %(message)s"))
        logging.getLogger("dogbreed").addHandler(handler)
        logging.getLogger("dogbreed").setLevel(logging.INFO)
        request_log.addHandler(handler)
        request_log.setLevel(logging.INFO)
    api = BreedClassifierAPI(Path(config.model_dir), backend=config.backend, device=config.device,
                             onnx_path=Path(config.onnx_path) if config.onnx_path else None, threads=config.threads)
    metrics = Metrics()
    state: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if config.owner_pid and os.getpid() != config.owner_pid:
            die_with_parent()  # a worker: never outlive the deploy process, even when it is killed
        api.setup()  # the model loads at start-up, not at import
        batcher = MicroBatcher(api.predict, config.max_batch_size, config.max_wait_ms,
                               on_batch=metrics.batch.observe)
        batcher.start()
        state["decoder"] = DecodeLanes(api.decode, api.card.preprocessing.resize_size, config.decode_threads)
        state["batcher"] = batcher
        if config.owner_pid:
            register_worker(config.endpoint_name)
        log.info("endpoint %s serving %s", config.endpoint_name, config.model_ref or config.model_dir)
        yield
        await batcher.stop()
        state["decoder"].shutdown()

    app = FastAPI(title="dogbreed endpoint", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)

    def authorised(request: Request) -> bool:
        if not config.api_key:
            return True
        key = request.headers.get("x-api-key")
        if key is None:
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            key = token.strip() if scheme.lower() == "bearer" else None
        return key is not None and hmac.compare_digest(key.encode(), config.api_key.encode())

    if config.docs:
        from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html

        @app.get("/openapi.json", include_in_schema=False)
        async def openapi(request: Request) -> Response:
            if not authorised(request):
                return _error(401, "missing or wrong API key")
            return JSONResponse(app.openapi())

        @app.get("/docs", include_in_schema=False)
        async def docs(request: Request) -> Response:
            if not authorised(request):
                return _error(401, "missing or wrong API key")
            return get_swagger_ui_html(openapi_url="openapi.json", title="dogbreed endpoint")

        @app.get("/redoc", include_in_schema=False)
        async def redoc(request: Request) -> Response:
            if not authorised(request):
                return _error(401, "missing or wrong API key")
            return get_redoc_html(openapi_url="openapi.json", title="dogbreed endpoint")

    @app.get("/ping")
    async def ping() -> Response:
        return JSONResponse({"status": "ok"} if "batcher" in state else {"status": "loading"},
                            status_code=200 if "batcher" in state else 503)

    @app.get("/", response_class=HTMLResponse)
    async def page() -> HTMLResponse:
        return HTMLResponse(PAGE.replace("__NEEDS_KEY__", "true" if config.api_key else "false")
                            .replace("__ENDPOINT__", config.endpoint_name))

    @app.get("/metrics")
    async def prometheus(request: Request) -> Response:
        if not authorised(request):
            return _error(401, "missing or wrong API key")
        data, content_type = metrics.render()
        return Response(data, media_type=content_type)

    @app.get("/model")
    async def model_info(request: Request) -> Response:
        if not authorised(request):
            return _error(401, "missing or wrong API key")
        card = api.card
        return JSONResponse({"model": config.model_ref, "backend": api.backend, "classes": card.class_labels,
                             "class_folders": card.class_folders, "preprocessing": card.preprocessing.to_dict()})

    @app.post("/invocations")
    async def invocations(request: Request) -> Response:
        return await invoke(request)

    async def invoke(request: Request) -> Response:
        start = time.perf_counter()
        try:
            if not authorised(request):
                raise RequestError(401, "missing or wrong API key")
            top_k = top_k_of(request, api.card.num_classes)
            body = await read_body(request, config.body_timeout_s)
            blobs = await images_from_request(request, body)
            try:
                squares = [await state["decoder"].decode(b) for b in blobs]
            except ImageError as e:
                raise RequestError(400, f"bad image: {e}") from None
            probs = await asyncio.gather(*(state["batcher"].submit(s) for s in squares))
            payload = api.response([np.asarray(p) for p in probs], top_k)
            metrics.requests.labels("200").inc()
            return JSONResponse(payload)
        except RequestError as e:
            metrics.requests.labels(str(e.status)).inc()
            metrics.errors.labels(str(e.status)).inc()
            request_log.info("invocation refused (%d): %s", e.status, e.message)
            headers = {"Retry-After": "1"} if e.status == 429 else None
            if e.status in (408, 413):  # the rest of the body is not read: the connection cannot be reused
                headers = {**(headers or {}), "Connection": "close"}
            return _error(e.status, e.message, headers)
        except ClientGone:  # not an error of ours: counted apart, logged in one line
            metrics.requests.labels("499").inc()
            request_log.info("client disconnected before its request was read")
            return Response(status_code=499)
        except Exception as e:  # a bug must not take the endpoint down: 500, logged, keep serving
            metrics.requests.labels("500").inc()
            metrics.errors.labels("500").inc()
            log.exception("invocation failed: %s", e)
            return _error(500, "internal error; see the endpoint log")
        finally:
            metrics.latency.observe(time.perf_counter() - start)

    add_runtime_route(app, config.endpoint_name, invoke)
    return app

"""Reading an invocation request: its body, its images and its options, each with a limit.

Nothing a client sends may cost more than the limits here allow, and every way a request can be wrong ends as a
`RequestError` with a 4xx status: a body too large (413) or too slow (408), an unknown content type (415), JSON
nested too deep, a `top_k` that is not a small whole number, too many images in one request (400).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import re
from typing import Any

from starlette.requests import ClientDisconnect, Request

MAX_BODY_BYTES = 6 * 1024 * 1024  # SageMaker's real-time payload limit
MAX_IMAGES = 16  # per request: one request must not hold the model for everyone else
BODY_TIMEOUT_S = 30.0  # the whole body must arrive within this (a slow client holds a connection, not the server)
IMAGE_TYPES = {"image/jpeg", "image/png", "application/x-image", "image/gif", "image/webp", "image/bmp",
               "image/tiff", "application/jpeg"}
_TOP_K = re.compile(r"[0-9]{1,6}")  # ASCII digits only: '²'.isdigit() is True, int('²') is not a number
_ACCEPT_TOP_K = re.compile(r"(?:^|[;,\s])top_k=([^;,\s]*)")
JSON_SHAPE = 'JSON must be {"image": "<base64>"} or {"instances": [{"b64": "<base64>"}, ...]}'


class RequestError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


class ClientGone(Exception):
    """The client closed the connection before its request was read: nobody is left to answer."""


def too_large() -> RequestError:
    return RequestError(413, f"request body over {MAX_BODY_BYTES // (1024 * 1024)} MB")


async def read_body(request: Request, timeout_s: float = BODY_TIMEOUT_S) -> bytes:
    """The whole body, refused once it passes the size limit, and given up (408) when it does not arrive in time:
    a body shorter than its Content-Length or trickling in must not hold a connection forever."""
    length = (request.headers.get("content-length") or "").strip()
    if length.isascii() and length.isdigit() and (len(length) > 12 or int(length) > MAX_BODY_BYTES):
        raise too_large()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    chunks, size = [], 0
    stream = request.stream().__aiter__()
    while True:
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise RequestError(408, f"request body not received within {timeout_s:g} s")
        try:
            chunk = await asyncio.wait_for(stream.__anext__(), remaining)
        except StopAsyncIteration:
            break
        except asyncio.TimeoutError:
            raise RequestError(408, f"request body not received within {timeout_s:g} s") from None
        except ClientDisconnect:
            raise ClientGone() from None
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise too_large()
        chunks.append(chunk)
    return b"".join(chunks)


def parse_top_k(raw: str | None, num_classes: int) -> int | None:
    """`top_k` as a whole number from 1; larger than the number of classes means all of them."""
    if raw is None:
        return None
    raw = raw.strip()
    if not _TOP_K.fullmatch(raw) or int(raw) < 1:
        raise RequestError(400, f"top_k must be a whole number from 1 to {num_classes}")
    return min(int(raw), num_classes)


def top_k_of(request: Request, num_classes: int) -> int | None:
    """From `?top_k=5`, or from the Accept header's parameter (`application/json;top_k=5`)."""
    raw = request.query_params.get("top_k")
    if raw is None:
        m = _ACCEPT_TOP_K.search(request.headers.get("accept", ""))
        raw = m.group(1) if m else None
    return parse_top_k(raw, num_classes)


def images_from_json(body: bytes) -> list[bytes]:
    """`{"image": b64}`, `{"b64": b64}`, `{"instances": [{"b64": ...} | {"image": ...} | b64, ...]}`."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise RequestError(400, "body is not valid JSON") from None
    except RecursionError:
        raise RequestError(400, "body is not valid JSON (nested too deeply)") from None
    items: list[Any]
    if isinstance(doc, dict) and isinstance(doc.get("instances"), list):
        items = doc["instances"]
    elif isinstance(doc, dict):
        items = [doc]
    else:
        raise RequestError(400, JSON_SHAPE)
    if not items:
        raise RequestError(400, "no images in the request")
    if len(items) > MAX_IMAGES:
        raise RequestError(400, f"too many images in one request ({len(items)}; at most {MAX_IMAGES})")
    out = []
    for item in items:
        b64 = item.get("image", item.get("b64")) if isinstance(item, dict) else item
        if not isinstance(b64, str):
            raise RequestError(400, JSON_SHAPE)
        try:
            out.append(base64.b64decode(b64, validate=True))
        except (binascii.Error, ValueError):
            raise RequestError(400, "image field is not valid base64") from None
    return out


async def images_from_multipart(request: Request, body: bytes) -> list[bytes]:
    from starlette.formparsers import MultiPartException

    request._body = body  # Starlette parses the form from the body already read (and size-checked)
    try:
        form = await request.form(max_files=MAX_IMAGES, max_fields=MAX_IMAGES)
    except MultiPartException as e:
        raise RequestError(400, f"malformed multipart body ({str(e)[:80]})") from None
    except Exception:  # noqa: BLE001 - the parser's other complaints mean the same to the client
        raise RequestError(400, "malformed multipart body") from None
    files = [v for _, v in form.multi_items() if hasattr(v, "read")]
    if not files:
        raise RequestError(400, "multipart body has no file part")
    return [await f.read() for f in files]


def content_type_of(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def images_from_request(request: Request, body: bytes) -> list[bytes]:
    content_type = content_type_of(request)
    if content_type in IMAGE_TYPES:
        if not body:
            raise RequestError(400, "empty request body: send an image")
        return [body]
    if content_type == "application/json":
        if not body:
            raise RequestError(400, "empty request body: send an image")
        return images_from_json(body)
    if content_type == "multipart/form-data":
        return await images_from_multipart(request, body)
    raise RequestError(415, f"unsupported content type {content_type[:60] or '(none)'!r}: use image/jpeg, "
                            "image/png, application/x-image, application/json or multipart/form-data")

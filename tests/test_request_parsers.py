"""The endpoint's request parsers on generated input (hypothesis): whatever arrives, the answer is a result or a
4xx RequestError, never another exception. Starlette's real multipart parser is driven through a real Request."""

from __future__ import annotations

import asyncio
import base64
import json

from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.requests import Request

from dogbreed.serve.requests import MAX_IMAGES, RequestError, images_from_json, images_from_multipart, parse_top_k

NUM_CLASSES = 120


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.none(), st.text(max_size=30), st.integers(-10**6, 10**7).map(str),
                 st.text(alphabet="0123456789\u00b2\u00b3\uff11\u0661 +-.eE", max_size=12)))
def test_top_k_is_a_small_whole_number_or_a_400(raw):
    try:
        k = parse_top_k(raw, NUM_CLASSES)
    except RequestError as e:
        assert e.status == 400
        return
    if raw is None:
        assert k is None
    else:
        assert raw.strip().isascii() and raw.strip().isdigit()
        assert isinstance(k, int) and 1 <= k <= NUM_CLASSES


json_values = st.recursive(st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=20),
                           lambda children: st.lists(children, max_size=4) |
                           st.dictionaries(st.sampled_from(["image", "b64", "instances", "x"]), children,
                                           max_size=4), max_leaves=20)
b64_strings = st.binary(max_size=60).map(lambda b: base64.b64encode(b).decode())


@settings(max_examples=500, deadline=None)
@given(st.one_of(json_values.map(lambda v: json.dumps(v).encode()),
                 st.binary(max_size=200),
                 st.lists(b64_strings, max_size=MAX_IMAGES + 3).map(lambda xs: json.dumps({"instances": xs}).encode()),
                 b64_strings.map(lambda s: json.dumps({"image": s}).encode()),
                 st.integers(1, 20000).map(lambda n: b"[" * n + b"]" * n)))
def test_json_bodies_give_images_or_a_400(body):
    try:
        images = images_from_json(body)
    except RequestError as e:
        assert e.status == 400
        return
    assert 1 <= len(images) <= MAX_IMAGES and all(isinstance(i, bytes) for i in images)


def _request(body: bytes, content_type: str) -> Request:
    scope = {"type": "http", "method": "POST", "path": "/invocations", "headers": [
        (b"content-type", content_type.encode("latin-1")), (b"content-length", str(len(body)).encode())],
        "query_string": b""}

    async def receive() -> dict:
        return {"type": "http.request", "body": body, "more_body": False}

    return Request(scope, receive)


part = st.tuples(st.sampled_from(["file", "image", "x", ""]), st.one_of(st.none(), st.text(max_size=12)),
                 st.binary(max_size=100))


@settings(max_examples=300, deadline=None)
@given(st.lists(part, max_size=MAX_IMAGES + 4), st.sampled_from(["xyzzy", "a" * 70, "b-o-u-n-d"]),
       st.booleans(), st.binary(max_size=40))
def test_multipart_bodies_give_images_or_a_400(parts, boundary, mangle, junk):
    body = b""
    for name, filename, data in parts:
        disp = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename is not None else "")
        body += f"--{boundary}\r\nContent-Disposition: {disp}\r\n\r\n".encode("utf-8", "replace") + data + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    if mangle:
        body = junk + body[len(junk):]
    try:
        images = asyncio.run(images_from_multipart(_request(body, f"multipart/form-data; boundary={boundary}"),
                                                   body))
    except RequestError as e:
        assert e.status == 400
        return
    assert 1 <= len(images) <= MAX_IMAGES

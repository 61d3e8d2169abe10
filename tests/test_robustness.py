"""The endpoint as an attacker meets it: the real server (`dogbreed deploy`) on 127.0.0.1, sent malformed, oversized,
slow and hostile requests. Each must get a 4xx answer quickly, never a 5xx, and the server must keep serving."""

from __future__ import annotations

import base64
import io
import json
import socket
import struct
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from conftest import Endpoint, run_cli

BODY_TIMEOUT = 2.0  # the endpoint's --body-timeout in these tests
BOUND = 15.0  # seconds any hostile request may take to be answered (body timeouts included)


@pytest.fixture(scope="module")
def ep(served_model):
    e = Endpoint("ep-hostile", "dogs5@prod", "--body-timeout", str(BODY_TIMEOUT))
    yield e
    e.stop()


@pytest.fixture(scope="module")
def photo(dogs_slice) -> bytes:
    return sorted((dogs_slice / "test").rglob("*.jpg"))[0].read_bytes()


def _encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


# A JPEG whose EXIF block makes Pillow's exif_transpose fail with struct.error (found by fuzzing EXIF IFDs): the
# orientation says "rotate", and rewriting the remaining tags cannot pack one of them.
BROKEN_EXIF = bytes.fromhex(
    "49492a0008000000020012010300010000000600000005a00700010000001b00000000000000436abe8316b7673c516f25f8db934c3b"
    "ac5284462c284630032ac8e9e2865a012390d4570310aca7b934166cc605e3a772e1e77902b06e7550d4c831caa13a7c94310ccf0dad"
    "7264e887c36bda9d205be733914be0409d5673bb973e25ff22f57ed40a050b")


def jpeg_with_exif(photo: bytes, exif_body: bytes) -> bytes:
    app1 = b"\xff\xe1" + struct.pack(">H", len(exif_body) + 8) + b"Exif\x00\x00" + exif_body
    return photo[:2] + app1 + photo[2:]


def _multipart(parts: list[tuple[str, str | None, bytes]], boundary: str = "xyzzy") -> tuple[bytes, str]:
    out = b""
    for name, filename, data in parts:
        disp = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += f"--{boundary}\r\nContent-Disposition: {disp}\r\n\r\n".encode() + data + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return out, f"multipart/form-data; boundary={boundary}"


def hostile_requests(photo: bytes) -> list[tuple[str, dict]]:
    """(description, httpx request arguments) for requests that must get a 4xx JSON error."""
    img = Image.open(io.BytesIO(photo)).convert("RGB")
    b64 = base64.b64encode(photo).decode()
    frames = [Image.new("RGB", (64, 64), c) for c in ((255, 0, 0), (0, 255, 0))]
    gif = _encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    png = _encode(img, "PNG")
    bad_crc = bytearray(png)
    bad_crc[29] ^= 0xFF  # inside IHDR's CRC
    huge_sof = bytearray(photo)
    sof = next(i for i in range(len(photo) - 1) if photo[i] == 0xFF and photo[i + 1] in (0xC0, 0xC2))
    huge_sof[sof + 5:sof + 9] = b"\xff\xff\xff\xff"  # claims 65535 x 65535
    many = {"instances": [{"b64": b64}] * 17}
    mp_field_only, ct_field_only = _multipart([("note", None, b"just text")])
    mp_17, ct_17 = _multipart([(f"f{i}", f"{i}.jpg", photo) for i in range(17)])
    mp_text, ct_text = _multipart([("file", "dog.jpg", b"not an image at all")])

    def post(body: bytes, content_type: str | None = "image/jpeg", params: dict | None = None,
             headers: dict | None = None) -> dict:
        h = {**({"Content-Type": content_type} if content_type else {}), **(headers or {})}
        return {"content": body, "headers": h, "params": params}

    return [
        ("empty body", post(b"")),
        ("text body", post(b"hello, I am text", "text/plain")),
        ("random bytes as JPEG", post(bytes(np.random.default_rng(0).integers(0, 256, 2000, dtype=np.uint8)))),
        ("truncated JPEG", post(photo[: len(photo) // 2])),
        ("JPEG declared as PDF", post(photo, "application/pdf")),
        ("no content type", post(photo, None)),
        ("SVG", post(b"<svg xmlns='http://www.w3.org/2000/svg'/>", "image/svg+xml")),
        ("icon type", post(photo, "image/x-icon")),
        ("content type 2 KB long", post(photo, "image/" + "x" * 2000)),
        ("body over 6 MB", post(b"\xff\xd8" + b"\0" * (6 * 1024 * 1024 + 10))),
        ("decompression bomb PNG", post(_encode(Image.new("1", (30000, 30000)), "PNG"), "image/png")),
        ("JPEG claiming 65535x65535", post(bytes(huge_sof))),
        ("1x1 PNG", post(_encode(Image.new("RGB", (1, 1)), "PNG"), "image/png")),
        ("4x4000 strip", post(_encode(Image.new("RGB", (4, 4000)), "PNG"), "image/png")),
        ("animated GIF", post(gif, "image/gif")),
        ("PNG with a bad CRC", post(bytes(bad_crc), "image/png")),
        ("PNG header only", post(png[:33], "image/png")),
        ("BMP header only", post(_encode(img, "BMP")[:54], "image/bmp")),
        ("WebP garbage", post(b"RIFF\x10\x00\x00\x00WEBPVP8 " + b"\x01" * 20, "image/webp")),
        ("TIFF garbage", post(b"II*\x00\x08\x00\x00\x00\xff\xff" + b"\x00" * 30, "image/tiff")),
        ("JPEG with broken EXIF", post(jpeg_with_exif(photo, BROKEN_EXIF))),
        ("x-image random bytes", post(b"\x00" * 500, "application/x-image")),
        ("invalid JSON", post(b"{not json", "application/json")),
        ("empty JSON body", post(b"", "application/json")),
        ("JSON with a BOM", post(b"\xef\xbb\xbf{}", "application/json")),
        ("JSON not UTF-8", post(b'{"image": "\xff\xfe"}', "application/json")),
        ("JSON nested 100000 deep", post(b"[" * 100000 + b"]" * 100000, "application/json")),
        ("JSON objects nested 50000 deep", post(b'{"a":' * 50000 + b"1" + b"}" * 50000, "application/json")),
        ("JSON top-level array", post(b"[1, 2, 3]", "application/json")),
        ("JSON number", post(b"42", "application/json")),
        ("JSON string", post(json.dumps(b64).encode(), "application/json")),
        ("JSON null", post(b"null", "application/json")),
        ("image is a number", post(b'{"image": 123}', "application/json")),
        ("image is null", post(b'{"image": null}', "application/json")),
        ("image is a list", post(b'{"image": ["a"]}', "application/json")),
        ("image is huge float", post(b'{"image": 1e999}', "application/json")),
        ("invalid base64", post(json.dumps({"image": "@@@"}).encode(), "application/json")),
        ("base64 of random bytes", post(json.dumps({"image": base64.b64encode(b"\x01" * 300).decode()}).encode(),
                                         "application/json")),
        ("base64 of a truncated JPEG", post(json.dumps({"image": base64.b64encode(photo[:500]).decode()}).encode(),
                                             "application/json")),
        ("no instances", post(b'{"instances": []}', "application/json")),
        ("17 instances", post(json.dumps(many).encode(), "application/json")),
        ("instance b64 is a number", post(b'{"instances": [{"b64": 5}]}', "application/json")),
        ("one good one bad instance", post(json.dumps({"instances": [b64, "@@"]}).encode(), "application/json")),
        ("multipart without boundary", post(b"--x\r\n\r\n", "multipart/form-data")),
        ("multipart garbage", post(b"garbage" * 100, "multipart/form-data; boundary=zzz")),
        ("multipart without a file", post(mp_field_only, ct_field_only)),
        ("multipart with 17 files", post(mp_17, ct_17)),
        ("multipart file not an image", post(mp_text, ct_text)),
        ("multipart empty body", post(b"", "multipart/form-data; boundary=zzz")),
        ("top_k=abc", post(photo, params={"top_k": "abc"})),
        ("top_k=superscript two", post(photo, params={"top_k": "\u00b2"})),
        ("top_k=fullwidth one", post(photo, params={"top_k": "\uff11"})),
        ("top_k 5000 digits", post(photo, params={"top_k": "9" * 5000})),
        ("top_k=0", post(photo, params={"top_k": "0"})),
        ("top_k=-1", post(photo, params={"top_k": "-1"})),
        ("top_k=1.5", post(photo, params={"top_k": "1.5"})),
        ("top_k=empty", post(photo, params={"top_k": ""})),
        ("top_k=1e3", post(photo, params={"top_k": "1e3"})),
        ("Accept top_k=superscript", post(photo, headers={"Accept": "application/json;top_k=\u00b2".encode()})),
        ("Accept top_k=-3", post(photo, headers={"Accept": "application/json;top_k=-3"})),
    ]


def _assert_4xx_json(r: httpx.Response, what: str) -> None:
    assert 400 <= r.status_code < 500, (what, r.status_code, r.text[:300])
    assert r.headers["content-type"].startswith("application/json"), (what, r.headers)
    assert r.json().get("error") or r.json().get("detail"), (what, r.text[:300])


def test_hostile_requests_get_4xx_and_the_server_keeps_serving(ep, photo):
    cases = hostile_requests(photo)
    assert len(cases) >= 60
    for what, kw in cases:
        t0 = time.perf_counter()
        r = httpx.post(f"{ep.url}/invocations", timeout=BOUND, **kw)
        assert time.perf_counter() - t0 < BOUND, what
        _assert_4xx_json(r, what)
        assert httpx.get(f"{ep.url}/ping", timeout=5).status_code == 200, what
    # Other routes and methods: JSON 4xx too.
    for method, path in (("GET", "/invocations"), ("POST", "/nope"), ("PUT", "/ping"), ("DELETE", "/invocations"),
                         ("POST", "/ping"), ("GET", "/%ff%fe")):
        r = httpx.request(method, f"{ep.url}{path}", timeout=BOUND)
        _assert_4xx_json(r, f"{method} {path}")
    assert ep.post(photo).status_code == 200
    assert _metric(ep, 'dogbreed_requests_total{status="500"}') == 0


def test_error_messages_say_what_is_wrong(ep, photo):
    checks = {
        "JSON nested 100000 deep": "nested too deeply",
        "17 instances": "too many images",
        "multipart with 17 files": "malformed multipart",
        "top_k=superscript two": "top_k must be a whole number",
        "top_k 5000 digits": "top_k must be a whole number",
        "JPEG with broken EXIF": "bad image",
        "body over 6 MB": "over 6 MB",
        "4x4000 strip": "too small",
    }
    cases = dict(hostile_requests(photo))
    for what, message in checks.items():
        r = httpx.post(f"{ep.url}/invocations", timeout=BOUND, **cases[what])
        assert message in r.json()["error"], (what, r.text)
    # A top_k above the number of classes gives every class, ordered.
    r = ep.post(photo, params={"top_k": "999"})
    assert r.status_code == 200 and len(r.json()["predictions"]) == 5


def _raw(ep: Endpoint, head: bytes, body: bytes = b"", *, trickle: float = 0.0, shut_write: bool = False,
         wait: float = BOUND) -> bytes:
    """Sends a request over a raw socket (as no HTTP client would) and returns whatever the server answers."""
    s = socket.create_connection(("127.0.0.1", ep.port), timeout=wait)
    try:
        try:
            s.sendall(head)
            if trickle:
                for i in range(len(body)):
                    s.sendall(body[i:i + 1])
                    time.sleep(trickle)
            else:
                s.sendall(body)
            if shut_write:
                s.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):  # the server answered and closed before all was sent
            pass
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except (socket.timeout, ConnectionResetError):
                break
            if not chunk:
                break
            out += chunk
            if b"\r\n\r\n" in out:
                head_part, _, rest = out.partition(b"\r\n\r\n")
                length = next((int(ln.split(b":")[1]) for ln in head_part.split(b"\r\n")
                               if ln.lower().startswith(b"content-length:")), None)
                if length is not None and len(rest) >= length:
                    break
        return out
    finally:
        s.close()


def _status(raw: bytes) -> int:
    return int(raw.split(b" ", 2)[1]) if raw.startswith(b"HTTP/1.1 ") else 0


def test_short_slow_and_half_closed_bodies(ep, photo):
    head = (f"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
            f"Content-Length: {len(photo)}\r\n\r\n").encode()
    # A body shorter than its Content-Length, the connection kept open: 408 once the body timeout passes.
    t0 = time.perf_counter()
    raw = _raw(ep, head, photo[:1000])
    assert _status(raw) == 408 and b"not received within" in raw, raw[:200]
    assert BODY_TIMEOUT - 0.5 < time.perf_counter() - t0 < BOUND
    # A body trickling in, a byte every 0.1 s: 408 too, not a connection held for minutes.
    raw = _raw(ep, head, photo[:200], trickle=0.1)
    assert _status(raw) in (408, 0)
    # Half-closed after a partial body: nothing left to read; the server must not hang or count an error.
    t0 = time.perf_counter()
    _raw(ep, head, photo[:1000], shut_write=True)
    assert time.perf_counter() - t0 < BOUND
    # A client that disconnects mid-body.
    s = socket.create_connection(("127.0.0.1", ep.port))
    s.sendall(head + photo[:100])
    s.close()
    time.sleep(0.5)
    # Protocol-level garbage is refused by the HTTP layer; the server lives on.
    for junk in (b"GARBAGE\r\n\r\n", b"POST /invocations HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
                 b"POST /invocations HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                 b"POST /invocations HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 200_000 + b"\r\n\r\n"):
        raw = _raw(ep, junk, wait=5)
        assert _status(raw) == 0 or 400 <= _status(raw) < 500, raw[:200]
    # A chunked body over the limit is cut off with 413.
    chunked = b"".join(b"%x\r\n" % len(c) + c + b"\r\n" for c in [b"\0" * 1_000_000] * 7) + b"0\r\n\r\n"
    raw = _raw(ep, b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
                   b"Transfer-Encoding: chunked\r\n\r\n", chunked)
    assert _status(raw) == 413
    assert httpx.get(f"{ep.url}/ping").status_code == 200 and ep.post(photo).status_code == 200
    assert _metric(ep, 'dogbreed_requests_total{status="500"}') == 0
    log = run_cli("logs", "ep-hostile").stdout
    assert "Traceback" not in log and "ERROR" not in log


def test_odd_but_valid_images_are_answered(ep, photo):
    img = Image.open(io.BytesIO(photo)).convert("RGB")
    upright = np.array(ep.post(photo).json())
    # 16-bit greyscale PNG: scaled to 8 bits, not clipped to white.
    grey16 = (np.asarray(img.convert("L"), dtype=np.uint16) * 257)
    r16 = ep.post(_encode(Image.fromarray(grey16), "PNG"), "image/png")
    r8 = ep.post(_encode(img.convert("L"), "PNG"), "image/png")
    assert r16.status_code == 200 and np.abs(np.array(r16.json()) - np.array(r8.json())).max() < 0.02
    # A camera's 2-frame MPO: the first frame is the photo.
    mpo = _encode(img, "MPO", save_all=True, append_images=[Image.new("RGB", img.size, (0, 0, 0))])
    r = ep.post(mpo)
    assert r.status_code == 200 and int(np.argmax(r.json())) == int(upright.argmax())
    # A phone-size photo (decoded at reduced scale) predicts what the small one does.
    big = _encode(img.resize((4000, 3000), Image.BICUBIC), "JPEG", quality=90)
    r = ep.post(big)
    assert r.status_code == 200 and int(np.argmax(r.json())) == int(upright.argmax())


def test_large_images_do_not_stall_ordinary_photos(ep, photo):
    """Costly PNGs are decoded in a lane of their own: ordinary photos sent meanwhile are answered quickly."""
    import concurrent.futures

    costly = _encode(Image.new("RGB", (6000, 6000), (120, 90, 60)), "PNG")
    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        heavy = [pool.submit(httpx.post, f"{ep.url}/invocations", content=costly,
                             headers={"Content-Type": "image/png"}, timeout=120) for _ in range(8)]
        time.sleep(0.5)
        t0 = time.perf_counter()
        light = [ep.post(photo).status_code for _ in range(5)]
        light_s = time.perf_counter() - t0
        codes = sorted(f.result().status_code for f in heavy)
    assert light == [200] * 5
    assert light_s < 10, f"ordinary photos waited {light_s:.1f} s behind large ones"
    assert set(codes) <= {200, 429} and 200 in codes and 429 in codes, codes


def _metric(ep: Endpoint, name: str) -> float:
    for line in httpx.get(f"{ep.url}/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


def test_api_key_is_compared_safely_and_never_on_the_command_line(served_model, photo, tmp_path):
    import os
    import stat

    import psutil

    key_file = tmp_path / "key"
    key_file.write_text("s3cret-k3y\n")
    e = Endpoint("ep-keyfile", "dogs5", "--api-key-file", str(key_file))
    try:
        for headers in ({}, {"X-Api-Key": "wrong"}, {"Authorization": "s3cret-k3y"},
                        {"Authorization": "Bearer"}, {"Authorization": "Basic s3cret-k3y"},
                        {"X-Api-Key": "s3cret-k3"}, {"X-Api-Key": "s3cret-k3y\u00e9".encode()}):
            r = e.post(photo, headers=headers)
            assert r.status_code == 401, headers
        assert e.post(photo, headers={"Authorization": "Bearer s3cret-k3y"}).status_code == 200
        assert e.post(photo, headers={"X-Api-Key": "s3cret-k3y"}).status_code == 200
        for path in ("/docs", "/redoc", "/openapi.json"):
            assert httpx.get(e.url + path).status_code == 404
        serve_json = Path(os.environ["DOGBREED_HOME"]) / "endpoints" / "ep-keyfile" / "serve.json"
        assert stat.S_IMODE(serve_json.stat().st_mode) == 0o600
        for p in psutil.process_iter(["cmdline"]):
            assert "s3cret-k3y" not in " ".join(p.info["cmdline"] or []), p.info["cmdline"]
    finally:
        e.stop()


def test_deploy_port_mistakes_are_found_before_the_model_loads(served_model):
    r = run_cli("deploy", "--model", "dogs5", "--endpoint-name", "ep-port", "--port", "99999")
    assert r.returncode == 2 and "--port 99999 is not a port number" in r.stderr
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        t0 = time.perf_counter()
        r = run_cli("deploy", "--model", "dogs5", "--endpoint-name", "ep-port", "--port", str(busy.getsockname()[1]))
        assert r.returncode == 2 and "already in use" in r.stderr and "Traceback" not in r.stderr
        assert time.perf_counter() - t0 < 10


def test_a_flood_of_bad_requests_never_blocks_on_an_unread_console(ep, photo):
    """The endpoint's stdout is a pipe nobody reads (as here): refused requests are logged to its log file, not the
    console, so the server never blocks on a full pipe (a few thousand lines would fill it)."""
    with httpx.Client(timeout=10) as c:
        for _ in range(1500):
            assert c.post(f"{ep.url}/invocations", content=b"x", params={"top_k": "abc"},
                          headers={"Content-Type": "image/jpeg"}).status_code == 400
    assert ep.post(photo).status_code == 200
    assert "invocation refused (400)" in run_cli("logs", "ep-hostile").stdout


def test_docs_need_the_key_and_the_key_can_come_from_the_environment(served_model, photo):
    """`deploy --docs` with a key: the API's documentation is behind the key like everything else; the key given
    as DOGBREED_API_KEY (never on the command line) is the one asked for."""
    e = Endpoint("ep-docs", "dogs5", "--docs", env={"DOGBREED_API_KEY": "env-k3y"})
    try:
        for path in ("/docs", "/redoc", "/openapi.json"):
            for headers in ({}, {"X-Api-Key": "wrong"}, {"Authorization": "Bearer env-k3"}):
                r = httpx.get(e.url + path, headers=headers, timeout=BOUND)
                _assert_4xx_json(r, f"{path} {headers}")
                assert r.status_code == 401, (path, headers)
            for headers in ({"X-Api-Key": "env-k3y"}, {"Authorization": "Bearer env-k3y"}):
                r = httpx.get(e.url + path, headers=headers, timeout=BOUND)
                assert r.status_code == 200, (path, headers, r.text[:200])
        spec = httpx.get(e.url + "/openapi.json", headers={"X-Api-Key": "env-k3y"}, timeout=BOUND).json()
        assert "/invocations" in spec["paths"]
        assert "swagger" in httpx.get(e.url + "/docs", headers={"X-Api-Key": "env-k3y"}).text.lower()
        assert e.post(photo).status_code == 401
        assert e.post(photo, headers={"X-Api-Key": "env-k3y"}).status_code == 200
        assert "env-k3y" not in " ".join(e.proc.args)  # the key never went on a command line
    finally:
        e.stop()

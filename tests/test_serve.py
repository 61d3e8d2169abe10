"""The real endpoint: `dogbreed deploy` in a subprocess on 127.0.0.1, talked to over HTTP."""

from __future__ import annotations

import base64
import io
import json
import os
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from conftest import Endpoint, run_cli
from dogbreed.train.job_evaluation import evaluate_job


@pytest.fixture(scope="module")
def endpoint(served_model):
    ep = Endpoint("ep-test", "dogs5@prod")
    yield ep
    ep.stop()


def _photos(dogs_slice: Path, split: str = "test") -> list[Path]:
    return sorted((dogs_slice / split).rglob("*.jpg"))


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def test_every_content_type(endpoint, dogs_slice):
    photo = _photos(dogs_slice)[0].read_bytes()
    png = _png(Image.open(io.BytesIO(photo)))
    responses = [
        endpoint.post(photo, "image/jpeg"),
        endpoint.post(photo, "application/x-image"),
        endpoint.post(png, "image/png"),
        endpoint.post(json.dumps({"image": base64.b64encode(photo).decode()}).encode(), "application/json"),
        httpx.post(f"{endpoint.url}/invocations", files={"file": ("dog.jpg", photo, "image/jpeg")}, timeout=60),
    ]
    for r in responses:
        assert r.status_code == 200, r.text
        probs = r.json()
        assert len(probs) == 5 and sum(probs) == pytest.approx(1, abs=1e-3)
    assert np.argmax(responses[0].json()) == np.argmax(responses[2].json())
    # Several instances in one JSON request answer with a list.
    many = {"instances": [{"b64": base64.b64encode(photo).decode()}] * 3}
    r = endpoint.post(json.dumps(many).encode(), "application/json")
    assert r.status_code == 200 and len(r.json()) == 3


def test_top_k_with_readable_names(endpoint, dogs_slice):
    pug = next(p for p in _photos(dogs_slice) if "pug" in p.parent.name)
    r = endpoint.post(pug.read_bytes(), params={"top_k": 3})
    preds = r.json()["predictions"]
    assert len(preds) == 3 and preds[0]["label"] == "pug" and preds[0]["probability"] > 0.5
    r = endpoint.post(pug.read_bytes(), headers={"Accept": "application/json;top_k=2"})
    assert len(r.json()["predictions"]) == 2


def test_bad_requests_get_4xx_and_the_server_keeps_serving(endpoint, dogs_slice, tmp_path):
    photo = _photos(dogs_slice)[0].read_bytes()
    big = Image.new("1", (30000, 30000))
    bomb = _png(big)
    frames = [Image.new("RGB", (64, 64), c) for c in ((255, 0, 0), (0, 255, 0))]
    gif = io.BytesIO()
    frames[0].save(gif, "GIF", save_all=True, append_images=frames[1:])
    cases = [
        (b"", "image/jpeg", 400, "empty"),
        (b"hello, I am text", "text/plain", 415, "unsupported content type"),
        (os.urandom(2000), "image/jpeg", 400, "not an image"),
        (photo[: len(photo) // 2], "image/jpeg", 400, "truncated"),
        (photo, "application/pdf", 415, "unsupported content type"),
        (photo, None, 415, "unsupported content type"),
        (os.urandom(6 * 1024 * 1024 + 10), "image/jpeg", 413, "over 6 MB"),
        (bomb, "image/png", 400, "too large"),
        (_png(Image.new("RGB", (1, 1))), "image/png", 400, "too small"),
        (gif.getvalue(), "image/gif", 400, "animated"),
        (b"{not json", "application/json", 400, "not valid JSON"),
        (json.dumps({"image": "@@@"}).encode(), "application/json", 400, "base64"),
    ]
    for body, ctype, status, message in cases:
        r = endpoint.post(body, ctype)
        assert r.status_code == status, (message, r.text)
        assert message in r.json()["error"]
    r = endpoint.post(photo, params={"top_k": "abc"})
    assert r.status_code == 400
    assert httpx.get(f"{endpoint.url}/ping").status_code == 200
    assert endpoint.post(photo).status_code == 200


def test_grey_cmyk_rgba_and_exif_rotated_photos(endpoint, dogs_slice):
    pug = next(p for p in _photos(dogs_slice) if "pug" in p.parent.name)
    img = Image.open(pug).convert("RGB")
    upright = np.array(endpoint.post(pug.read_bytes()).json())
    for mode in ("L", "CMYK", "RGBA"):
        buf = io.BytesIO()
        img.convert(mode).save(buf, "JPEG" if mode != "RGBA" else "PNG")
        r = endpoint.post(buf.getvalue(), "image/jpeg" if mode != "RGBA" else "image/png")
        assert r.status_code == 200, (mode, r.text)
    # Stored rotated, with EXIF orientation 6 saying "turn me 90 degrees clockwise to view".
    rotated = img.transpose(Image.Transpose.ROTATE_90)
    exif = rotated.getexif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    rotated.save(buf, "JPEG", quality=95, exif=exif)
    turned = np.array(endpoint.post(buf.getvalue()).json())
    assert turned.argmax() == upright.argmax()
    assert np.abs(turned - upright).max() < 0.05  # only JPEG re-encoding differs


def test_endpoint_predictions_equal_offline_evaluation(endpoint, dogs_slice):
    ev, _ = evaluate_job("serve-job", str(dogs_slice), "test")
    photos = _photos(dogs_slice)  # layout order: class folders sorted, files sorted, as the evaluation's
    served = [int(np.argmax(endpoint.post(p.read_bytes()).json())) for p in photos]
    assert served == ev.predictions.tolist()


def test_not_a_dog_and_uncertain_breeds(endpoint, dogs_slice, tmp_path):
    """The default preset's model judges by its backbone's ImageNet classifier: a cat is no dog."""
    from test_presets import non_dog_photos

    cat = non_dog_photos(tmp_path)[1]
    body = endpoint.post(cat.read_bytes(), params={"top_k": 3}).json()
    assert body["dog"] is False and body["dog_score"] < body["dog_threshold"] and len(body["predictions"]) == 3
    dog = _photos(dogs_slice)[0].read_bytes()
    body = endpoint.post(dog, params={"top_k": 3}).json()
    assert body["dog"] is True and body["uncertain"] is False and body["dog_score"] >= body["dog_threshold"]
    both = {"instances": [{"b64": base64.b64encode(b).decode()} for b in (cat.read_bytes(), dog)]}
    body = endpoint.post(json.dumps(both).encode(), "application/json", params={"top_k": 2}).json()
    assert body["dog"] == [False, True] and len(body["predictions"]) == 2
    # Without top_k the answer stays SageMaker's list of probabilities.
    assert len(endpoint.post(cat.read_bytes()).json()) == 5


def test_metrics_page_and_model_info(endpoint):
    text = httpx.get(f"{endpoint.url}/metrics").text
    assert "dogbreed_requests_total" in text and "dogbreed_request_latency_seconds_bucket" in text
    assert "dogbreed_batch_size_bucket" in text
    info = httpx.get(f"{endpoint.url}/model").json()
    assert info["backend"] == "onnx" and len(info["classes"]) == 5
    page = httpx.get(endpoint.url + "/").text
    assert "<h1>dogbreed endpoint" in page


def test_concurrent_requests_are_micro_batched(endpoint, dogs_slice):
    import concurrent.futures

    photo = _photos(dogs_slice)[0].read_bytes()
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        codes = list(pool.map(lambda _: endpoint.post(photo).status_code, range(48)))
    assert codes == [200] * 48
    text = httpx.get(f"{endpoint.url}/metrics").text
    sums = {line.split()[0]: float(line.split()[1]) for line in text.splitlines()
            if line.startswith("dogbreed_batch_size_")}
    # More images than model calls: some calls served several requests at once.
    assert sums["dogbreed_batch_size_sum"] > sums["dogbreed_batch_size_count"]


def test_endpoint_cli_records_and_logs(endpoint):
    listed = json.loads(run_cli("endpoints", "list", "--json").stdout)
    assert any(e["name"] == "ep-test" and e["status"] == "InService" for e in listed)
    d = json.loads(run_cli("endpoints", "describe", "ep-test", "--json").stdout)
    assert d["url"] == endpoint.url and d["model"] == "dogs5@prod" and d["onnx_parity_error"] < 1e-4
    assert "endpoint ep-test serving dogs5@prod" in run_cli("logs", "ep-test").stdout
    r = run_cli("endpoints", "describe", "nope")
    assert r.returncode == 2 and "no endpoint named 'nope'" in r.stderr


def test_predict_cli_via_endpoint_and_model(endpoint, dogs_slice, tmp_path):
    from PIL import Image

    pug = next(p for p in _photos(dogs_slice) if "pug" in p.parent.name)
    # The same photo as a 12-megapixel phone JPEG: the endpoint decodes it at reduced scale, `predict --model`
    # through the same decoder; both must give the same answer.
    phone = tmp_path / "pug-phone.jpg"
    Image.open(pug).convert("RGB").resize((4000, 3000), Image.BICUBIC).save(phone, quality=90)
    via_ep = json.loads(run_cli("predict", str(pug), str(phone), "--endpoint", endpoint.url, "--json").stdout)
    via_model = json.loads(run_cli("predict", str(pug), str(phone), "--model", "dogs5:1", "--json").stdout)
    for ep_answer, model_answer in zip(via_ep, via_model, strict=True):
        assert ep_answer["top_k"][0]["label"] == model_answer["top_k"][0]["label"] == "pug"
        assert ep_answer["top_k"][0]["probability"] == pytest.approx(model_answer["top_k"][0]["probability"],
                                                                     abs=1e-4)


def test_api_key(served_model, dogs_slice):
    ep = Endpoint("ep-key", "dogs5", "--api-key", "s3cret", "--workers", "2")  # two worker processes
    try:
        photo = _photos(dogs_slice)[0].read_bytes()
        assert ep.post(photo).status_code == 401
        assert ep.post(photo, headers={"X-Api-Key": "wrong"}).status_code == 401
        assert ep.post(photo, headers={"X-Api-Key": "s3cret"}).status_code == 200
        assert ep.post(photo, headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert httpx.get(f"{ep.url}/metrics").status_code == 401
        metrics = httpx.get(f"{ep.url}/metrics", headers={"X-Api-Key": "s3cret"}).text
        # Summed over both workers: 2 answered 200, 2 refused with 401.
        assert 'dogbreed_requests_total{status="200"} 2.0' in metrics
        assert 'dogbreed_requests_total{status="401"} 2.0' in metrics
    finally:
        ep.stop()
    assert "ep-key" not in run_cli("endpoints", "list").stdout


def test_models_cli(served_model):
    models = json.loads(run_cli("models", "list", "--json").stdout)
    dogs5 = next(m for m in models if m["name"] == "dogs5")
    assert dogs5["aliases"] == {"prod": "1"} or dogs5["aliases"] == {"prod": 1}
    d = json.loads(run_cli("models", "describe", "dogs5", "--json").stdout)
    tags = d["versions"][0]["tags"]
    assert tags["dogbreed.job"] == "serve-job" and json.loads(tags["dogbreed.hyperparameters"])["epochs"] == 5
    assert "train" in json.loads(tags["dogbreed.data"])
    r = run_cli("deploy", "--model", "nosuchmodel", "--endpoint-name", "x", "--port", "0")
    assert r.returncode == 2 and "no registered model version for 'nosuchmodel'" in r.stderr


def test_batch_transform_is_resumable(served_model, dogs_slice, tmp_path):
    out = tmp_path / "out"
    (tmp_path / "in").mkdir()
    photos = _photos(dogs_slice)
    for p in photos:
        (tmp_path / "in" / p.name).symlink_to(p)
    (tmp_path / "in" / "broken.jpg").write_bytes(b"nope")
    r = run_cli("batch-transform", "--model", "dogs5@prod", "--input", str(tmp_path / "in"), "--output", str(out),
                "--json")
    assert r.returncode == 0, r.stderr
    lines = (out / "predictions.jsonl").read_text().splitlines()
    assert len(lines) == len(photos) + 1
    first = [json.loads(ln) for ln in lines]
    assert {"source", "prediction"} <= set(first[1]) and len(first[1]["prediction"]) == 5
    assert next(x for x in first if x["source"] == "broken.jpg")["error"] == "not an image"
    # A crash after 7 lines, in the middle of writing the 8th: the rerun redoes only what is missing.
    (out / "predictions.jsonl").write_text("\n".join(lines[:7]) + "\n" + lines[7][:20])
    r = run_cli("batch-transform", "--model", "dogs5@prod", "--input", str(tmp_path / "in"), "--output", str(out),
                "--json")
    summary = json.loads(r.stdout)
    assert summary["skipped_done"] == 7 and summary["processed"] == len(photos) + 1 - 7
    again = [json.loads(ln) for ln in (out / "predictions.jsonl").read_text().splitlines()]
    assert sorted(x["source"] for x in again) == sorted(x["source"] for x in first)
    assert {x["source"]: x.get("prediction") for x in again} == {x["source"]: x.get("prediction") for x in first}


def test_web_page_in_headless_chromium(endpoint, dogs_slice, tmp_path):
    from playwright.sync_api import sync_playwright

    pug = next(p for p in _photos(dogs_slice) if "pug" in p.parent.name)
    errors: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        page = browser.new_page()
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(endpoint.url + "/")
        page.set_input_files("#file", str(pug.resolve()))
        page.wait_for_selector(".row", timeout=30000)
        rows = page.locator(".row .name").all_inner_texts()
        page.screenshot(path=str(tmp_path / "page.png"))
        from test_presets import non_dog_photos

        page.set_input_files("#file", str(non_dog_photos(tmp_path / "nd")[1]))
        page.wait_for_selector(".nodog", timeout=30000)
        no_dog = page.locator(".nodog").inner_text()
        if os.environ.get("DOGBREED_SCREENSHOT"):
            page.screenshot(path=os.environ["DOGBREED_SCREENSHOT"])
        browser.close()
    assert rows[0] == "pug" and len(rows) == 5
    assert no_dog.startswith("No dog found (dog score")
    assert errors == []
    assert (tmp_path / "page.png").stat().st_size > 10000

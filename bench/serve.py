"""Serving benchmark, a bounded load from loopback: dogbreed's endpoint against a plain FastAPI + PyTorch endpoint.

    .venv/bin/python bench/serve.py [--seconds 15]
    .venv/bin/python bench/serve.py --presets fast,balanced,best   # -> bench/results/serve_presets.json

All serve the same trained model (a 10-breed head, the default preset's backbone), on the shared 224-pixel photos and
on 12-megapixel phone-size JPEGs made from them. Baselines: a plain FastAPI + PyTorch endpoint with a full decode and
timm's transform, once with the mirror view averaged in (two passes: the same outputs as a flip model) and once
with one forward pass per request. Figures: p50/p99 latency with one client, throughput with 8 (and 32) concurrent
clients, errors, and the endpoint's p50 overhead over the bare model call (decode + predict in-process).
Writes bench/results/serve.json.

With --presets, each quality preset's model (same slice, same photos) is served by dogbreed's endpoint in turn, and
its throughput at 8 clients is compared with the `fast` preset's endpoint (EfficientNet-Lite0 with test-time flip,
the endpoint the presets' serving target is set against: at most 1.3x its time per request).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from statistics import median
from typing import Iterator

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stdout.read() if proc.stdout else ''}")
        try:
            if httpx.get(f"{url}/ping", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError("server did not start")


def single_client(url: str, photos: list[bytes], n: int) -> dict:
    lat, errors = [], 0
    with httpx.Client(timeout=30) as c:
        for i in range(n):
            t = time.perf_counter()
            r = c.post(f"{url}/invocations", content=photos[i % len(photos)], headers={"Content-Type": "image/jpeg"})
            lat.append(time.perf_counter() - t)
            errors += r.status_code != 200
    return {"p50_ms": round(float(np.percentile(lat, 50)) * 1000, 2),
            "p99_ms": round(float(np.percentile(lat, 99)) * 1000, 2), "requests": n, "errors": errors}


def concurrent_load(url: str, photos: list[bytes], clients: int, seconds: float, max_requests: int) -> dict:
    done, errors, lock = [0], [0], threading.Lock()
    stop_at = time.time() + seconds

    def worker(k: int) -> None:
        with httpx.Client(timeout=60) as c:
            i = k
            while time.time() < stop_at:
                with lock:
                    if done[0] + errors[0] >= max_requests:
                        return
                r = c.post(f"{url}/invocations", content=photos[i % len(photos)],
                           headers={"Content-Type": "image/jpeg"})
                with lock:
                    if r.status_code == 200:
                        done[0] += 1
                    else:
                        errors[0] += 1
                i += clients

    t = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    elapsed = time.perf_counter() - t
    return {"clients": clients, "requests": done[0], "errors": errors[0], "seconds": round(elapsed, 2),
            "throughput_rps": round(done[0] / elapsed, 2)}


def phone_size(photo: bytes, quality: int = 90) -> bytes:
    """A 12-megapixel phone-style JPEG (4000x3000) made by upscaling a shared photo."""
    import io

    from PIL import Image

    img = Image.open(io.BytesIO(photo)).convert("RGB").resize((4000, 3000), Image.BICUBIC)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


@contextmanager
def running_server(cmd: list[str], env: dict, endpoint: str | None = None) -> Iterator[str]:
    """Starts `cmd` ("{port}" filled in with a free port), waits until it answers /ping and yields its URL; at the
    end deletes the dogbreed endpoint named `endpoint`, if any, and stops the process."""
    from dogbreed.serve.deploy import free_port

    port = free_port()
    proc = subprocess.Popen([c.replace("{port}", str(port)) for c in cmd], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, proc)
        yield url
    finally:
        if endpoint:
            subprocess.run([sys.executable, "-m", "dogbreed.cli", "endpoints", "delete", endpoint],
                           capture_output=True, env=env)
        proc.terminate()
        proc.wait(timeout=30)


def bench_server(url: str, photos: list[bytes], seconds: float, max_requests: int, clients: tuple[int, ...]) -> dict:
    single_client(url, photos, 5)  # warm-up
    r = {"single_client": single_client(url, photos, 40)}
    for n in clients:
        r[f"clients_{n}"] = concurrent_load(url, photos, n, seconds, max_requests)
    return r


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "datasets" / "stanford-dogs-120"))
    ap.add_argument("--seconds", type=float, default=15)
    ap.add_argument("--max-requests", type=int, default=600)
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "serve.json"))
    ap.add_argument("--presets", help="compare these presets' endpoints instead (writes serve_presets.json)")
    args = ap.parse_args()
    if args.presets:
        return compare_presets(args)
    home = tempfile.mkdtemp(prefix="dogbreed-bench-")
    os.environ["DOGBREED_HOME"] = home
    sys.path.insert(0, str(REPO / "tests"))
    from conftest import make_slice

    from dogbreed.config import Hyperparameters
    from dogbreed.serve.api import BreedClassifierAPI
    from dogbreed.train.job import TrainingJobSpec, run_training_job
    from dogbreed.jobs.records import job_dir

    classes = tuple(sorted(p.name for p in (Path(args.data) / "train").iterdir())[:10])
    root = make_slice(Path(tempfile.mkdtemp()) / "slice", classes, 10, 4)
    rec = run_training_job(TrainingJobSpec("bench-serve", str(root), Hyperparameters(epochs=2), track=False,
                                           progress=False))
    model_dir = job_dir("bench-serve") / "model"
    photo_sets = serve_photo_sets(Path(args.data))

    api = BreedClassifierAPI(model_dir).setup()
    results: dict = {"model": rec.name, "serving_flip": api.card.test_time_flip,
                     "phone_photo_kb_mean": round(float(np.mean([len(p) for p in photo_sets[
                         "photos_phone_4000x3000"]])) / 1024, 1)}
    for set_name, photos in photo_sets.items():
        bare = []
        for i in range(30):
            t = time.perf_counter()
            api.predict([api.decode(photos[i % len(photos)])])
            bare.append(time.perf_counter() - t)
        results[f"bare_model_p50_ms_{set_name}"] = round(median(bare[5:]) * 1000, 2)

    env = {**os.environ, "BASELINE_MODEL_DIR": str(model_dir), "PYTHONPATH": str(REPO)}
    baseline = [sys.executable, "-m", "uvicorn", "bench.baseline_app:app", "--host", "127.0.0.1", "--port", "{port}",
                "--log-level", "warning"]
    servers = {
        "dogbreed": ([sys.executable, "-m", "dogbreed.cli", "deploy", "--model", "job:bench-serve",
                      "--endpoint-name", "bench", "--port", "{port}"], {}),
        "baseline_flip": (baseline, {"BASELINE_FLIP": "1"}),  # the same outputs as a flip model: two passes
        "baseline_single_pass": (baseline, {"BASELINE_FLIP": "0"}),  # one forward pass, full decode
    }
    for name, (cmd, extra_env) in servers.items():
        with running_server(cmd, {**env, **extra_env}, "bench" if name == "dogbreed" else None) as url:
            results[name] = {
                set_name: bench_server(url, photos, args.seconds, args.max_requests,
                                       (8, 32) if set_name == "photos_224" else (8,))
                for set_name, photos in photo_sets.items()}
            print(name, json.dumps(results[name]), flush=True)
    d = results["dogbreed"]
    ratios = {}
    for set_name in photo_sets:
        for base in ("baseline_flip", "baseline_single_pass"):
            b = results[base][set_name]
            ratios[f"{set_name}_throughput_8_clients_vs_{base}"] = round(
                d[set_name]["clients_8"]["throughput_rps"] / b["clients_8"]["throughput_rps"], 3)
        ratios[f"{set_name}_p50_overhead_over_bare_model_ms"] = round(
            d[set_name]["single_client"]["p50_ms"] - results[f"bare_model_p50_ms_{set_name}"], 2)
        ratios[f"{set_name}_p99_over_p50_single_client"] = round(
            d[set_name]["single_client"]["p99_ms"] / d[set_name]["single_client"]["p50_ms"], 3)
    ratios["photos_224_throughput_32_clients_vs_baseline_flip"] = round(
        d["photos_224"]["clients_32"]["throughput_rps"] /
        results["baseline_flip"]["photos_224"]["clients_32"]["throughput_rps"], 3)
    results["ratios"] = ratios
    results["errors_total_dogbreed"] = sum(v["errors"] for s in d.values() for v in s.values())
    results["targets"] = {"photos_phone_4000x3000_throughput_8_clients_vs_baseline_single_pass": ">= 4.0",
                          "photos_224_throughput_8_clients_vs_baseline_single_pass": ">= 2.0",
                          "p99_over_p50_single_client": "< 2", "p50_overhead_ms": "< 5", "errors": "0"}
    results["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    print(json.dumps(ratios, indent=1), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1))


def serve_photo_sets(data: Path) -> dict[str, list[bytes]]:
    photo_sets = {"photos_224": [p.read_bytes() for p in sorted((data / "valid").rglob("*.jpg"))[:64]]}
    photo_sets["photos_phone_4000x3000"] = [phone_size(p) for p in photo_sets["photos_224"][:16]]
    return photo_sets


def compare_presets(args: argparse.Namespace) -> None:
    """Each preset's model behind dogbreed's endpoint, one after another, at 8 clients on both photo sets."""
    os.environ["DOGBREED_HOME"] = tempfile.mkdtemp(prefix="dogbreed-bench-")
    sys.path.insert(0, str(REPO / "tests"))
    from conftest import make_slice

    from dogbreed.config import Hyperparameters
    from dogbreed.train.job import TrainingJobSpec, run_training_job

    data = Path(args.data)
    classes = tuple(sorted(p.name for p in (data / "train").iterdir())[:10])
    root = make_slice(Path(tempfile.mkdtemp()) / "slice", classes, 10, 4)
    photo_sets = serve_photo_sets(data)
    presets = args.presets.split(",")
    results: dict = {"how": "each preset's model (10 breeds) behind `dogbreed deploy`, served in turn; throughput "
                            "at 8 clients; time per request against the fast preset's endpoint", "presets": {}}
    for preset in presets:
        rec = run_training_job(TrainingJobSpec(f"serve-{preset}", str(root), Hyperparameters(preset=preset, epochs=2),
                                               track=False, progress=False))
        assert rec.status == "Completed", rec.failure_reason
    for preset in presets:
        cmd = [sys.executable, "-m", "dogbreed.cli", "deploy", "--model", f"job:serve-{preset}", "--endpoint-name",
               f"bench-{preset}", "--port", "{port}"]
        with running_server(cmd, dict(os.environ), f"bench-{preset}") as url:
            results["presets"][preset] = {set_name: bench_server(url, photos, args.seconds, args.max_requests, (8,))
                                          for set_name, photos in photo_sets.items()}
            print(preset, json.dumps(results["presets"][preset]), flush=True)
    if "fast" in presets:
        fast = results["presets"]["fast"]
        results["time_per_request_vs_fast"] = {
            preset: {set_name: round(fast[set_name]["clients_8"]["throughput_rps"] /
                                     results["presets"][preset][set_name]["clients_8"]["throughput_rps"], 3)
                     for set_name in photo_sets} for preset in presets}
        results["target"] = "<= 1.3 for every preset"
    results["errors_total"] = sum(v["errors"] for r in results["presets"].values() for s in r.values()
                                  for v in s.values())
    results["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    print(json.dumps(results.get("time_per_request_vs_fast"), indent=1), flush=True)
    out = Path(args.out).with_name("serve_presets.json")
    out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()

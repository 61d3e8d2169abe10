"""Serving benchmark, a bounded load from loopback: dogbreed's endpoint against a plain FastAPI + PyTorch endpoint.

    .venv/bin/python bench/serve.py [--seconds 15]

Both serve the same trained model (a 10-breed head on EfficientNet-Lite0). Figures: p50/p99 latency with one
client, throughput with 8 and 32 concurrent clients, errors, and the endpoint's p50 overhead over the bare model
call (decode + predict in-process). Writes bench/results/serve.json.
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
from pathlib import Path
from statistics import median

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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "datasets" / "stanford-dogs-120"))
    ap.add_argument("--seconds", type=float, default=15)
    ap.add_argument("--max-requests", type=int, default=600)
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "serve.json"))
    args = ap.parse_args()
    home = tempfile.mkdtemp(prefix="dogbreed-bench-")
    os.environ["DOGBREED_HOME"] = home
    sys.path.insert(0, str(REPO / "tests"))
    from conftest import make_slice

    from dogbreed.config import Hyperparameters
    from dogbreed.serve.api import BreedClassifierAPI
    from dogbreed.serve.deploy import free_port
    from dogbreed.train.job import TrainingJobSpec, run_training_job
    from dogbreed.jobs.records import job_dir

    classes = tuple(sorted(p.name for p in (Path(args.data) / "train").iterdir())[:10])
    root = make_slice(Path(tempfile.mkdtemp()) / "slice", classes, 10, 4)
    rec = run_training_job(TrainingJobSpec("bench-serve", str(root), Hyperparameters(epochs=2), track=False,
                                           progress=False))
    model_dir = job_dir("bench-serve") / "model"
    photos = [p.read_bytes() for p in sorted((Path(args.data) / "valid").rglob("*.jpg"))[:64]]

    api = BreedClassifierAPI(model_dir).setup()
    bare = []
    for i in range(40):
        t = time.perf_counter()
        api.predict([api.decode(photos[i % len(photos)])])
        bare.append(time.perf_counter() - t)
    bare_p50 = median(bare[5:]) * 1000

    results: dict = {"model": rec.name, "bare_model_p50_ms": round(bare_p50, 2)}
    env = {**os.environ, "BASELINE_MODEL_DIR": str(model_dir), "PYTHONPATH": str(REPO)}
    servers = {
        "dogbreed": [sys.executable, "-m", "dogbreed.cli", "deploy", "--model", "job:bench-serve",
                     "--endpoint-name", "bench", "--port", "{port}"],
        "baseline": [sys.executable, "-m", "uvicorn", "bench.baseline_app:app", "--host", "127.0.0.1",
                     "--port", "{port}", "--log-level", "warning"],
    }
    for name, cmd in servers.items():
        port = free_port()
        proc = subprocess.Popen([c.replace("{port}", str(port)) for c in cmd], cwd=REPO, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_ready(url, proc)
            single_client(url, photos, 5)  # warm-up
            r = {"single_client": single_client(url, photos, 60)}
            for clients in (8, 32):
                r[f"clients_{clients}"] = concurrent_load(url, photos, clients, args.seconds, args.max_requests)
            results[name] = r
            print(name, r, flush=True)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    d, b = results["dogbreed"], results["baseline"]
    results["ratios"] = {
        "throughput_8_clients": round(d["clients_8"]["throughput_rps"] / b["clients_8"]["throughput_rps"], 3),
        "throughput_32_clients": round(d["clients_32"]["throughput_rps"] / b["clients_32"]["throughput_rps"], 3),
        "p50_single_client": round(d["single_client"]["p50_ms"] / b["single_client"]["p50_ms"], 3),
    }
    results["dogbreed_p50_overhead_over_bare_model_ms"] = round(d["single_client"]["p50_ms"] - bare_p50, 2)
    results["errors_total_dogbreed"] = sum(v["errors"] for k, v in d.items())
    results["targets"] = {"throughput_8_clients": ">= 2.0", "p50_overhead_ms": "< 5", "errors": "0"}
    results["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    print(results["ratios"], results["dogbreed_p50_overhead_over_bare_model_ms"], flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()

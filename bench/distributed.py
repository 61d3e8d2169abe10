"""Data-parallel training: fine-tuning images/s of one job on 1 and on 2 workers, on a local two-node Ray cluster
whose nodes have one CPU each (two `ray start` nodes on this machine).

    .venv/bin/python bench/distributed.py [--classes 10] [--photos 30] [--epochs 2]

Writes bench/results/distributed.json. The one-worker baseline is the same job in one process limited to one
thread (what one of those nodes gives it), run in the same session; the ratio is the scaling of the two-worker job
(DistributedDataParallel over gloo), whose throughput counts every worker's images per second of wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def start_cluster(ray_bin: str, port: int) -> str:
    address = f"127.0.0.1:{port}"
    common = ["--num-cpus=1", "--disable-usage-stats"]
    subprocess.run([ray_bin, "start", "--head", f"--port={port}", "--node-ip-address=127.0.0.1",
                    "--include-dashboard=false", *common], check=True, capture_output=True, timeout=120)
    subprocess.run([ray_bin, "start", f"--address={address}", *common], check=True, capture_output=True, timeout=120)
    deadline = time.time() + 60
    while time.time() < deadline:
        status = subprocess.run([ray_bin, "status", f"--address={address}"], capture_output=True, text=True)
        if status.stdout.count(" node_") >= 2:
            return address
        time.sleep(1)
    raise RuntimeError("the second Ray node did not join")


def train(name: str, data: Path, args: argparse.Namespace, *extra: str, env: dict | None = None) -> dict:
    cmd = [sys.executable, "-m", "dogbreed.cli", "train", "--data", str(data), "--job-name", name, "--no-debugger",
           "--preset", "fast", "--train_mode", "last_blocks", "--trainable_blocks", "1", "--head_epochs", "1",
           "--epochs", str(args.epochs), "--mini_batch_size", "16", "--json", *extra]
    t0 = time.time()
    r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})})
    if r.returncode != 0:
        raise RuntimeError(f"{name} failed: {r.stderr[-2000:]}")
    record = json.loads(r.stdout)
    return {"wall_s": round(time.time() - t0, 1), "train_images_per_s": round(record["metrics"]["train_images_per_s"], 2),
            "validation:accuracy": round(record["metrics"]["validation:accuracy"], 4)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "datasets" / "stanford-dogs-120"))
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--photos", type=int, default=30)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "distributed.json"))
    args = ap.parse_args()
    os.environ.setdefault("DOGBREED_HOME", tempfile.mkdtemp(prefix="dogbreed-bench-"))
    sys.path.insert(0, str(REPO / "tests"))
    from conftest import make_slice

    from dogbreed.serve.deploy import free_port

    root = Path(tempfile.mkdtemp()) / "slice"
    classes = sorted(p.name for p in (Path(args.data) / "train").iterdir())[:args.classes]
    make_slice(root, tuple(classes), args.photos, 6)
    ray_bin = str(Path(sys.executable).parent / "ray")
    address = start_cluster(ray_bin, free_port())
    try:
        # the decode cache is filled once, before either timed job
        one = train("dist-bench-1", root, args, env={"OMP_NUM_THREADS": "1"})
        two = train("dist-bench-2", root, args, "--instance-count", "2", "--ray-address", address)
    finally:
        subprocess.run([ray_bin, "stop", "--force"], capture_output=True, timeout=120)
    result = {"machine": {"cpus": os.cpu_count()}, "data": f"{args.classes} breeds x {args.photos} photos",
              "recipe": f"fast preset, last block fine-tuned {args.epochs} epochs, global batch 16",
              "one_worker_one_core": one, "two_workers_one_core_each": two,
              "scaling_ratio": round(two["train_images_per_s"] / one["train_images_per_s"], 3),
              "finished": time.strftime("%Y-%m-%d %H:%M:%S")}
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()

"""Training benchmark: dogbreed's default recipe against a plain timm + PyTorch loop, same model, same data, same run.

    .venv/bin/python bench/train.py [--data ../shared/datasets/stanford-dogs-120] [--steps 20]
        [--presets fast,balanced,best] [--skip-throughput]

Writes bench/results/train.json. Figures:
- each quality preset's README job (`dogbreed train --preset P`) from a cold cache: wall time, accuracy and
  calibration error on the held-out part of train/ (what presets were chosen on) and on valid/ (reported only,
  never used to choose), and its served model's images/s in ONNX Runtime against the fast (Lite0) model's; the
  default (balanced) job again on warm caches;
- full fine-tuning throughput (images/s) and share of step time waiting for data: dogbreed's cached batches against
  torchvision ImageFolder + timm transforms + DataLoader(num_workers=2);
- evaluation throughput, same comparison;
- the plain loop's accuracy after one epoch of head training from JPEGs (a fresh head on the frozen backbone), and its
  wall time.
Speeds are quoted as ratios against the baseline measured in the same run (the machine is shared and noisy).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def timed_steps(model, batches, steps, optimizer):
    """Runs `steps` training steps; returns (images/s, data-wait share)."""
    loss_fn = torch.nn.CrossEntropyLoss()
    model.train()
    it = iter(batches)
    next(it)  # warm-up batch: not counted (worker start-up, first allocation)
    data_s = total_s = 0.0
    images = 0
    for _ in range(steps):
        t0 = time.perf_counter()
        x, y = next(it)
        t1 = time.perf_counter()
        loss = loss_fn(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        t2 = time.perf_counter()
        data_s += t1 - t0
        total_s += t2 - t0
        images += len(y)
    return images / total_s, data_s / total_s


def cycle(loader):
    while True:
        yield from loader


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "datasets" / "stanford-dogs-120"))
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--eval-images", type=int, default=512)
    ap.add_argument("--presets", default="fast,balanced,best", help="presets whose README job is timed (cold)")
    ap.add_argument("--serve-images", type=int, default=256, help="images timed through each served ONNX model")
    ap.add_argument("--skip-throughput", action="store_true", help="only the preset jobs")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "train.json"))
    args = ap.parse_args()
    home = tempfile.mkdtemp(prefix="dogbreed-bench-")
    os.environ["DOGBREED_HOME"] = home

    import timm
    import torchvision

    from dogbreed.config import Hyperparameters
    from dogbreed.data.batches import BatchSource, prefetch
    from dogbreed.data.cache import load_or_build
    from dogbreed.data.layout import discover
    from dogbreed.models.registry import create_model, get_backbone
    from dogbreed.jobs.records import job_dir
    from dogbreed.models.inference import predict_probabilities
    from dogbreed.train.job import TrainingJobSpec, run_training_job

    results: dict = {"machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                                 "python": platform.python_version(), "torch": torch.__version__},
                     "data": args.data}

    # 1. Each preset's job from a cold cache (the README main job with --preset), then the default one warm.
    presets = [p for p in args.presets.split(",") if p]
    for preset in presets:
        os.environ["DOGBREED_HOME"] = tempfile.mkdtemp(prefix=f"dogbreed-bench-{preset}-")  # cold: own caches
        t = time.perf_counter()
        rec = run_training_job(TrainingJobSpec(f"bench-{preset}", args.data, Hyperparameters(preset=preset),
                                               track=False, progress=False))
        assert rec.status == "Completed", rec.failure_reason
        wall = time.perf_counter() - t
        model_dir = job_dir(rec.name) / "model"
        results.setdefault("presets", {})[preset] = {
            "cold_wall_s": round(wall, 1), **{k: round(v, 4) for k, v in rec.metrics.items() if k.split(":")[0]
                                             in ("holdout", "validation") or k == "temperature"}}
        results.setdefault("_model_dirs", {})[preset] = str(model_dir)
        if preset == "balanced":  # the default: warm rerun on the same caches
            t = time.perf_counter()
            warm = run_training_job(TrainingJobSpec("bench-balanced-warm", args.data, Hyperparameters(),
                                                    track=False, progress=False))
            results["presets"][preset]["warm_wall_s"] = round(time.perf_counter() - t, 1)
            assert warm.status == "Completed", warm.failure_reason
        print(preset, results["presets"][preset], flush=True)
    # Served speed: every preset's model timed in turn, three rounds, best of each, so that the ratios
    # against the Lite0 (fast) model are measured side by side on this shared machine.
    speeds: dict[str, list[float]] = {p: [] for p in presets}
    for _ in range(3):
        for preset in presets:
            speeds[preset].append(served_speed(Path(results["_model_dirs"][preset]), args.serve_images))
    for preset in presets:
        results["presets"][preset]["served_images_per_s"] = max(speeds[preset])
    if "fast" in presets:
        base = results["presets"]["fast"]["served_images_per_s"]
        for preset in presets:
            # the served model's cost against the Lite0 (fast) endpoint model, same run: target <= 1.3
            results["presets"][preset]["served_time_vs_fast"] = round(
                base / results["presets"][preset]["served_images_per_s"], 3)
    results.pop("_model_dirs", None)
    os.environ["DOGBREED_HOME"] = home
    if args.skip_throughput:
        return write(results, args.out)

    spec = get_backbone("efficientnet_lite0")
    prep = spec.preprocessing
    layout = discover(Path(args.data))
    index = layout.class_index()
    train = load_or_build(layout.splits["train"], prep, index, 2)
    valid = load_or_build(layout.splits["valid"], prep, index, 2)

    # 2. Full fine-tuning throughput (on the fast preset's backbone, as before).
    model, _ = create_model(spec, len(index), pretrained=True)
    model = model.to(memory_format=torch.channels_last)
    ours_src = BatchSource(train.images, train.labels, prep, 32, train=True, augmentation="crop")
    ours = timed_steps(model, prefetch(cycle_source(ours_src)), args.steps,
                       torch.optim.AdamW(model.parameters(), lr=1e-4))
    base_model, _ = create_model(spec, len(index), pretrained=True)
    cfg = timm.data.resolve_data_config({}, model=base_model)
    train_tf = timm.data.create_transform(**cfg, is_training=True)
    eval_tf = timm.data.create_transform(**cfg)
    folder = torchvision.datasets.ImageFolder(str(Path(args.data) / "train"), transform=train_tf)
    loader = torch.utils.data.DataLoader(folder, batch_size=32, shuffle=True, num_workers=2, persistent_workers=True)
    base = timed_steps(base_model, cycle(loader), args.steps, torch.optim.AdamW(base_model.parameters(), lr=1e-4))
    results["finetune_full"] = {
        "dogbreed_images_per_s": round(ours[0], 2), "dogbreed_data_wait_share": round(ours[1], 4),
        "baseline_images_per_s": round(base[0], 2), "baseline_data_wait_share": round(base[1], 4),
        "speedup": round(ours[0] / base[0], 3)}
    print(results["finetune_full"], flush=True)

    # 3. Evaluation throughput on the first N validation images.
    n = min(args.eval_images, len(valid.labels))
    model.eval()
    t = time.perf_counter()
    predict_probabilities(model, valid.images[:n], prep, flip=False)
    ours_eval = n / (time.perf_counter() - t)
    subset = torch.utils.data.Subset(torchvision.datasets.ImageFolder(str(Path(args.data) / "valid"),
                                                                      transform=eval_tf), range(n))
    base_model.eval()
    t = time.perf_counter()
    with torch.no_grad():
        for x, _ in torch.utils.data.DataLoader(subset, batch_size=64, num_workers=2):
            base_model(x)
    base_eval = n / (time.perf_counter() - t)
    results["evaluation"] = {"images": n, "dogbreed_images_per_s": round(ours_eval, 2),
                             "baseline_images_per_s": round(base_eval, 2), "speedup": round(ours_eval / base_eval, 3)}
    print(results["evaluation"], flush=True)

    # 4. Plain loop accuracy: one epoch of a fresh head on the frozen backbone, from JPEGs.
    t = time.perf_counter()
    plain, _ = create_model(spec, len(index), pretrained=True)
    for p in plain.parameters():
        p.requires_grad_(False)
    head = plain.get_classifier()
    for p in head.parameters():
        p.requires_grad_(True)
    opt = torch.optim.AdamW(head.parameters(), lr=1e-3)
    plain.eval()  # frozen BatchNorm
    for x, y in torch.utils.data.DataLoader(folder, batch_size=32, shuffle=True, num_workers=2):
        loss = torch.nn.functional.cross_entropy(plain(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    correct = total = 0
    valid_folder = torchvision.datasets.ImageFolder(str(Path(args.data) / "valid"), transform=eval_tf)
    with torch.no_grad():
        for x, y in torch.utils.data.DataLoader(valid_folder, batch_size=64, num_workers=2):
            correct += int((plain(x).argmax(1) == y).sum())
            total += len(y)
    plain_wall = time.perf_counter() - t
    results["baseline_plain_loop_1_epoch_head"] = {"wall_s": round(plain_wall, 1),
                                                    "validation_accuracy": round(correct / total, 4)}
    cold = results.get("presets", {}).get("balanced")
    results["ratios"] = {
        **({"default_job_cold_wall_vs_plain_1_epoch": round(cold["cold_wall_s"] / plain_wall, 3),
            "default_job_accuracy_minus_plain": round(cold["validation:accuracy"] - correct / total, 4)}
           if cold else {}),
        "finetune_throughput_speedup": results["finetune_full"]["speedup"],
        "evaluation_throughput_speedup": results["evaluation"]["speedup"],
    }
    print(results["baseline_plain_loop_1_epoch_head"], results["ratios"], flush=True)
    write(results, args.out)


def write(results: dict, out: str) -> None:
    """Writes the figures of this run over the file's earlier ones (a --skip-throughput run keeps the throughput
    figures of the last full run)."""
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    results = {**(json.loads(path.read_text()) if path.exists() else {}), **results}
    results["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    path.write_text(json.dumps(results, indent=1))
    print(f"wrote {path}")


def served_speed(model_dir: Path, n: int) -> float:
    """Images/s of the model as the endpoint runs it (ONNX Runtime, batches of 8, its own flip choice)."""
    import numpy as np

    from dogbreed.serve.api import BreedClassifierAPI

    api = BreedClassifierAPI(model_dir, backend="onnx").setup()
    size = api.card.preprocessing.resize_size
    squares = list(np.random.default_rng(0).integers(0, 255, (8, size, size, 3), dtype=np.uint8))
    api.predict(squares)  # warm-up
    t = time.perf_counter()
    for _ in range(max(1, n // 8)):
        api.predict(squares)
    return round(max(1, n // 8) * 8 / (time.perf_counter() - t), 2)


def cycle_source(source):
    epoch = 0
    while True:
        yield from source.batches(epoch)
        epoch += 1


if __name__ == "__main__":
    sys.exit(main())

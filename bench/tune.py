"""Tuning benchmark: a 20-trial dogbreed tuning job against a plain Optuna loop that retrains from images per trial.

    .venv/bin/python bench/tune.py [--classes 20] [--trials 20]

Data: the first N breeds of the shared Stanford set; valid/ is split per breed into a validation half (the
objective) and a held-out test half (never seen by either search). The baseline is what one writes without
dogbreed: per trial, a timm model with a fresh head on the frozen backbone, one epoch over the JPEGs through a
torchvision DataLoader, validation from JPEGs. Same search space (learning_rate, optimizer, weight_decay), same
number of trials, same run. Writes bench/results/tune.json with wall times, accuracies and their ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
RANGES = {"learning_rate": {"type": "Continuous", "min": 1e-4, "max": 1e-1, "scaling": "Logarithmic"},
          "optimizer": {"type": "Categorical", "values": ["adam", "sgd", "rmsprop"]},
          "weight_decay": {"type": "Continuous", "min": 0.0, "max": 0.01}}


def make_split(src: Path, dst: Path, classes: list[str]) -> Path:
    for c in classes:
        for split, files in (("train", sorted((src / "train" / c).iterdir())),):
            (dst / split / c).mkdir(parents=True)
            for f in files:
                (dst / split / c / f.name).symlink_to(f)
        valid = sorted((src / "valid" / c).iterdir())
        half = len(valid) // 2
        for split, files in (("valid", valid[:half]), ("test", valid[half:])):
            (dst / split / c).mkdir(parents=True)
            for f in files:
                (dst / split / c / f.name).symlink_to(f)
    return dst


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "datasets" / "stanford-dogs-120"))
    ap.add_argument("--classes", type=int, default=20)
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "tune.json"))
    args = ap.parse_args()
    os.environ["DOGBREED_HOME"] = tempfile.mkdtemp(prefix="dogbreed-bench-")
    import optuna
    import timm
    import torchvision

    from dogbreed.models.registry import create_model, get_backbone
    from dogbreed.train.job_evaluation import evaluate_job
    from dogbreed.tune.config import parse_tuning_config
    from dogbreed.tune.start import TuningJobSpec, start_tuning_job

    classes = sorted(p.name for p in (Path(args.data) / "train").iterdir())[: args.classes]
    root = make_split(Path(args.data), Path(tempfile.mkdtemp()) / "data", classes)

    # dogbreed: one tuning job (features computed once, shared by every trial).
    t = time.perf_counter()
    config = parse_tuning_config({"strategy": "Bayesian", "max_jobs": args.trials,
                                  "static_hyperparameters": {"epochs": 10}, "hyperparameter_ranges": RANGES})
    rec = start_tuning_job(TuningJobSpec("bench-tune", str(root), config))
    ours_wall = time.perf_counter() - t
    best = rec.extra["best_training_job"]
    held_out = evaluate_job(best, str(root), "test")[0].accuracy
    ours = {"wall_s": round(ours_wall, 1), "best_validation_accuracy": round(rec.extra["best_objective_value"], 4),
            "best_job": best, "held_out_test_accuracy": round(held_out, 4)}
    print("dogbreed", ours, flush=True)

    # Baseline: a plain Optuna loop retraining from JPEGs each trial.
    spec = get_backbone("efficientnet_lite0")
    probe, _ = create_model(spec, len(classes), pretrained=True)
    cfg = timm.data.resolve_data_config({}, model=probe)
    train_tf, eval_tf = timm.data.create_transform(**cfg, is_training=True), timm.data.create_transform(**cfg)
    train_ds = torchvision.datasets.ImageFolder(str(root / "train"), transform=train_tf)
    valid_ds = torchvision.datasets.ImageFolder(str(root / "valid"), transform=eval_tf)
    test_ds = torchvision.datasets.ImageFolder(str(root / "test"), transform=eval_tf)

    def accuracy(model, ds) -> float:
        correct = total = 0
        with torch.no_grad():
            for x, y in torch.utils.data.DataLoader(ds, batch_size=64, num_workers=2):
                correct += int((model(x).argmax(1) == y).sum())
                total += len(y)
        return correct / total

    models = {}

    def objective(trial: optuna.Trial) -> float:
        lr = trial.suggest_float("learning_rate", 1e-4, 1e-1, log=True)
        name = trial.suggest_categorical("optimizer", ["adam", "sgd", "rmsprop"])
        wd = trial.suggest_float("weight_decay", 0.0, 0.01)
        model, _ = create_model(spec, len(classes), pretrained=True)
        for p in model.parameters():
            p.requires_grad_(False)
        head = model.get_classifier()
        for p in head.parameters():
            p.requires_grad_(True)
        opt = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD, "rmsprop": torch.optim.RMSprop}[name](
            head.parameters(), lr=lr, weight_decay=wd)
        model.eval()
        for x, y in torch.utils.data.DataLoader(train_ds, batch_size=32, shuffle=True, num_workers=2):
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        models[trial.number] = model
        return accuracy(model, valid_ds)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    t = time.perf_counter()
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=0))
    study.optimize(objective, n_trials=args.trials)
    base_wall = time.perf_counter() - t
    base = {"wall_s": round(base_wall, 1), "best_validation_accuracy": round(study.best_value, 4),
            "held_out_test_accuracy": round(accuracy(models[study.best_trial.number], test_ds), 4)}
    print("baseline", base, flush=True)
    result = {"classes": args.classes, "trials": args.trials, "dogbreed": ours, "baseline_plain_optuna": base,
              "ratios": {"wall_time_speedup": round(base_wall / ours_wall, 2),
                         "held_out_accuracy_ratio": round(ours["held_out_test_accuracy"] /
                                                          max(base["held_out_test_accuracy"], 1e-9), 3)},
              "finished": time.strftime("%Y-%m-%d %H:%M:%S")}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(result["ratios"])


if __name__ == "__main__":
    sys.exit(main())

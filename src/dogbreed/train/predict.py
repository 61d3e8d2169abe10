"""Using a finished job's model on data: `dogbreed evaluate`, and the data check that needs no model."""

from __future__ import annotations

from pathlib import Path

import torch

from dogbreed.config import UserError
from dogbreed.data.cache import load_or_build
from dogbreed.data.check import CheckReport, build_report
from dogbreed.data.layout import discover, resolve_location
from dogbreed.data.scan import scan_files
from dogbreed.models.artifact import load_model
from dogbreed.train import records
from dogbreed.train.evaluate import Evaluation, evaluate_logits, write_evaluation
from dogbreed.train.job import _progress, predict_images


def check_data(location: str, workers: int = 2, progress: bool = True) -> CheckReport:
    layout = discover(resolve_location(location), required=("train",))
    scans = {}
    for name, split in layout.splits.items():
        with _progress(len(split.files), f"checking {name}", progress) as tick:
            scans[name] = [s for s, _ in scan_files(list(split.files), None, workers, tick)]
    return build_report(layout, scans)


def job_model_dir(job: str) -> Path:
    record = records.load(job)
    model_dir = records.job_dir(job) / "model"
    if record.status != "Completed" or not model_dir.exists():
        raise UserError(f"job {job!r} has no trained model (status {record.status})")
    return model_dir


def evaluate_job(job: str, location: str, split_name: str, top_k: int = 5, workers: int = 2
                 ) -> tuple[Evaluation, Path]:
    model, card = load_model(job_model_dir(job))
    layout = discover(resolve_location(location), required=())
    if split_name not in layout.splits:
        raise UserError(f"data folder {layout.root} has no {split_name}/ split")
    split = layout.splits[split_name]
    unknown = sorted(set(split.labels) - set(card.class_folders))
    if unknown:
        raise UserError(f"class {unknown[0]!r} of {split_name}/ is not one the model of {job!r} knows")
    index = {c: i for i, c in enumerate(card.class_folders)}
    with _progress(len(split.files), f"decoding {split_name}", True) as tick:
        cached = load_or_build(split, card.preprocessing, index, workers, tick)
    bad = [s for s in cached.scans if s.error]
    if bad:
        raise UserError(f"{len(bad)} unreadable file(s) in {split_name}/, first: {bad[0].path}: {bad[0].error}")
    log_probs = predict_images(model, cached.images, card.preprocessing, card.test_time_flip)
    ev = evaluate_logits(log_probs, torch.from_numpy(cached.labels), card.class_labels, split_name, top_k)
    out_dir = records.job_dir(job) / "evaluations" / f"{split_name}-{cached.key[:8]}"
    write_evaluation(ev, card.class_labels, out_dir)
    return ev, out_dir

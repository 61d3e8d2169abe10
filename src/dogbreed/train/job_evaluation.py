"""`dogbreed evaluate`: a finished job's model on a split of its data (or any data with the same classes)."""

from __future__ import annotations

from pathlib import Path

import torch

from dogbreed.config import UserError
from dogbreed.data.cache import load_or_build
from dogbreed.data.layout import discover_dataset
from dogbreed.jobs import records
from dogbreed.jobs.model_registry import job_model_dir
from dogbreed.models.artifact import load_model
from dogbreed.models.inference import predict_probabilities
from dogbreed.progress import progress
from dogbreed.train.evaluate import Evaluation, evaluate_logits, write_evaluation


def evaluate_job(job: str, location: str | dict | None = None, split_name: str | None = None, top_k: int = 5,
                 workers: int = 2, show_progress: bool = True) -> tuple[Evaluation, Path]:
    """Evaluates on `split_name` of `location`; by default the job's own data, and `test` when it has one, else
    `valid`. The results are written next to the job and logged to its MLflow run."""
    record = records.load(job)
    model, card = load_model(job_model_dir(job))
    location = location or record.data.get("location")
    if not location:
        raise UserError(f"job {job!r} recorded no data location: pass --data")
    layout = discover_dataset(location, required=())
    if split_name is None:
        split_name = "test" if "test" in layout.splits else "valid"
    if split_name not in layout.splits:
        raise UserError(f"data folder {layout.root} has no {split_name}/ split")
    split = layout.splits[split_name]
    unknown = sorted(set(split.labels) - set(card.class_folders))
    if unknown:
        raise UserError(f"class {unknown[0]!r} of {split_name}/ is not one the model of {job!r} knows")
    index = {c: i for i, c in enumerate(card.class_folders)}
    with progress(len(split.files), f"decoding {split_name}", show_progress) as tick:
        cached = load_or_build(split, card.preprocessing, index, workers, tick)
    bad = [s for s in cached.scans if s.error]
    if bad:
        raise UserError(f"{len(bad)} unreadable file(s) in {split_name}/, first: {bad[0].path}: {bad[0].error}")
    probs = predict_probabilities(model, cached.images, card.preprocessing, card.test_time_flip,
                                  temperature=card.temperature)
    ev = evaluate_logits(probs.clamp_min(1e-12).log(), torch.from_numpy(cached.labels), card.class_labels,
                         split_name, top_k)
    out_dir = records.job_dir(job) / "evaluations" / f"{split_name}-{cached.key[:8]}"
    write_evaluation(ev, card.class_labels, out_dir)
    if record.mlflow_run_id:
        from dogbreed.jobs.tracking import MlflowTracker

        tracker = MlflowTracker()
        tracker.run_id = record.mlflow_run_id
        tracker.log_metrics({f"evaluate.{k}": v for k, v in ev.metrics().items()}, step=len(record.history))
        tracker.log_artifacts(out_dir, f"evaluations/{out_dir.name}")
    return ev, out_dir

"""`dogbreed jobs resume NAME`: a Failed or Stopped training job goes on from its last checkpoint, under its own
name, record, log and MLflow run, as the uninterrupted job would have."""

from __future__ import annotations

from typing import Any

from dogbreed.config import Hyperparameters, UserError
from dogbreed.jobs import records
from dogbreed.jobs.records import JobRecord
from dogbreed.train.job import TrainingJobSpec, run_training_job
from dogbreed.train.trainer import Callback


def resume_spec(name: str, device: str | None = None, progress: bool = True) -> TrainingJobSpec:
    """The spec the job was started with, rebuilt from its record."""
    record = records.load(name)
    if record.kind != "training":
        raise UserError(f"{name!r} is a {record.kind} job: resume it with `dogbreed tune resume {name}`")
    extra = record.extra
    return TrainingJobSpec(name=name, data=record.data["location"],
                           hyperparameters=Hyperparameters.from_mapping(record.hyperparameters),
                           on_bad_file=extra.get("on_bad_file", "error"), device=device, parent=record.parent,
                           track=bool(record.mlflow_run_id), progress=progress,
                           initial_model=extra.get("initial_model"), checkpoint_uri=extra.get("checkpoint_uri"),
                           instance_count=int(extra.get("instance_count") or 1),
                           ray_address=extra.get("ray_address"), resume=True)


def resume_training_job(name: str, device: str | None = None, progress: bool = True,
                        callbacks: list[Callback] | None = None, **changes: Any) -> JobRecord:
    import dataclasses

    spec = dataclasses.replace(resume_spec(name, device, progress), **changes)
    return run_training_job(spec, callbacks)

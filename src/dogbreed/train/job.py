"""A training job, end to end: claim the name, check the data, train in stages, evaluate, save, record.

This module is the job's bookkeeping around `StagedTraining`: the record (InProgress -> Completed, Failed or
Stopped, with the reason), the job's log file, its heartbeat, MLflow tracking and the debugger. Every ending is
recorded rather than raised once the record exists; a job killed outright is marked Failed by whoever reads its
record next (`dogbreed.jobs.records`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from torch import nn

from dogbreed.config import Hyperparameters, UserError
from dogbreed.data.layout import discover_dataset
from dogbreed.devices import resolve_device
from dogbreed.jobs import logs, names, records
from dogbreed.jobs.control import StopRequested, check_stop
from dogbreed.jobs.process import Heartbeat
from dogbreed.jobs.records import COMPLETED, FAILED, IN_PROGRESS, STOPPED, JobRecord
from dogbreed.models.artifact import ModelCard, save_model
from dogbreed.models.registry import create_model, get_backbone, with_input_size
from dogbreed.train.checkpoint import Checkpoint, CheckpointStore
from dogbreed.train.callbacks import EarlyStopping, EpochLog, ProgressBar, StopWatcher
from dogbreed.train import presets
from dogbreed.train.data_prep import PreparedData, prepare_data
from dogbreed.train.stages import StagedTraining, stop_is_final
from dogbreed.train.trainer import Callback

log = logging.getLogger("dogbreed")


@dataclass(frozen=True)
class TrainingJobSpec:
    name: str
    data: str | dict  # a dataset folder/URI, or SageMaker channels {"train": ..., "validation": ..., ...}
    hyperparameters: Hyperparameters = field(default_factory=Hyperparameters)
    on_bad_file: str = "error"  # error | skip
    device: str | None = None  # None: cuda when present, else cpu
    parent: str | None = None  # tuning job
    track: bool = True  # MLflow
    progress: bool = True
    debugger: Any = None  # dogbreed.debug.monitor.DebuggerConfig; None: the default (on, every rule)
    parent_run_id: str | None = None  # the tuning job's MLflow run, to nest this one under
    initial_model: str | None = None  # incremental training: a finished job's model (folder, file:// URI, job:NAME)
    max_runtime_s: float | None = None  # SageMaker's max_run: the job is stopped when it runs longer
    extra: dict[str, Any] = field(default_factory=dict)  # kept in the record (image URI, output path, ...)
    checkpoint_uri: str | None = None  # where checkpoints go (folder or fsspec URI); None: the job's folder
    resume: bool = False  # go on from the job's last checkpoint (`dogbreed jobs resume`): the job must exist
    continue_from: str | None = None  # a new job that starts at another job's last checkpoint (a tuning trial
    # rerun after a crash); where that job's checkpoints are
    instance_count: int = 1  # > 1: data-parallel workers on a Ray cluster (dogbreed.train.distributed)
    ray_address: str | None = None  # that cluster; None: a local one
    max_failures: int = 1  # worker losses a distributed job survives by restarting from its last checkpoint


class MaxRuntimeExceeded(Exception):
    """The job ran past its max_run: it ends Stopped, as SageMaker stops it."""


@dataclass
class _Start:
    """What the pre-flight found: everything needed to start, and what the user should know first."""
    device: str
    backbone: Any
    model: nn.Module
    imagenet_head: Any
    initial_card: Any  # ModelCard of the model channel's model (incremental training), else None
    warnings: list[str]


class _Job:
    """What a running job keeps: its record (rewritten at every change), tracker and debugger."""

    def __init__(self, spec: TrainingJobSpec, record: JobRecord, extra_callbacks: list[Callback]):
        self.spec, self.hp, self.record = spec, spec.hyperparameters, record
        self.dir = records.job_dir(spec.name)
        self.extra_callbacks = extra_callbacks
        self.tracker: Any = None
        self.debug: Any = None  # DebugSession

    def update(self, **changes: Any) -> None:
        self.record = records.update(self.record, **changes)

    def history_sink(self, metrics: dict[str, float]) -> None:
        self.update(history=[*self.record.history, {**metrics, "time": time.time()}])
        if self.tracker:
            self.tracker.log_metrics({k: v for k, v in metrics.items() if k not in ("epoch", "stage")},
                                     step=int(metrics["epoch"]))

    def check(self) -> None:
        check_stop(self.spec.name)
        if self.spec.max_runtime_s and time.time() - self.record.start_time > self.spec.max_runtime_s:
            raise MaxRuntimeExceeded(f"MaxRuntimeExceeded: the job ran longer than max_run "
                                     f"({self.spec.max_runtime_s:g} s)")

    def callbacks(self, stage: str) -> list[Callback]:
        cbs: list[Callback] = [EpochLog(self.history_sink), StopWatcher(self.check)]
        if self.spec.progress:
            cbs.append(ProgressBar())
        if self.hp.early_stopping:
            cbs.append(EarlyStopping(self.hp.early_stopping_min_epochs, self.hp.early_stopping_patience,
                                     self.hp.early_stopping_tolerance))
        if self.debug is not None:
            cbs += self.debug.callbacks(stage)
        return cbs + self.extra_callbacks


def _preflight(spec: TrainingJobSpec) -> _Start:
    """Checks that cost little and need no record: name, device, data layout, weights, settings that cannot work."""
    from dogbreed.train.preflight import training_warnings

    hp = spec.hyperparameters
    names.validate(spec.name, "job")
    if not spec.resume and records.job_dir(spec.name).exists():
        raise UserError(f"job name {spec.name!r} is already used; pick another job name")
    device = resolve_device(spec.device)
    shape = hp.input_shape()
    backbone = with_input_size(get_backbone(hp.backbone_name), shape[1] if shape else None, hp.resize)
    layout = discover_dataset(spec.data, on_bad_file=spec.on_bad_file, num_classes=hp.num_classes)
    if len(layout.classes) < 2:
        raise UserError(f"data in {layout.root} has {len(layout.classes)} class: a classifier needs at least 2")
    if spec.instance_count < 1:
        raise UserError(f"instance_count must be at least 1, not {spec.instance_count}")
    if spec.instance_count > 1 and hp.train_mode == "head" and hp.preset_value("last_block_epochs"):
        raise UserError("last_block_epochs runs on one machine only: set it to 0 or instance_count to 1")
    if spec.initial_model:
        model, card = initial_model(spec.initial_model, backbone, layout)
        return _Start(device, backbone, model, None, card, training_warnings(hp, layout))
    model, imagenet_head = create_model(backbone, 1, pretrained=bool(hp.use_pretrained_model),
                                        weights_file=hp.weights_file)
    return _Start(device, backbone, model, imagenet_head, None, training_warnings(hp, layout))


def initial_model(ref: str, backbone: Any, layout: Any) -> tuple[nn.Module, ModelCard]:
    """Incremental training (SageMaker's `model` channel): start from a finished job's model, same backbone and
    same classes required."""
    from dogbreed.jobs.model_registry import model_dir_for
    from dogbreed.models.artifact import load_model

    path = ref[len("file://"):] if ref.startswith("file://") else ref
    model_dir = model_dir_for(ref) if ref.startswith("job:") else Path(path)
    if model_dir.is_dir() and not (model_dir / "model.json").exists() and (model_dir / "model" / "model.json").exists():
        model_dir = model_dir / "model"
    if not (model_dir / "model.json").exists():
        raise UserError(f"model channel {ref}: no dogbreed model there (expected a finished job's model folder, "
                        "e.g. the estimator's model_data)")
    model, card = load_model(model_dir)
    if card.backbone != backbone.name:
        raise UserError(f"model channel {ref} holds a {card.backbone} model, but this job trains {backbone.name}: "
                        "incremental training needs the same backbone (num_layers)")
    if list(card.class_folders) != list(layout.classes):
        missing = sorted(set(layout.classes) ^ set(card.class_folders))
        raise UserError(f"model channel {ref} was trained on other classes than this data ({len(card.class_folders)} "
                        f"vs {len(layout.classes)}; first difference {missing[0] if missing else 'order'}): "
                        "incremental training needs the same classes")
    return model, card


def run_training_job(spec: TrainingJobSpec, callbacks: list[Callback] | None = None) -> JobRecord:
    """Runs a job to its end and returns its final record. UserErrors found before the job exists propagate;
    once the record exists, every ending (Completed, Failed, Stopped) is recorded rather than raised."""
    from dogbreed.debug.monitor import DebuggerConfig, DebugSession

    from dogbreed.train.preflight import report

    debug_config = spec.debugger or DebuggerConfig()
    debug_config.validate()
    start = _preflight(spec)
    device, backbone, model = start.device, start.backbone, start.model
    hp = spec.hyperparameters
    extra = {**spec.extra, "device": device, "backbone": backbone.name, "preflight_warnings": start.warnings}
    if spec.initial_model:
        extra["initial_model"] = spec.initial_model
    if spec.checkpoint_uri:
        extra["checkpoint_uri"] = spec.checkpoint_uri
    if spec.on_bad_file != "error":
        extra["on_bad_file"] = spec.on_bad_file
    if spec.instance_count > 1:
        extra.update(instance_count=spec.instance_count, ray_address=spec.ray_address)
    checkpoints = CheckpointStore(checkpoint_location(spec.name, spec.checkpoint_uri))
    resume_from = None
    if spec.resume:
        record, resume_from = _reclaim(spec.name, checkpoints, extra)
    else:
        if spec.continue_from:
            resume_from = CheckpointStore(spec.continue_from).latest()
            if resume_from is not None:
                extra["continued_from"] = {"checkpoint": spec.continue_from, "epoch": resume_from.global_epoch}
        record = records.create(JobRecord(name=spec.name, kind="training", hyperparameters=hp.to_dict(),
                                          data={"location": spec.data}, parent=spec.parent, extra=extra))
    job = _Job(spec, record, list(callbacks or []))
    handler = logs.attach(job.dir / "train.log")
    heartbeat = Heartbeat(records.heartbeat_path(spec.name)).start()
    log.info("training job %s started on %s: backbone %s, train_mode %s%s", spec.name, device, backbone.name,
             hp.train_mode, f", from model {spec.initial_model}" if spec.initial_model else "")
    report(start.warnings)  # before any compute is spent; in the job's own log too
    if resume_from is not None:
        log.info("job %s resumes after epoch %d (stage %s) from checkpoint %d", spec.name, resume_from.global_epoch,
                 resume_from.stage, resume_from.sequence)
    if debug_config.enabled and spec.instance_count == 1:  # distributed: the first worker records
        job.debug = DebugSession(debug_config, job.dir)
        job.debug.start()
    status, reason = COMPLETED, None
    with _sigterm_as_interrupt():
        try:
            if spec.track and spec.resume and record.mlflow_run_id:
                from dogbreed.jobs.tracking import MlflowTracker

                job.tracker = MlflowTracker.resume(record.mlflow_run_id)  # the run goes on, as the job does
            elif spec.track:
                from dogbreed.jobs.tracking import MlflowTracker

                job.tracker = MlflowTracker()
                # num_classes and num_training_samples are the data's: logged once the data is read
                params = {k: v for k, v in hp.to_dict().items()
                          if v not in (None, "") and k not in ("num_classes", "num_training_samples")}
                run_id = job.tracker.start(spec.name, "training", params,
                                           tags={"dogbreed.parent": spec.parent or ""},
                                           parent_run_id=spec.parent_run_id)
                job.update(mlflow_run_id=run_id)
            data = prepare_data(spec.data, hp, backbone, spec.on_bad_file, spec.progress, job.check)
            if job.debug is not None:
                job.debug.mark("data_ready")
            _record_data(job, data)
            stages = StagedTraining(hp, backbone, device, job.callbacks, spec.progress, job.check,
                                    initial_weights=start.initial_card.weights_sha256 if start.initial_card else None,
                                    checkpoints=checkpoints, resume=resume_from)
            if spec.instance_count > 1:
                model, info = _train_distributed(job, start, data, checkpoints, debug_config)
            else:
                model, info = stages.run(data, model, start.imagenet_head, keep_head=start.initial_card is not None)
            calibration = info.pop("calibration", None)
            evaluations = stages.final_evaluation(model, data, info.pop("features"), job.dir / "evaluation",
                                                  temperature=calibration.temperature if calibration else 1.0)
            final: dict[str, float] = {}
            for ev in evaluations:
                final.update(ev.metrics())
            for k in ("train:loss", "train:accuracy", "train:top_k_accuracy"):
                if job.record.history and k in job.record.history[-1]:
                    final[k] = job.record.history[-1][k]
            final.update({k: v for k, v in info.items() if isinstance(v, float)})
            final.update(presets.holdout_metrics(calibration))
            card = ModelCard(backbone=backbone.name, timm_name=backbone.timm_name,
                             class_folders=data.class_folders, class_labels=data.class_labels,
                             preprocessing=backbone.preprocessing, test_time_flip=hp.use_flip,
                             hyperparameters=hp.to_dict(), metrics=final,
                             **presets.card_fields(calibration, presets.has_dog_head(model), hp.preset),
                             lineage={"job": spec.name, "data": job.record.data.get("content_keys", {}),
                                      "data_location": spec.data})
            save_model(job.dir / "model", model, card)
            if spec.parent is None:
                _as_mlflow_model(job.dir / "model")
            (job.dir / "metrics.json").write_text(json.dumps(final, indent=1))
            if job.tracker:
                job.tracker.log_metrics(final, step=len(job.record.history))
            stop_reason = info.get("stop_reason")
            if stop_reason and stop_is_final(stop_reason):
                status, reason = STOPPED, stop_reason
            job.update(metrics=final, extra={**job.record.extra, **info})
        except MaxRuntimeExceeded as e:
            status, reason = STOPPED, str(e)
            log.warning("job %s stopped: %s", spec.name, e)
        except (KeyboardInterrupt, StopRequested) as e:
            status = STOPPED
            reason = "stopped by the user" + (" (interrupt)" if isinstance(e, KeyboardInterrupt) else "")
            log.warning("job %s stopped by the user", spec.name)
        except UserError as e:
            status, reason = FAILED, str(e)
            log.error("job %s failed: %s", spec.name, e)
        except Exception as e:  # recorded, with the traceback in the job's log
            status, reason = FAILED, f"{type(e).__name__}: {e}"
            log.error("job %s failed: %s\n%s", spec.name, reason, traceback.format_exc())
        finally:
            _finish(job, status, reason)
            heartbeat.stop()
            logs.detach(handler)
    return job.record


def _train_distributed(job: _Job, start: _Start, data: PreparedData, checkpoints: CheckpointStore,
                       debug_config: Any) -> tuple[nn.Module, dict[str, Any]]:
    """The stages on the job's Ray workers; their weights come back into this process's model, which then is
    evaluated and saved as a single job's is (its cached features are not here: evaluation reads the images)."""
    import dataclasses

    from dogbreed.models.imagenet import attach_imagenet_head
    from dogbreed.train.distributed import calibration_from, run_distributed_stages

    if job.extra_callbacks:
        log.warning("per-epoch callbacks of the caller (e.g. a tuning job's early stopping) do not run on the "
                    "workers of a distributed job")
    spec = dataclasses.replace(job.spec, debugger=debug_config)
    state, result = run_distributed_stages(spec, checkpoints.location, start.device)
    job.record = records.load(spec.name, reconcile=False)  # the first worker added the epochs and restarts
    model = start.model
    if start.initial_card is None:
        model.reset_classifier(len(data.class_folders))
    if result["dog_head"] and not presets.has_dog_head(model):
        attach_imagenet_head(model, start.imagenet_head)
    model.load_state_dict(state)
    if "rules" in result:
        job.update(extra={**job.record.extra, "rules": result["rules"]})
    info = {k: result[k] for k in ("data_wait_share", "train_images_per_s") if k in result}
    return model, {**info, "stop_reason": result["stop_reason"], "features": {}, "workers": result["workers"],
                   "calibration": calibration_from(result)}


def _as_mlflow_model(model_dir: Path) -> None:
    """Makes the saved model a real MLflow model (MLmodel + ONNX), logged with the run as runs:/ID/model. Not
    for tuning trials: the ONNX export would cost every trial seconds; registration does it for the one kept."""
    from dogbreed.models.mlflow_pyfunc import write_mlflow_model

    try:
        write_mlflow_model(model_dir)
    except Exception as e:  # noqa: BLE001 - the job's own model is saved; only MLflow's view of it is missing
        log.warning("the model could not be written as an MLflow model: %s", e)


def checkpoint_location(name: str, uri: str | None = None) -> str:
    return uri or str(records.job_dir(name) / "checkpoints")


def _reclaim(name: str, checkpoints: CheckpointStore, extra: dict[str, Any]) -> tuple[JobRecord, Checkpoint]:
    """Makes this process the owner of an ended job again, at its last checkpoint: the history after the
    checkpoint is dropped (those epochs run again) and the resume is noted in the record."""
    record = records.load(name)
    if record.kind != "training":
        raise UserError(f"{name!r} is a {record.kind} job: resume it with `dogbreed tune resume {name}`")
    if record.status == COMPLETED:
        raise UserError(f"job {name!r} is already complete: nothing to resume")
    ckpt = checkpoints.latest()
    if ckpt is None:
        raise UserError(f"job {name!r} has no checkpoint to resume from (it ended before its first epoch "
                        f"finished): start it again under a new name")
    resumes = [*record.extra.get("resumes", []), {"time": time.time(), "after": record.status,
                                                  "reason": record.failure_reason, "from_epoch": ckpt.global_epoch,
                                                  "stage": ckpt.stage}]
    record = records.claim(record, status=IN_PROGRESS, failure_reason=None, end_time=None,
                           history=[h for h in record.history if h.get("epoch", 0) <= ckpt.global_epoch],
                           extra={**record.extra, **extra, "resumes": resumes})
    return record, ckpt


def _record_data(job: _Job, data: PreparedData) -> None:
    job.update(data={
        "location": job.spec.data, "root": str(data.layout.root), "num_classes": len(data.class_folders),
        "num_training_samples": int(len(data.splits["train"].labels)),
        "counts": {k: int(len(v.labels)) for k, v in data.splits.items()},
        "content_keys": {k: v.key for k, v in data.splits.items()}, "skipped_files": len(data.skipped)})
    if job.debug is not None:
        job.debug.data.meta.update({"num_classes": len(data.class_folders), "label_counts": {
            c: int(n) for c, n in data.report.counts.get("train", {}).items()}})
    if job.tracker:
        job.tracker.log_params({"num_classes": len(data.class_folders),
                                "num_training_samples": len(data.splits["train"].labels)})
        contexts = {"train": "training", "valid": "validation", "test": "test"}
        for split_name, split in data.splits.items():
            folder = os.path.commonpath([str(f) for f in data.layout.splits[split_name].files])
            job.tracker.log_dataset(f"{Path(folder).parent.name}/{Path(folder).name}", folder,
                                    split.key, contexts.get(split_name, split_name),
                                    {"num_images": int(len(split.labels)), "num_classes": len(data.class_folders)})


def _finish(job: _Job, status: str, reason: str | None) -> None:
    """Debugger verdicts, the final status and the end of the MLflow run; none of it may cost the job its result."""
    if job.debug is not None:
        try:
            results = job.debug.finish()
            job.update(extra={**job.record.extra, "rules": {r.rule: r.status for r in results}})
            for r in results:
                if r.triggered:
                    log.warning("rule %s: IssuesFound: %s", r.rule, r.details)
        except Exception as e:  # noqa: BLE001
            log.warning("debugger could not finish for %s: %s", job.spec.name, e)
    job.update(status=status, failure_reason=reason, end_time=time.time())
    records.stop_request_path(job.spec.name).unlink(missing_ok=True)
    log.info("training job %s %s in %.1f s", job.spec.name, status, job.record.elapsed_s)
    if job.tracker:
        try:
            job.tracker.finish(status, reason, job.dir)
        except Exception as e:  # noqa: BLE001
            log.warning("MLflow tracking failed at the end of %s: %s", job.spec.name, e)


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM stops a job like Ctrl-C does (status Stopped) when the job runs in the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)

"""One training job as N data-parallel workers on a Ray cluster (Ray Train's TorchTrainer: PyTorch
DistributedDataParallel over gloo on CPUs, NCCL on GPUs, one worker per GPU).

The job's own process keeps what a job owns (record, log, MLflow run, final evaluation and model); the workers
run the recipe's training stages (`StagedTraining`) on their shards and write their progress where the job's
process would: the first worker appends the epochs to the record and the MLflow run, writes the checkpoints and
records the debugger's data, so a distributed job reads like a single one. Every worker reads the data from the
job's data location (a folder on a path all nodes share, or any fsspec URI) through the shared decode cache:
nothing goes through Ray's object store. A lost worker or node is survived by Ray Train's failure handling
(`max_failures`): the worker group starts again and goes on from the last checkpoint, and the record notes it.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from dataclasses import dataclass
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from dogbreed.config import UserError, home, tracking_uri
from dogbreed.jobs import records
from dogbreed.train.calibration import Calibration
from dogbreed.train import presets
from dogbreed.train.callbacks import EarlyStopping, EpochLog
from dogbreed.train.parallel import WorkerGroup
from dogbreed.train.trainer import Callback, Trainer

log = logging.getLogger("dogbreed")


@dataclass(frozen=True)
class WorkerTask:
    """Everything a worker needs, picklable: the job's spec and where its checkpoints are."""
    spec: Any  # TrainingJobSpec
    checkpoint_location: str
    threads: int
    device: str


def result_dir(name: str):
    return records.job_dir(name) / "distributed"


def run_distributed_stages(spec: Any, checkpoint_location: str, device: str) -> tuple[dict[str, torch.Tensor],
                                                                                   dict[str, Any]]:
    """Runs the training stages on `spec.instance_count` workers; returns the trained weights and what the
    stages found (stop reason, calibration, throughput, the first worker's rule verdicts)."""
    try:
        import ray
        from ray.train import FailureConfig, RunConfig, ScalingConfig
        from ray.train.torch import TorchTrainer
    except ImportError:
        raise UserError("instance_count > 1 needs Ray Train: pip install 'ray[train]==2.60.0'") from None
    env = {"DOGBREED_HOME": str(home()), "MLFLOW_TRACKING_URI": tracking_uri()}
    ray.init(address=spec.ray_address or None, ignore_reinit_error=True, log_to_driver=False,
             include_dashboard=False, runtime_env={"env_vars": env})
    use_gpu = device.startswith("cuda")
    cpus = ray.cluster_resources().get("CPU", 1.0)
    per_worker = max(1, int(cpus // spec.instance_count))
    out = result_dir(spec.name)
    out.mkdir(parents=True, exist_ok=True)
    (out / "result.json").unlink(missing_ok=True)
    log.info("training on %d workers (Ray Train, %s), %d CPU(s) each", spec.instance_count,
             "NCCL on GPUs" if use_gpu else "gloo on CPUs", per_worker)
    trainer = TorchTrainer(
        worker_loop, train_loop_config={"task": WorkerTask(spec, checkpoint_location, per_worker, device)},
        scaling_config=ScalingConfig(num_workers=spec.instance_count, use_gpu=use_gpu,
                                     resources_per_worker={"CPU": per_worker}),
        run_config=RunConfig(name=f"{spec.name}-{int(time.time())}", storage_path=str(out / "ray"),
                             failure_config=FailureConfig(max_failures=spec.max_failures)))
    try:
        trainer.fit()
    except Exception as e:  # noqa: BLE001 - Ray wraps the workers' error: keep its first line
        message = str(e).strip().splitlines()
        raise RuntimeError(f"distributed training failed: {message[-1] if message else type(e).__name__}"
                           ) from None
    finally:
        ray.shutdown()
    info = json.loads((out / "result.json").read_text())
    return load_file(out / "model.safetensors"), info


# -- the workers ----------------------------------------------------------------------------------------------

class RecordSink:
    """The first worker's epochs, into the job's record and MLflow run (the job's process waits meanwhile)."""

    def __init__(self, name: str, run_id: str | None):
        self.name = name
        self.tracker = None
        if run_id:
            from dogbreed.jobs.tracking import MlflowTracker

            self.tracker = MlflowTracker()
            self.tracker.run_id = run_id

    def __call__(self, metrics: dict[str, float]) -> None:
        record = records.load(self.name, reconcile=False)
        records.update(record, history=[*record.history, {**metrics, "time": time.time()}])
        if self.tracker:
            self.tracker.log_metrics({k: v for k, v in metrics.items() if k not in ("epoch", "stage")},
                                     step=int(metrics["epoch"]))


class GroupStop(Callback):
    """A stop request (`dogbreed jobs stop`, max_run) seen by any worker stops every worker after the same epoch;
    raising in one worker would leave the others waiting in a collective, and Ray would restart the group."""

    def __init__(self, group: WorkerGroup, name: str, deadline: float | None):
        self.group, self.name, self.deadline = group, name, deadline

    def on_epoch_end(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        asked = records.stop_requested(self.name)
        late = self.deadline is not None and time.time() > self.deadline
        if self.group.any(asked):
            trainer.request_stop("stopped by the user")
        elif self.group.any(late):
            trainer.request_stop("MaxRuntimeExceeded: the job ran longer than max_run")


class RayReport(Callback):
    """Each epoch's metrics to Ray Train as well (its own bookkeeping; every worker reports)."""

    def on_epoch_end(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        import ray.train

        ray.train.report({k: v for k, v in metrics.items() if isinstance(v, (int, float))})


def worker_loop(config: dict[str, Any]) -> None:
    import ray.train

    from dogbreed.models.registry import create_model, get_backbone, with_input_size
    from dogbreed.train.checkpoint import CheckpointStore
    from dogbreed.train.data_prep import prepare_data
    from dogbreed.train.stages import StagedTraining

    task: WorkerTask = config["task"]
    spec, hp = task.spec, task.spec.hyperparameters
    ctx = ray.train.get_context()
    group = WorkerGroup(ctx.get_world_rank(), ctx.get_world_size())
    torch.set_num_threads(task.threads)
    device = task.device
    if device.startswith("cuda"):
        device = f"cuda:{ctx.get_local_rank()}" if ":" not in device else device
    job_dir = records.job_dir(spec.name)
    (result_dir(spec.name) / f"worker-{group.rank}.pid").write_text(str(os.getpid()))

    shape = hp.input_shape()
    backbone = with_input_size(get_backbone(hp.backbone_name), shape[1] if shape else None, hp.resize)
    initial_card = None
    if spec.initial_model:
        from dogbreed.train.job import initial_model
        from dogbreed.data.layout import discover_dataset

        model, initial_card = initial_model(spec.initial_model, backbone,
                                            discover_dataset(spec.data, on_bad_file=spec.on_bad_file))
        imagenet_head = None
    else:
        model, imagenet_head = create_model(backbone, 1, pretrained=bool(hp.use_pretrained_model),
                                            weights_file=hp.weights_file)
    data = prepare_data(spec.data, hp, backbone, spec.on_bad_file, False, lambda: None)
    store = CheckpointStore(task.checkpoint_location)
    resume = store.latest()
    record = records.load(spec.name, reconcile=False)
    if group.is_main:
        from_epoch = resume.global_epoch if resume else 0
        starts = [*record.extra.get("worker_group_starts", []), {
            "time": time.time(), "from_epoch": from_epoch, "workers": group.size}]
        # epochs after the checkpoint (a lost group may have logged one) run again: they are logged again
        records.update(record, extra={**record.extra, "worker_group_starts": starts},
                       history=[h for h in record.history if h.get("epoch", 0) <= from_epoch])
        if len(starts) > 1:
            log.warning("job %s: worker group restarted (start %d), from epoch %d", spec.name, len(starts),
                        starts[-1]["from_epoch"])
    debug, node_usage = None, None
    if spec.debugger is not None and spec.debugger.enabled:
        from dogbreed.debug.hooks import DebugData
        from dogbreed.debug.monitor import DebugSession
        from dogbreed.debug.profiler import SystemSampler

        if group.is_main:  # tensors, steps and rules: the first worker's (every worker trains the same model)
            debug = DebugSession(spec.debugger, job_dir)
            debug.data.meta.update({"workers": group.size, "num_classes": len(data.class_folders)})
            debug.mark("data_ready")
            debug.start()
        else:  # system usage: every node's, gathered into the job's debugger data at the end
            node_usage = SystemSampler(DebugData(), spec.debugger.profiler_interval_ms)
            node_usage.start()
    sink = RecordSink(spec.name, record.mlflow_run_id) if group.is_main else None
    deadline = record.start_time + spec.max_runtime_s if spec.max_runtime_s else None

    def callbacks_for(stage: str) -> list[Callback]:
        cbs: list[Callback] = [GroupStop(group, spec.name, deadline)]
        if sink is not None:
            cbs.insert(0, EpochLog(sink))
        if hp.early_stopping:  # every worker sees the same reduced metrics, so all decide alike
            cbs.append(EarlyStopping(hp.early_stopping_min_epochs, hp.early_stopping_patience,
                                     hp.early_stopping_tolerance))
        if debug is not None:
            cbs += debug.callbacks(stage)
        return [*cbs, RayReport()]

    stages = StagedTraining(hp, backbone, device, callbacks_for, False, lambda: None,
                            initial_weights=initial_card.weights_sha256 if initial_card else None,
                            checkpoints=store, resume=resume, group=group)
    model, info = stages.run(data, model, imagenet_head, keep_head=initial_card is not None)
    images, seconds = group.sum([stages.data_wait.images, stages.data_wait.total_s])
    if spec.debugger is not None and spec.debugger.enabled:
        (node_usage or debug.sampler).stop()
        samples = debug.data.system if debug is not None else node_usage.data.system
        node = f"worker-{group.rank}@{socket.gethostname()}"
        gathered = group.gather([{**row, "node": node} for row in samples])
        if debug is not None:
            debug.data.system[:] = [row for rows in gathered for row in rows]
    if not group.is_main:
        return
    calibration = info.get("calibration")
    result = {"stop_reason": info.get("stop_reason"), "workers": group.size,
              "calibration": calibration.to_dict() if calibration else None,
              "dog_head": presets.has_dog_head(model)}
    if images:
        result["data_wait_share"] = info.get("data_wait_share", 0.0)
        result["train_images_per_s"] = images / (seconds / group.size)  # all workers' images per second of wall
    if debug is not None:
        result["rules"] = {r.rule: r.status for r in debug.finish()}
    out = result_dir(spec.name)
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, out / "model.safetensors")
    (out / "result.json").write_text(json.dumps(result))


def calibration_from(result: dict[str, Any]) -> Calibration | None:
    return Calibration(**result["calibration"]) if result.get("calibration") else None

"""One trial: a full training job, reporting its per-epoch objective to Optuna so weak trials can be stopped early.

`execute_trial` is the unit of work every executor runs: inline, in a worker process, or as a Ray task on any node.
It receives everything it needs in a plain, picklable `TrialTask`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from dogbreed.train.trainer import Callback, Trainer


@dataclass(frozen=True)
class TrialTask:
    tuning_job: str
    trial_id: int
    trial_number: int
    job_name: str
    data: str
    hyperparameters: dict[str, Any]
    storage: str
    config: dict[str, Any]  # TuningConfig.to_dict(): the worker rebuilds the pruner from it
    on_bad_file: str = "error"
    threads: int | None = None
    home: str | None = None  # the dogbreed home every node must share
    tracking_uri: str | None = None
    parent_run_id: str | None = None  # the tuning job's MLflow run
    extra: dict[str, Any] | None = None  # kept in the trial's record (the SDK's estimator settings)
    continue_from: str | None = None  # checkpoint location of the interrupted trial this one reruns


@dataclass(frozen=True)
class TrialOutcome:
    trial_id: int
    trial_number: int
    job_name: str
    status: str  # the training job's status
    value: float | None
    pruned: bool
    reason: str | None
    node: str = ""  # where it ran: Ray node id, else host name


class PruningReporter(Callback):
    """Reports the objective after every epoch; asks the trainer to stop when Optuna's pruner says so."""

    def __init__(self, trial: Any, metric: str):
        self.trial, self.metric = trial, metric
        self.pruned = False
        self.last: float | None = None

    def on_epoch_end(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        value = metrics.get(self.metric)
        if value is None:
            return
        self.last = value
        self.trial.report(value, step=trainer.global_epoch)
        if self.trial.should_prune():
            self.pruned = True
            trainer.request_stop(f"pruned by the tuning job's early stopping at epoch {trainer.global_epoch}")


def _adopt_environment(task: TrialTask) -> None:
    """A worker on another node (or a fresh process) uses the tuning job's home and tracking store; a trial run
    inline changes nothing in the caller's environment."""
    from dogbreed.config import home, tracking_uri

    if task.home and str(home()) != task.home:
        os.environ["DOGBREED_HOME"] = task.home
    if task.tracking_uri and tracking_uri() != task.tracking_uri:
        os.environ["MLFLOW_TRACKING_URI"] = task.tracking_uri


def execute_trial(task: TrialTask) -> TrialOutcome:
    _adopt_environment(task)
    import optuna
    import torch

    from dogbreed.config import Hyperparameters
    from dogbreed.train.job import TrainingJobSpec, run_training_job
    from dogbreed.tune import optuna_private
    from dogbreed.tune.config import TuningConfig
    from dogbreed.tune.space import make_pruner

    if task.threads:
        torch.set_num_threads(task.threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    config = TuningConfig.from_dict(task.config)
    hp = Hyperparameters.from_mapping(task.hyperparameters)
    max_epochs = hp.epochs + (hp.head_epochs if hp.train_mode != "head" else 0)
    study = optuna.load_study(study_name=task.tuning_job, storage=task.storage,
                              pruner=make_pruner(config, max_epochs))
    reporter = PruningReporter(optuna_private.running_trial(study, task.trial_id), config.objective_metric)
    record = run_training_job(TrainingJobSpec(task.job_name, task.data, hp, on_bad_file=task.on_bad_file,
                                              parent=task.tuning_job, progress=False,
                                              parent_run_id=task.parent_run_id, extra=task.extra or {},
                                              continue_from=task.continue_from),
                              callbacks=[reporter])
    value = record.metrics.get(config.objective_metric, reporter.last)
    return TrialOutcome(task.trial_id, task.trial_number, task.job_name, record.status,
                        None if value is None else float(value), reporter.pruned, record.failure_reason,
                        node=_node())


def _node() -> str:
    import socket

    try:
        import ray

        if ray.is_initialized():
            return ray.get_runtime_context().get_node_id()
    except ImportError:
        pass
    return socket.gethostname()

"""Starting a tuning job: everything cheap is validated first, then the record, the Optuna study (with grid points
and warm-start trials) and the MLflow parent run are created and the search runs."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable

import optuna
from optuna.trial import TrialState

from dogbreed.config import Hyperparameters, UserError, home
from dogbreed.data.layout import discover_dataset
from dogbreed.jobs import names, records
from dogbreed.jobs.records import JobRecord
from dogbreed.models.registry import get_backbone
from dogbreed.tune import optuna_private
from dogbreed.tune.config import TuningConfig
from dogbreed.tune.loop import run_tuning
from dogbreed.tune.space import grid_points, grid_size, make_pruner, make_sampler, search_space
from dogbreed.tune.trial import TrialOutcome
from dogbreed.tune.trials import WARM, default_storage, load_study, max_epochs

log = logging.getLogger("dogbreed")


@dataclass(frozen=True)
class TuningJobSpec:
    name: str
    data: str | dict  # a dataset folder/URI, or SageMaker channels
    config: TuningConfig
    executor: str = "local"  # local | ray
    ray_address: str | None = None
    storage: str | None = None
    on_bad_file: str = "error"
    gpus_per_trial: float = 0.0
    register_as: str | None = None  # register the best model under this name when done
    track: bool = True
    extra: dict = field(default_factory=dict)  # kept in the record (the SDK's estimator settings, ...)


def start_tuning_job(spec: TuningJobSpec, on_trial: Callable[[TrialOutcome], None] | None = None) -> JobRecord:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    names.validate(spec.name, "job", names.MAX_TUNING_LENGTH)
    if records.job_dir(spec.name).exists():
        raise UserError(f"job name {spec.name!r} is already used; pick another job name")
    if spec.executor not in ("local", "ray"):
        raise UserError(f"--executor must be local or ray, not {spec.executor!r}")
    if spec.register_as:
        names.validate(spec.register_as, "model")
    config = spec.config
    layout = discover_dataset(spec.data, on_bad_file=spec.on_bad_file)
    if len(layout.classes) < 2:
        raise UserError(f"data in {layout.root} has {len(layout.classes)} class: a classifier needs at least 2")
    base = Hyperparameters.from_mapping(config.static)
    get_backbone(base.backbone_name)
    parents = _check_parents(spec, config)  # a mistake is one line: checked before any warning is printed
    from dogbreed.train.preflight import report, tuning_warnings

    warnings = tuning_warnings(config.static, list(config.ranges), config.objective_metric, layout)
    report(warnings)  # before any trial runs
    if config.strategy == "Grid" and grid_size(config) < config.max_jobs:
        log.info("grid has %d points: max_jobs lowered from %d", grid_size(config), config.max_jobs)
        config = TuningConfig.from_dict({**config.to_dict(), "max_jobs": grid_size(config),
                                         "max_parallel_jobs": min(config.max_parallel_jobs, grid_size(config))})
    storage = spec.storage or default_storage()
    record = records.create(JobRecord(
        name=spec.name, kind="tuning", hyperparameters=config.static, data={"location": spec.data},
        extra={"config": config.to_dict(), "storage": storage, "executor": spec.executor,
               "ray_address": spec.ray_address, "on_bad_file": spec.on_bad_file,
               "gpus_per_trial": spec.gpus_per_trial, "home": str(home()), "register_as": spec.register_as,
               "preflight_warnings": warnings, **spec.extra}))
    if spec.track:
        record = _start_parent_run(record, config)
    study = optuna.create_study(study_name=spec.name, storage=storage,
                                direction="maximize" if config.maximize else "minimize",
                                sampler=make_sampler(config), pruner=make_pruner(config, max_epochs(config)))
    if config.strategy == "Grid":
        for point in grid_points(config):
            study.enqueue_trial(point)
    warm = _add_warm_start_trials(study, config, parents)
    records.update(record, extra={**record.extra, "warm_start_trials": warm})
    return run_tuning(spec.name, on_trial)


def _start_parent_run(record: JobRecord, config: TuningConfig) -> JobRecord:
    """The tuning job's own MLflow run; every trial's run is nested under it."""
    from dogbreed.jobs.tracking import MlflowTracker

    tracker = MlflowTracker()
    params = {**{f"static.{k}": v for k, v in config.static.items()}, "strategy": config.strategy,
              "objective": f"{config.objective_type} {config.objective_metric}", "max_jobs": config.max_jobs,
              "max_parallel_jobs": config.max_parallel_jobs,
              **{f"range.{r.name}": (list(r.values) if r.type == "Categorical" else f"{r.min}..{r.max}")
                 for r in config.ranges}}
    run_id = tracker.start(record.name, "tuning", params)
    return records.update(record, mlflow_run_id=run_id)


def _check_parents(spec: TuningJobSpec, config: TuningConfig) -> list[tuple[JobRecord, TuningConfig]]:
    out = []
    for parent in config.warm_start_parents:
        try:
            rec = records.load(names.validate(parent, "job"))
        except UserError:
            raise UserError(f"warm-start parent {parent!r} does not exist") from None
        if rec.kind != "tuning":
            raise UserError(f"warm-start parent {parent!r} is a {rec.kind} job, not a tuning job")
        pconf = TuningConfig.from_dict(rec.extra["config"])
        if (pconf.objective_metric, pconf.objective_type) != (config.objective_metric, config.objective_type):
            raise UserError(f"warm-start parent {parent!r} has another objective "
                            f"({pconf.objective_type} {pconf.objective_metric})")
        if config.warm_start_type == "IdenticalDataAndAlgorithm":
            if rec.data.get("location") != spec.data or pconf.static != config.static:
                raise UserError(f"warm-start parent {parent!r} used other data or static hyperparameters: "
                                "IdenticalDataAndAlgorithm needs the same; use TransferLearning")
        out.append((rec, pconf))
    return out


def _add_warm_start_trials(study: optuna.Study, config: TuningConfig,
                           parents: list[tuple[JobRecord, TuningConfig]]) -> int:
    """Copies the parents' finished trials into the new study, so the sampler starts informed.

    Trials tried outside the new ranges are left out (TransferLearning lets the ranges change); parameters the new
    job does not tune are dropped."""
    space = search_space(config)
    added = 0
    for rec, _ in parents:
        parent_study = load_study(rec.name, rec.extra["storage"])
        for t in parent_study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            if t.user_attrs.get(WARM):
                continue
            shared = {k: v for k, v in t.params.items() if k in space}
            if any(not optuna_private.contains(space[k], v) for k, v in shared.items()):
                continue  # tried outside the new ranges: says nothing about them
            if config.warm_start_type == "IdenticalDataAndAlgorithm" and len(shared) != len(t.params):
                continue
            if not shared:
                continue
            study.add_trial(optuna.trial.create_trial(
                params=shared, distributions={k: space[k] for k in shared}, value=t.value,
                user_attrs={WARM: rec.name, "job_name": t.user_attrs.get("job_name", "")}))
            added += 1
    return added

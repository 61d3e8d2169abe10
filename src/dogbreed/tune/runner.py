"""The tuning job: asks Optuna for configurations, runs each as a training job, tells Optuna how it went.

State lives in Optuna's storage (SQLite under the dogbreed home by default; any database URL for a cluster), so a
tuning job killed at any moment resumes with `dogbreed tune resume NAME`: finished trials are kept, trials that
were running are marked interrupted and run again. A trial that fails is a FAIL state, never a crash of the job.
"""

from __future__ import annotations

import concurrent.futures
import logging
import math
import multiprocessing
import os
import time
from dataclasses import dataclass
from typing import Any, Callable

import optuna
from optuna.trial import TrialState

from dogbreed.config import Hyperparameters, UserError, home, tracking_uri
from dogbreed.data.layout import discover, resolve_location
from dogbreed.models.registry import get_backbone
from dogbreed.train import records
from dogbreed.train.job import attach_log, detach_log
from dogbreed.train.records import COMPLETED, FAILED, IN_PROGRESS, STOPPED, JobRecord
from dogbreed.tune.config import TuningConfig
from dogbreed.tune.space import grid_points, grid_size, make_pruner, make_sampler, search_space, to_hyperparameters
from dogbreed.tune.trial import TrialOutcome, TrialTask, execute_trial

log = logging.getLogger("dogbreed")
WARM = "warm_start_from"  # user attribute of trials copied from a parent tuning job
INTERRUPTED = "interrupted"


def default_storage() -> str:
    return os.environ.get("DOGBREED_TUNING_STORAGE") or f"sqlite:///{home() / 'tuning.db'}"


@dataclass(frozen=True)
class TuningJobSpec:
    name: str
    data: str
    config: TuningConfig
    executor: str = "local"  # local | ray
    ray_address: str | None = None
    storage: str | None = None
    on_bad_file: str = "error"
    gpus_per_trial: float = 0.0


def _study(name: str, storage: str, config: TuningConfig) -> optuna.Study:
    max_epochs = _max_epochs(config)
    return optuna.load_study(study_name=name, storage=storage, sampler=make_sampler(config),
                             pruner=make_pruner(config, max_epochs))


def _max_epochs(config: TuningConfig) -> int:
    hp = Hyperparameters.from_mapping(config.static)
    epochs = [hp.epochs]
    for r in config.ranges:
        if r.name in ("epochs", "head_epochs") and r.max is not None:
            epochs.append(int(r.max))
    return max(epochs) + (hp.head_epochs if hp.train_mode != "head" else 0)


# -- starting ------------------------------------------------------------------------------------------------


def start_tuning_job(spec: TuningJobSpec, on_trial: Callable[[TrialOutcome], None] | None = None) -> JobRecord:
    """Validates everything cheap, records the job, creates its study (with warm-start trials) and runs it."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    records.validate_name(spec.name)
    if records.job_dir(spec.name).exists():
        raise UserError(f"job name {spec.name!r} is already used; pick another --job-name")
    if spec.executor not in ("local", "ray"):
        raise UserError(f"--executor must be local or ray, not {spec.executor!r}")
    config = spec.config
    discover(resolve_location(spec.data))
    base = Hyperparameters.from_mapping(config.static)
    get_backbone(base.backbone_name)
    if config.strategy == "Grid" and grid_size(config) < config.max_jobs:
        log.info("grid has %d points: max_jobs lowered from %d", grid_size(config), config.max_jobs)
        config = TuningConfig.from_dict({**config.to_dict(), "max_jobs": grid_size(config),
                                         "max_parallel_jobs": min(config.max_parallel_jobs, grid_size(config))})
    storage = spec.storage or default_storage()
    parents = _check_parents(spec, config)
    record = records.create(JobRecord(
        name=spec.name, kind="tuning", hyperparameters=config.static, data={"location": spec.data},
        extra={"config": config.to_dict(), "storage": storage, "executor": spec.executor,
               "ray_address": spec.ray_address, "on_bad_file": spec.on_bad_file,
               "gpus_per_trial": spec.gpus_per_trial, "home": str(home())}))
    study = optuna.create_study(study_name=spec.name, storage=storage,
                                direction="maximize" if config.maximize else "minimize",
                                sampler=make_sampler(config), pruner=make_pruner(config, _max_epochs(config)))
    if config.strategy == "Grid":
        for point in grid_points(config):
            study.enqueue_trial(point)
    warm = _add_warm_start_trials(study, config, parents)
    record = records.update(record, extra={**record.extra, "warm_start_trials": warm})
    return run_tuning(spec.name, on_trial)


def _check_parents(spec: TuningJobSpec, config: TuningConfig) -> list[tuple[JobRecord, TuningConfig]]:
    out = []
    for parent in config.warm_start_parents:
        try:
            rec = records.load(parent)
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
        parent_study = optuna.load_study(study_name=rec.name, storage=rec.extra["storage"])
        for t in parent_study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            if t.user_attrs.get(WARM):
                continue
            shared = {k: v for k, v in t.params.items() if k in space}
            if any(not space[k]._contains(space[k].to_internal_repr(v)) for k, v in shared.items()):
                continue  # tried outside the new ranges: says nothing about them
            if config.warm_start_type == "IdenticalDataAndAlgorithm" and len(shared) != len(t.params):
                continue
            params = shared
            if not params:
                continue
            study.add_trial(optuna.trial.create_trial(
                params=params, distributions={k: space[k] for k in params}, value=t.value,
                user_attrs={WARM: rec.name, "job_name": t.user_attrs.get("job_name", "")}))
            added += 1
    return added


# -- resuming ------------------------------------------------------------------------------------------------


def resume_tuning_job(name: str, on_trial: Callable[[TrialOutcome], None] | None = None) -> JobRecord:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    record = records.load(name)
    if record.kind != "tuning":
        raise UserError(f"{name!r} is a {record.kind} job, not a tuning job")
    if record.status == COMPLETED:
        raise UserError(f"tuning job {name!r} is already complete")
    config = TuningConfig.from_dict(record.extra["config"])
    study = _study(name, record.extra["storage"], config)
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        job_name = t.user_attrs.get("job_name", "")
        job = _load_or_none(job_name)
        if job is not None and job.status in (COMPLETED, STOPPED):
            # The training job finished before the crash; only the bookkeeping was lost: keep its result.
            _tell(study, config, TrialOutcome(t._trial_id, t.number, job_name, job.status,
                                              job.metrics.get(config.objective_metric), job.status == STOPPED,
                                              job.failure_reason))
            continue
        study._storage.set_trial_user_attr(t._trial_id, INTERRUPTED, True)
        study.tell(t.number, state=TrialState.FAIL)
        study.enqueue_trial(t.params, user_attrs={"rerun_of": t.number})
        if job is not None and job.status == IN_PROGRESS:
            records.update(job, status=FAILED, failure_reason="interrupted: the tuning job's process stopped",
                           end_time=time.time())
        log.info("trial %d (%s) was interrupted: it will run again", t.number, job_name)
    records.update(record, status=IN_PROGRESS, failure_reason=None, end_time=None)
    return run_tuning(name, on_trial)


def _load_or_none(name: str) -> JobRecord | None:
    try:
        return records.load(name) if name else None
    except UserError:
        return None


# -- the loop ------------------------------------------------------------------------------------------------


def _tell(study: optuna.Study, config: TuningConfig, outcome: TrialOutcome) -> None:
    if outcome.node:
        study._storage.set_trial_user_attr(outcome.trial_id, "node", outcome.node)
    if outcome.pruned:
        study.tell(outcome.trial_number, state=TrialState.PRUNED)
    elif outcome.status == COMPLETED and outcome.value is not None and math.isfinite(outcome.value):
        study.tell(outcome.trial_number, outcome.value)
    else:
        study._storage.set_trial_user_attr(outcome.trial_id, "failure_reason", outcome.reason or outcome.status)
        study.tell(outcome.trial_number, state=TrialState.FAIL)


def own_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The tuning job's own training jobs: not warm-start copies, not runs cut off by a crash."""
    return [t for t in study.get_trials(deepcopy=False)
            if not t.user_attrs.get(WARM) and not t.user_attrs.get(INTERRUPTED)]


def _criteria_met(study: optuna.Study, config: TuningConfig, started: float) -> str | None:
    done = [t for t in own_trials(study) if t.state == TrialState.COMPLETE]
    if done and config.target_objective_value is not None:
        best = max(t.value for t in done) if config.maximize else min(t.value for t in done)
        if (best >= config.target_objective_value) if config.maximize else (best <= config.target_objective_value):
            return f"target objective value {config.target_objective_value} reached"
    if config.max_jobs_without_improvement and done:
        finished = sorted((t for t in own_trials(study) if t.state.is_finished()), key=lambda t: t.number)
        best_at, best = None, None
        for i, t in enumerate(finished):
            if t.state == TrialState.COMPLETE and (best is None or (t.value > best if config.maximize else t.value < best)):
                best, best_at = t.value, i
        if best_at is not None and len(finished) - 1 - best_at >= config.max_jobs_without_improvement:
            return f"no improvement over {config.max_jobs_without_improvement} jobs"
    if config.max_runtime_seconds is not None and time.time() - started >= config.max_runtime_seconds:
        return f"maximum runtime of {config.max_runtime_seconds:.0f} s reached"
    return None


class _Executor:
    """Runs TrialTasks: inline, in worker processes, or as Ray tasks. `submit` then `wait_one`."""

    def __init__(self, kind: str, parallel: int, ray_address: str | None, gpus: float):
        self.kind, self.parallel = kind, parallel
        self.pending: dict[Any, TrialTask] = {}
        self.pool = None
        self.ray_fn = None
        if kind == "ray":
            try:
                import ray
            except ImportError:
                raise UserError("the Ray executor needs Ray: pip install 'ray==2.60.0'") from None
            ray.init(address=ray_address or None, ignore_reinit_error=True, log_to_driver=False,
                     include_dashboard=False, runtime_env={"env_vars": {"DOGBREED_HOME": str(home())}})
            cpus = max(1, int(ray.available_resources().get("CPU", 1) // parallel))
            self.ray_fn = ray.remote(num_cpus=cpus, num_gpus=gpus, max_retries=0)(execute_trial)
        elif parallel > 1:
            # spawn: each trial process starts clean (no forked torch thread pools)
            self.pool = concurrent.futures.ProcessPoolExecutor(parallel, mp_context=multiprocessing.get_context("spawn"))

    def threads(self) -> int:
        return max(1, (os.cpu_count() or 1) // self.parallel)

    def submit(self, task: TrialTask) -> None:
        if self.ray_fn is not None:
            self.pending[self.ray_fn.remote(task)] = task
        elif self.pool is not None:
            self.pending[self.pool.submit(execute_trial, task)] = task
        else:
            self.pending[("inline", task.trial_id)] = task

    def wait_one(self) -> TrialOutcome:
        if self.ray_fn is not None:
            import ray

            [ref], _ = ray.wait(list(self.pending), num_returns=1)
            task = self.pending.pop(ref)
            return self._guard(task, lambda: ray.get(ref))
        if self.pool is not None:
            done, _ = concurrent.futures.wait(list(self.pending), return_when=concurrent.futures.FIRST_COMPLETED)
            fut = next(iter(done))
            task = self.pending.pop(fut)
            return self._guard(task, fut.result)
        key = next(iter(self.pending))
        task = self.pending.pop(key)
        return self._guard(task, lambda: execute_trial(task))

    @staticmethod
    def _guard(task: TrialTask, get: Callable[[], TrialOutcome]) -> TrialOutcome:
        """A trial that could not even run (worker died, bad configuration) is a failed trial, not a crash."""
        try:
            return get()
        except KeyboardInterrupt:
            raise
        except BaseException as e:
            reason = f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"
            job = _load_or_none(task.job_name)
            if job is not None and job.status == IN_PROGRESS:
                records.update(job, status=FAILED, failure_reason=reason, end_time=time.time())
            return TrialOutcome(task.trial_id, task.trial_number, task.job_name, FAILED, None, False, reason)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
        if self.ray_fn is not None:
            import ray

            ray.shutdown()


def run_tuning(name: str, on_trial: Callable[[TrialOutcome], None] | None = None) -> JobRecord:
    record = records.load(name)
    config = TuningConfig.from_dict(record.extra["config"])
    storage = record.extra["storage"]
    study = _study(name, storage, config)
    space = search_space(config)
    executor = _Executor(record.extra["executor"], config.max_parallel_jobs, record.extra.get("ray_address"),
                         float(record.extra.get("gpus_per_trial") or 0))
    handler = attach_log(records.job_dir(name) / "tuning.log")
    stop_reason = None
    try:
        while True:
            finished = [t for t in own_trials(study) if t.state.is_finished()]
            stop_reason = _criteria_met(study, config, record.start_time)
            can_start = len(finished) + len(executor.pending) < config.max_jobs and stop_reason is None
            if can_start and len(executor.pending) < config.max_parallel_jobs:
                trial = study.ask(fixed_distributions=space)
                job_name = f"{name}-{trial.number:03d}"
                trial.set_user_attr("job_name", job_name)
                hp = {**config.static, **to_hyperparameters(trial.params)}
                executor.submit(TrialTask(
                    tuning_job=name, trial_id=trial._trial_id, trial_number=trial.number, job_name=job_name,
                    data=record.data["location"], hyperparameters=hp, storage=storage, config=config.to_dict(),
                    on_bad_file=record.extra.get("on_bad_file", "error"), threads=executor.threads(),
                    home=str(home()), tracking_uri=tracking_uri()))
                log.info("trial %d started as training job %s: %s", trial.number, job_name,
                         to_hyperparameters(trial.params))
                continue
            if not executor.pending:
                break
            outcome = executor.wait_one()
            _tell(study, config, outcome)
            log.info("trial %d (%s) ended %s%s, objective %s", outcome.trial_number, outcome.job_name,
                     outcome.status, " (pruned)" if outcome.pruned else "", outcome.value)
            if on_trial:
                on_trial(outcome)
            record = _update_counts(record, study, config)
        if stop_reason:
            log.info("tuning job %s: %s", name, stop_reason)
        if config.two_stage_top:
            _second_stage(name, record, study, config)
        record = _finish(name, study, config, stop_reason)
    except KeyboardInterrupt:
        record = records.update(records.load(name), status=STOPPED, failure_reason="stopped by the user",
                                end_time=time.time())
    finally:
        executor.close()
        detach_log(handler)
    return record


def _update_counts(record: JobRecord, study: optuna.Study, config: TuningConfig) -> JobRecord:
    counts: dict[str, int] = {}
    for t in own_trials(study):
        counts[t.state.name] = counts.get(t.state.name, 0) + 1
    best = best_trial(study, config)
    extra = {**record.extra, "trial_counts": counts,
             "best_training_job": best.user_attrs.get("job_name") if best else None,
             "best_objective_value": best.value if best else None}
    return records.update(record, extra=extra)


def best_trial(study: optuna.Study, config: TuningConfig) -> optuna.trial.FrozenTrial | None:
    done = [t for t in own_trials(study) if t.state == TrialState.COMPLETE]
    if not done:
        return None
    return max(done, key=lambda t: t.value) if config.maximize else min(done, key=lambda t: t.value)


def _second_stage(name: str, record: JobRecord, study: optuna.Study, config: TuningConfig) -> None:
    """Fine-tunes the best configurations found on cached features end to end, as extra training jobs."""
    from dogbreed.config import Hyperparameters as HP
    from dogbreed.train.job import TrainingJobSpec, run_training_job

    done = sorted((t for t in own_trials(study) if t.state == TrialState.COMPLETE), key=lambda t: t.value,
                  reverse=config.maximize)[: config.two_stage_top]
    finetuned = []
    for i, t in enumerate(done):
        job_name = f"{name}-ft{i}"
        if _load_or_none(job_name) is not None:  # done before a crash
            job = records.load(job_name)
        else:
            hp = HP.from_mapping({**config.static, **to_hyperparameters(t.params), **config.two_stage_overrides})
            job = run_training_job(TrainingJobSpec(job_name, record.data["location"], hp, parent=name,
                                                   on_bad_file=record.extra.get("on_bad_file", "error"),
                                                   progress=False))
        finetuned.append({"job": job_name, "from_trial": t.number, "status": job.status,
                          "objective": job.metrics.get(config.objective_metric)})
        log.info("second stage: %s from trial %d: %s", job_name, t.number, finetuned[-1]["objective"])
    rec = records.load(name)
    records.update(rec, extra={**rec.extra, "second_stage": finetuned})


def _finish(name: str, study: optuna.Study, config: TuningConfig, stop_reason: str | None) -> JobRecord:
    from dogbreed.tune.analytics import write_reports

    record = _update_counts(records.load(name), study, config)
    best = best_trial(study, config)
    best_job, best_value = (best.user_attrs.get("job_name"), best.value) if best else (None, None)
    for ft in record.extra.get("second_stage", []):
        v = ft.get("objective")
        if ft["status"] == COMPLETED and v is not None and (
                best_value is None or (v > best_value if config.maximize else v < best_value)):
            best_job, best_value = ft["job"], v
    extra = {**record.extra, "best_training_job": best_job, "best_objective_value": best_value,
             "completion_reason": stop_reason or "max_jobs reached"}
    registered = None
    if best_job:
        try:
            from dogbreed.train.registry import register_job

            registered = register_job(best_job, name).to_dict()
        except Exception as e:  # the search itself succeeded; say why registering did not
            log.warning("could not register the best model of %s: %s", name, e)
    extra["registered_model"] = registered
    record = records.update(record, extra=extra)
    write_reports(name)
    status = COMPLETED if best_job else FAILED
    reason = None if best_job else "no trial completed"
    return records.update(records.load(name), status=status, failure_reason=reason, end_time=time.time())

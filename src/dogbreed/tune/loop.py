"""The tuning job's loop: asks Optuna for configurations, runs each as a training job on an executor, tells
Optuna how it went, until max_jobs, a completion criterion, or a stop request.

State lives in Optuna's storage (SQLite under the dogbreed home by default; any database URL for a cluster), so a
tuning job killed at any moment resumes with `dogbreed tune resume NAME`.
"""

from __future__ import annotations

import logging
import time
from typing import Callable

import optuna
from optuna.trial import TrialState

from dogbreed.config import tracking_uri, home
from dogbreed.jobs import logs, records
from dogbreed.jobs.control import StopRequested, check_stop
from dogbreed.jobs.process import Heartbeat
from dogbreed.jobs.records import STOPPED, JobRecord
from dogbreed.tune import optuna_private
from dogbreed.tune.config import TuningConfig
from dogbreed.tune.executors import TrialExecutor
from dogbreed.tune.space import search_space, to_hyperparameters
from dogbreed.tune.trial import TrialOutcome, TrialTask
from dogbreed.tune.trials import load_study, own_trials, tell, update_counts

log = logging.getLogger("dogbreed")


def interrupted_checkpoint(study: optuna.Study, trial: optuna.Trial) -> str | None:
    """A rerun of a trial cut off by a crash starts from that trial's last checkpoint, not from scratch."""
    from dogbreed.train.job import checkpoint_location

    rerun_of = trial.user_attrs.get("rerun_of")
    if rerun_of is None:
        return None
    old = study.trials[rerun_of].user_attrs.get("job_name")
    if not old or not records.exists(old):
        return None
    return checkpoint_location(old, records.load(old).extra.get("checkpoint_uri"))


def trial_job_name(tuning_job: str, number: int) -> str:
    return f"{tuning_job}-{number:03d}"


def run_tuning(name: str, on_trial: Callable[[TrialOutcome], None] | None = None) -> JobRecord:
    from dogbreed.tune.finish import finish, second_stage

    record = records.load(name)
    config = TuningConfig.from_dict(record.extra["config"])
    storage = record.extra["storage"]
    study = load_study(name, storage, config)
    space = search_space(config)
    handler = logs.attach(records.job_dir(name) / "tuning.log")
    heartbeat = Heartbeat(records.heartbeat_path(name)).start()
    executor = None
    stop_reason = None
    try:
        executor = TrialExecutor(record.extra["executor"], config.max_parallel_jobs, record.extra.get("ray_address"),
                                 float(record.extra.get("gpus_per_trial") or 0))
        while True:
            check_stop(name)
            finished = [t for t in own_trials(study) if t.state.is_finished()]
            stop_reason = criteria_met(study, config, record.start_time)
            can_start = len(finished) + len(executor.pending) < config.max_jobs and stop_reason is None
            if can_start and len(executor.pending) < config.max_parallel_jobs:
                trial = study.ask(fixed_distributions=space)
                job_name = trial_job_name(name, trial.number)
                trial.set_user_attr("job_name", job_name)
                hp = {**config.static, **to_hyperparameters(trial.params)}
                executor.submit(TrialTask(
                    tuning_job=name, trial_id=optuna_private.trial_id(trial), trial_number=trial.number,
                    job_name=job_name, data=record.data["location"], hyperparameters=hp, storage=storage,
                    config=config.to_dict(), on_bad_file=record.extra.get("on_bad_file", "error"),
                    threads=executor.threads(), home=str(home()), tracking_uri=tracking_uri(),
                    parent_run_id=record.mlflow_run_id, extra=trial_extra(record, trial.params),
                    continue_from=interrupted_checkpoint(study, trial)))
                log.info("trial %d started as training job %s: %s", trial.number, job_name,
                         to_hyperparameters(trial.params))
                continue
            if not executor.pending:
                break
            outcome = executor.wait_one()
            tell(study, outcome)
            log.info("trial %d (%s) ended %s%s, objective %s", outcome.trial_number, outcome.job_name,
                     outcome.status, " (pruned)" if outcome.pruned else "", outcome.value)
            record = update_counts(record, study, config)
            _log_progress(record, config)
            if on_trial:
                on_trial(outcome)
        if stop_reason:
            log.info("tuning job %s: %s", name, stop_reason)
        if config.two_stage_top:
            second_stage(name, record, study, config)
        record = finish(name, study, config, stop_reason)
    except (KeyboardInterrupt, StopRequested):
        record = records.update(records.load(name), status=STOPPED, failure_reason="stopped by the user",
                                end_time=time.time())
        _end_parent_run(record)
    finally:
        if executor is not None:
            executor.close()
        heartbeat.stop()
        records.stop_request_path(name).unlink(missing_ok=True)
        logs.detach(handler)
    return record


# What a trial's record keeps of its tuning job's SDK settings, so `Estimator.attach(trial)` rebuilds it.
SDK_SETTINGS = ("image_uri", "role", "instance_type", "instance_count", "output_path", "max_run", "volume_size",
                "input_mode")


def trial_extra(record: JobRecord, params: dict) -> dict:
    extra = {k: record.extra[k] for k in SDK_SETTINGS if record.extra.get(k) is not None}
    static = record.extra.get("sagemaker_static_hyperparameters")
    if static is not None:
        tuned = {k: str(v) for k, v in to_hyperparameters(params).items()}
        extra["sagemaker_hyperparameters"] = {**{k: str(v) for k, v in static.items()}, **tuned}
    return extra


def _log_progress(record: JobRecord, config: TuningConfig) -> None:
    counts = record.extra.get("trial_counts", {})
    done = sum(v for k, v in counts.items() if k in ("COMPLETE", "PRUNED", "FAIL"))
    log.info("tuning job %s: %d of %d trials done (%d running), best so far %s (%s)", record.name, done,
             config.max_jobs, counts.get("RUNNING", 0), record.extra.get("best_objective_value"),
             record.extra.get("best_training_job"))


def _end_parent_run(record: JobRecord) -> None:
    if record.mlflow_run_id:
        from dogbreed.jobs.tracking import end_run

        end_run(record.mlflow_run_id, record.status, record.failure_reason)


def criteria_met(study: optuna.Study, config: TuningConfig, started: float) -> str | None:
    """SageMaker's completion criteria: target objective value, no improvement over N jobs, maximum runtime."""
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

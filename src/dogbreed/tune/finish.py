"""The end of a tuning job: the optional second stage (the best configurations fine-tuned end to end), the best
training job, the model registered when asked, the analytics written, the MLflow parent run ended."""

from __future__ import annotations

import logging
import time

import optuna
from optuna.trial import TrialState

from dogbreed.config import Hyperparameters
from dogbreed.jobs import records
from dogbreed.jobs.records import COMPLETED, FAILED, JobRecord
from dogbreed.tune.config import TuningConfig
from dogbreed.tune.space import to_hyperparameters
from dogbreed.tune.trials import best_trial, own_trials, update_counts

log = logging.getLogger("dogbreed")


def second_stage(name: str, record: JobRecord, study: optuna.Study, config: TuningConfig) -> None:
    """Fine-tunes the best configurations found on cached features end to end, as extra training jobs."""
    from dogbreed.train.job import TrainingJobSpec, run_training_job

    done = sorted((t for t in own_trials(study) if t.state == TrialState.COMPLETE), key=lambda t: t.value,
                  reverse=config.maximize)[: config.two_stage_top]
    finetuned = []
    for i, t in enumerate(done):
        job_name = f"{name}-ft{i}"
        if records.exists(job_name) and records.load(job_name).ended:  # done before a crash
            job = records.load(job_name)
        else:
            if records.exists(job_name):  # cut off by a crash: run it again from the start
                import shutil

                shutil.rmtree(records.job_dir(job_name))
            hp = Hyperparameters.from_mapping({**config.static, **to_hyperparameters(t.params),
                                               **config.two_stage_overrides})
            job = run_training_job(TrainingJobSpec(job_name, record.data["location"], hp, parent=name,
                                                   on_bad_file=record.extra.get("on_bad_file", "error"),
                                                   progress=False, parent_run_id=record.mlflow_run_id))
        finetuned.append({"job": job_name, "from_trial": t.number, "status": job.status,
                          "objective": job.metrics.get(config.objective_metric)})
        log.info("second stage: %s from trial %d: %s", job_name, t.number, finetuned[-1]["objective"])
    rec = records.load(name, reconcile=False)
    records.update(rec, extra={**rec.extra, "second_stage": finetuned})


def finish(name: str, study: optuna.Study, config: TuningConfig, stop_reason: str | None) -> JobRecord:
    from dogbreed.tune.analytics import write_reports

    record = update_counts(records.load(name, reconcile=False), study, config)
    best = best_trial(study, config)
    best_job, best_value = (best.user_attrs.get("job_name"), best.value) if best else (None, None)
    for ft in record.extra.get("second_stage", []):
        v = ft.get("objective")
        if ft["status"] == COMPLETED and v is not None and (
                best_value is None or (v > best_value if config.maximize else v < best_value)):
            best_job, best_value = ft["job"], v
    extra = {**record.extra, "best_training_job": best_job, "best_objective_value": best_value,
             "completion_reason": stop_reason or "max_jobs reached"}
    register_as = record.extra.get("register_as")
    registered = None
    if best_job and register_as:
        try:
            from dogbreed.jobs.model_registry import register_job

            registered = register_job(best_job, register_as).to_dict()
        except Exception as e:  # noqa: BLE001 - the search itself succeeded; say why registering did not
            log.warning("could not register the best model of %s: %s", name, e)
    extra["registered_model"] = registered
    record = records.update(record, extra=extra)
    write_reports(name)
    status = COMPLETED if best_job else FAILED
    reason = None if best_job else "no trial completed"
    record = records.update(records.load(name, reconcile=False), status=status, failure_reason=reason,
                            end_time=time.time())
    if record.mlflow_run_id:
        from dogbreed.jobs.tracking import MlflowTracker, end_run

        tracker = MlflowTracker()
        tracker.run_id = record.mlflow_run_id
        if best_value is not None:
            tracker.log_metrics({f"best.{config.objective_metric}": best_value}, step=0)
            tracker.set_tags({"dogbreed.best_training_job": best_job})
        tracker.log_artifacts(records.job_dir(name))
        end_run(record.mlflow_run_id, status, reason)
    return record

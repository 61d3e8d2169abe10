"""`dogbreed tune resume NAME`: after a crash (even SIGKILL) nothing finished is lost or rerun; trials that were
running when it happened run again, once, under new numbers."""

from __future__ import annotations

import logging
import time
from typing import Callable

from optuna.trial import TrialState

from dogbreed.config import UserError
from dogbreed.jobs import records
from dogbreed.jobs.records import COMPLETED, FAILED, IN_PROGRESS, STOPPED, JobRecord
from dogbreed.tune import optuna_private
from dogbreed.tune.config import TuningConfig
from dogbreed.tune.loop import run_tuning
from dogbreed.tune.trial import TrialOutcome
from dogbreed.tune.trials import load_study, mark_interrupted, tell

log = logging.getLogger("dogbreed")


def resume_tuning_job(name: str, on_trial: Callable[[TrialOutcome], None] | None = None) -> JobRecord:
    record = records.load(name)
    if record.kind != "tuning":
        raise UserError(f"{name!r} is a {record.kind} job, not a tuning job")
    if record.status == COMPLETED:
        raise UserError(f"tuning job {name!r} is already complete")
    record = records.claim(record, status=IN_PROGRESS, failure_reason=None, end_time=None)
    config = TuningConfig.from_dict(record.extra["config"])
    study = load_study(name, record.extra["storage"])
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        job_name = t.user_attrs.get("job_name", "")
        job = records.load(job_name) if job_name and records.exists(job_name) else None
        if job is not None and job.status in (COMPLETED, STOPPED) and job.end_time:
            # The training job finished before the crash; only the bookkeeping was lost: keep its result.
            tell(study, TrialOutcome(optuna_private.trial_id(t), t.number, job_name, job.status,
                                     job.metrics.get(config.objective_metric), job.status == STOPPED,
                                     job.failure_reason))
            continue
        mark_interrupted(study, t)
        if job is not None and job.status == IN_PROGRESS:
            records.update(job, status=FAILED, failure_reason="interrupted: the tuning job's process stopped",
                           end_time=time.time())
        log.info("trial %d (%s) was interrupted: it will run again", t.number, job_name)
    if record.mlflow_run_id:
        from dogbreed.jobs.tracking import MlflowTracker

        MlflowTracker.resume(record.mlflow_run_id)
    return run_tuning(name, on_trial)

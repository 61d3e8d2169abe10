"""What a user does to a job from outside it: stop it cleanly (SageMaker's StopTrainingJob) or delete it.

A stop is a request the job's own process sees (a file in the job folder, checked between steps and batches,
readable across hosts on a shared home): the job ends Stopped with its log and checkpoints in place. Only a job
that does not react within the grace period is sent SIGTERM.
"""

from __future__ import annotations

import shutil
import time

from dogbreed.config import UserError
from dogbreed.jobs import records
from dogbreed.jobs.process import ProcessIdentity, stop_processes
from dogbreed.jobs.records import IN_PROGRESS, JobRecord


class StopRequested(Exception):
    """Raised inside a job when `dogbreed jobs stop` asked it to stop."""


def check_stop(name: str) -> None:
    if records.stop_requested(name):
        raise StopRequested(f"job {name} was asked to stop")


def request_stop(name: str) -> JobRecord:
    """Asks a running job (and, for a tuning job, its running trials) to stop; returns at once."""
    record = records.load(name)
    if record.ended:
        raise UserError(f"job {name!r} is not running (status {record.status})")
    records.stop_request_path(name).touch()
    if record.kind == "tuning":
        for child in records.list_records(parent=name):
            if child.status == IN_PROGRESS:
                records.stop_request_path(child.name).touch()
    return record


def stop_job(name: str, grace: float = 60.0) -> JobRecord:
    """Stops a job and waits until it has; a job that ignores the request past `grace` seconds is terminated."""
    record = request_stop(name)
    deadline = time.time() + grace
    while time.time() < deadline:
        current = records.load(name)
        if current.ended:
            return current
        time.sleep(0.2)
    owner = ProcessIdentity.from_dict(record.owner)
    if owner is not None and owner.local:
        stop_processes([owner], timeout=15.0)
    return records.load(name)


def delete_job(name: str) -> list[str]:
    """Deletes an ended job's folder and MLflow run; a tuning job's trials and study go with it.
    Returns the names deleted."""
    record = records.load(name)
    if not record.ended:
        raise UserError(f"job {name!r} is still running; stop it first with `dogbreed jobs stop {name}`")
    doomed = [record]
    if record.kind == "tuning":
        doomed += records.list_records(parent=name)
        if any(not r.ended for r in doomed):
            raise UserError(f"a trial of tuning job {name!r} is still running")
    _refuse_if_registered_from_folder([r.name for r in doomed])
    for r in doomed:
        if r.mlflow_run_id:
            _delete_run(r.mlflow_run_id)
        shutil.rmtree(records.job_dir(r.name), ignore_errors=True)
    if record.kind == "tuning" and record.extra.get("storage"):
        _delete_study(name, record.extra["storage"])
    return [r.name for r in doomed]


def _refuse_if_registered_from_folder(job_names: list[str]) -> None:
    """A registered version of an untracked job points at the job's folder: deleting it would break the model."""
    from dogbreed.jobs.tracking import client

    folders = {str(records.job_dir(n)) for n in job_names}
    try:
        versions = client().search_model_versions("")
    except Exception:  # noqa: BLE001 - no registry reachable: nothing registered to protect
        return
    for v in versions:
        if any(str(v.source).startswith(f) for f in folders):
            raise UserError(f"model {v.name}:{v.version} is registered from job {v.tags.get('dogbreed.job')}'s "
                            f"folder; delete that version first (`dogbreed models delete {v.name} --version "
                            f"{v.version}`)")


def _delete_run(run_id: str) -> None:
    from dogbreed.jobs.tracking import client

    try:
        client().delete_run(run_id)
    except Exception:  # noqa: BLE001 - the run may be gone already, or tracking may be elsewhere
        pass


def _delete_study(name: str, storage: str) -> None:
    import optuna

    try:
        optuna.delete_study(study_name=name, storage=storage)
    except Exception:  # noqa: BLE001 - already gone
        pass

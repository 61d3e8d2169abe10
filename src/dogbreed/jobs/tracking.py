"""MLflow tracking of jobs through MlflowClient (no global active run, so parallel trials do not collide).

Where artifacts go is decided here, once: with a local tracking store (SQLite, the default, or a file store),
under the dogbreed home; with a tracking server, wherever the server keeps them. Never `./mlruns` in whatever
folder the user happened to start from.
"""

from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path
from typing import Any

from dogbreed.config import home, tracking_uri

EXPERIMENT = "dogbreed"
MLFLOW_STATUS = {"Completed": "FINISHED", "Failed": "FAILED", "Stopped": "KILLED", "InProgress": "RUNNING"}
# A job folder's working files: checkpoints (the job's own, large, kept where the job can resume from them),
# liveness and stop markers
NOT_ARTIFACTS = {"checkpoints", "heartbeat", "stop-requested"}
log = logging.getLogger("dogbreed")


def client(uri: str | None = None) -> Any:
    # MLflow sets its logger from this when first imported; its INFO lines ("Creating initial MLflow database
    # tables...") would otherwise land in notebooks and on the CLI's stderr. A value the user set is kept.
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    from mlflow.tracking import MlflowClient

    uri = uri or tracking_uri()
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def artifact_location(uri: str) -> str | None:
    """Artifact root for a new experiment: under the home for local stores; the server's own for remote ones."""
    if uri.split(":", 1)[0] in ("http", "https", "databricks"):
        return None
    return (home() / "mlartifacts").as_uri()


def experiment_id(mlflow_client: Any, name: str = EXPERIMENT) -> str:
    from mlflow.exceptions import MlflowException

    exp = mlflow_client.get_experiment_by_name(name)
    if exp:
        return exp.experiment_id
    try:
        return mlflow_client.create_experiment(name, artifact_location=artifact_location(mlflow_client.tracking_uri))
    except MlflowException:  # created meanwhile by a parallel trial
        return mlflow_client.get_experiment_by_name(name).experiment_id


class MlflowTracker:
    """One job's MLflow run: params at the start, metrics as they come, artifacts and status at the end."""

    def __init__(self, uri: str | None = None, experiment: str = EXPERIMENT):
        self.client = client(uri)
        self.experiment_id = experiment_id(self.client, experiment)
        self.run_id: str | None = None

    def start(self, name: str, kind: str, params: dict[str, Any], tags: dict[str, str] | None = None,
              parent_run_id: str | None = None) -> str:
        tags = {"dogbreed.job": name, "dogbreed.kind": kind, **(tags or {})}
        if parent_run_id:
            tags["mlflow.parentRunId"] = parent_run_id  # nests the run under its tuning job in the MLflow UI
        run = self.client.create_run(self.experiment_id, run_name=name, tags=tags)
        self.run_id = run.info.run_id
        self.log_params(params)
        return self.run_id

    @classmethod
    def resume(cls, run_id: str) -> "MlflowTracker":
        """The tracker of an existing run (a resumed job continues its run rather than starting another)."""
        tracker = cls()
        tracker.run_id = run_id
        tracker.client.update_run(run_id, status="RUNNING")
        return tracker

    def log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in sorted(params.items())]
        for i in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[i:i + 100])

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, step) for k, v in metrics.items()
                 if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)]
        if items and self.run_id:
            self.client.log_batch(self.run_id, metrics=items)

    def log_dataset(self, name: str, source: str, digest: str, context: str, profile: dict[str, Any]) -> None:
        """The data a job trained or evaluated on, as an MLflow dataset input (shown in the run's Datasets)."""
        import json

        from mlflow.entities import Dataset, DatasetInput, InputTag

        source_type = source.split("://", 1)[0] if "://" in source else "local"
        dataset = Dataset(name=name, digest=digest[:36], source_type=source_type,
                          source=json.dumps({"uri": source}), profile=json.dumps(profile))
        self.client.log_inputs(self.run_id, datasets=[DatasetInput(dataset, [InputTag("mlflow.data.context",
                                                                                         context)])])

    def set_tags(self, tags: dict[str, str]) -> None:
        for k, v in tags.items():
            self.client.set_tag(self.run_id, k, str(v)[:5000])

    def log_artifacts(self, folder: Path, path: str | None = None) -> None:
        if not (self.run_id and folder.exists()):
            return
        for child in sorted(folder.iterdir()):
            if child.name in NOT_ARTIFACTS or child.name.startswith("."):
                continue
            if child.is_dir():
                self.client.log_artifacts(self.run_id, str(child), f"{path}/{child.name}" if path else child.name)
            else:
                self.client.log_artifact(self.run_id, str(child), path)

    def finish(self, status: str, reason: str | None, artifacts: Path | None) -> None:
        if not self.run_id:
            return
        try:
            if artifacts is not None:
                self.log_artifacts(artifacts)
        finally:
            end_run(self.run_id, status, reason, self.client)


def end_run(run_id: str, status: str, reason: str | None = None, mlflow_client: Any = None) -> None:
    """Ends an MLflow run with the job's status; never raises (tracking must not turn a result into a crash)."""
    try:
        c = mlflow_client or client()
        c.set_tag(run_id, "dogbreed.status", status)
        if reason:
            c.set_tag(run_id, "dogbreed.failure_reason", reason[:5000])
        c.set_terminated(run_id, status=MLFLOW_STATUS.get(status, "FAILED"))
    except Exception as e:  # noqa: BLE001 - a tracking server that is down must not hide the job's own status
        log.warning("could not end MLflow run %s: %s", run_id, e)

"""MLflow tracking of jobs through MlflowClient (no global active run, so parallel trials do not collide)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import os

from dogbreed.config import home, tracking_uri

EXPERIMENT = "dogbreed"
_STATUS = {"Completed": "FINISHED", "Failed": "FAILED", "Stopped": "KILLED"}
log = logging.getLogger("dogbreed")


class MlflowTracker:
    def __init__(self, uri: str | None = None, experiment: str = EXPERIMENT):
        from mlflow.tracking import MlflowClient

        self.uri = uri or tracking_uri()
        self.client = MlflowClient(tracking_uri=self.uri)
        exp = self.client.get_experiment_by_name(experiment)
        if exp:
            self.experiment_id = exp.experiment_id
        else:
            # With the default SQLite store, artifacts go under the dogbreed home too (MLflow's default is ./mlruns).
            location = None if os.environ.get("MLFLOW_TRACKING_URI") else (home() / "mlartifacts").as_uri()
            self.experiment_id = self.client.create_experiment(experiment, artifact_location=location)
        self.run_id: str | None = None

    def start(self, name: str, kind: str, params: dict[str, Any], tags: dict[str, str] | None = None) -> str:
        from mlflow.entities import Param

        run = self.client.create_run(self.experiment_id, run_name=name,
                                     tags={"dogbreed.job": name, "dogbreed.kind": kind, **(tags or {})})
        self.run_id = run.info.run_id
        items = [Param(k, str(v)[:6000]) for k, v in sorted(params.items())]
        for i in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[i:i + 100])
        return self.run_id

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        import math
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, step) for k, v in metrics.items()
                 if isinstance(v, (int, float)) and math.isfinite(v)]
        if items and self.run_id:
            self.client.log_batch(self.run_id, metrics=items)

    def finish(self, status: str, reason: str | None, artifacts: Path | None) -> None:
        if not self.run_id:
            return
        try:
            if artifacts is not None and artifacts.exists():
                self.client.log_artifacts(self.run_id, str(artifacts))
            self.client.set_tag(self.run_id, "dogbreed.status", status)
            if reason:
                self.client.set_tag(self.run_id, "dogbreed.failure_reason", reason[:5000])
        finally:
            self.client.set_terminated(self.run_id, status=_STATUS.get(status, "FAILED"))

"""Analytics of tuning and training jobs as pandas DataFrames, with the SageMaker SDK's classes and columns
(`sagemaker.analytics`).

`HyperparameterTuningJobAnalytics(name).dataframe()` has one row per training job, newest first (the order
SageMaker's API returned them in the seed notebook): one column per tuned hyperparameter, then TrainingJobName,
TrainingJobStatus, FinalObjectiveValue, TrainingStartTime, TrainingEndTime (UTC), TrainingElapsedTimeSeconds.
FinalObjectiveValue follows SageMaker's definition for this algorithm: the value the job reported last (the last
epoch's, which is also the final model's; for an early-stopped trial, its last epoch before the stop).
"""

from __future__ import annotations

from typing import Any

from dogbreed import describe
from dogbreed.jobs import records


class AnalyticsMetricsBase:
    def __init__(self) -> None:
        self._dataframe = None

    def export_csv(self, filename: str) -> None:
        self.dataframe().to_csv(filename)

    def dataframe(self, force_refresh: bool = False) -> Any:
        if force_refresh:
            self.clear_cache()
        if self._dataframe is None:
            self._dataframe = self._fetch_dataframe()
        return self._dataframe

    def clear_cache(self) -> None:
        self._dataframe = None

    def _fetch_dataframe(self) -> Any:
        raise NotImplementedError


class HyperparameterTuningJobAnalytics(AnalyticsMetricsBase):
    def __init__(self, hyperparameter_tuning_job_name: str, sagemaker_session: Any = None):
        super().__init__()
        self._tuning_job_name = hyperparameter_tuning_job_name
        self._description: dict[str, Any] | None = None
        self._summaries: list[dict[str, Any]] | None = None
        describe.tuning_record(hyperparameter_tuning_job_name)  # a name that does not exist fails here, clearly

    @property
    def name(self) -> str:
        return self._tuning_job_name

    def __repr__(self) -> str:
        return f"<dogbreed.HyperparameterTuningJobAnalytics for {self.name}>"

    def clear_cache(self) -> None:
        super().clear_cache()
        self._description = None
        self._summaries = None

    def description(self, force_refresh: bool = False) -> dict[str, Any]:
        if force_refresh or self._description is None:
            self._description = describe.describe_tuning_job(self.name)
        return self._description

    def training_job_summaries(self, force_refresh: bool = False) -> list[dict[str, Any]]:
        if force_refresh or self._summaries is None:
            self._summaries = describe.training_job_summaries(self.name)
        return self._summaries

    @property
    def tuning_ranges(self) -> dict[str, dict[str, Any]]:
        ranges = self.description()["HyperParameterTuningJobConfig"]["ParameterRanges"]
        return {r["Name"]: r for kind in ranges.values() for r in kind}

    def _fetch_dataframe(self) -> Any:
        import pandas as pd

        rows = []
        for s in self.training_job_summaries():
            row: dict[str, Any] = {}
            for k, v in s["TunedHyperParameters"].items():
                try:
                    row[k] = float(v)
                except ValueError:
                    row[k] = v
            start, end = s.get("TrainingStartTime"), s.get("TrainingEndTime")
            metric = s.get("FinalHyperParameterTuningJobObjectiveMetric")
            row.update({"TrainingJobName": s["TrainingJobName"], "TrainingJobStatus": s["TrainingJobStatus"],
                        "FinalObjectiveValue": metric["Value"] if metric else None,
                        "TrainingStartTime": start, "TrainingEndTime": end})
            if start and end:
                row["TrainingElapsedTimeSeconds"] = (end - start).total_seconds()
            rows.append(row)
        columns = [*self.tuning_ranges, "TrainingJobName", "TrainingJobStatus", "FinalObjectiveValue",
                   "TrainingStartTime", "TrainingEndTime", "TrainingElapsedTimeSeconds"]
        return pd.DataFrame(rows, columns=columns)


class TrainingJobAnalytics(AnalyticsMetricsBase):
    """A training job's metrics over time: columns timestamp (seconds since the first), metric_name, value."""

    def __init__(self, training_job_name: str, metric_names: list[str] | None = None, sagemaker_session: Any = None,
                 start_time: Any = None, end_time: Any = None, period: Any = None):
        super().__init__()
        self.name = training_job_name
        self._metric_names = metric_names
        describe.training_record(training_job_name)

    def __repr__(self) -> str:
        return f"<dogbreed.TrainingJobAnalytics for {self.name}>"

    def _fetch_dataframe(self) -> Any:
        import pandas as pd

        record = records.load(self.name)
        rows = []
        t0 = None
        for epoch in record.history:
            t = epoch.get("time", record.start_time + float(epoch.get("epoch", 0)))
            t0 = t if t0 is None else t0
            for k, v in epoch.items():
                if k in ("epoch", "stage", "time") or not isinstance(v, (int, float)):
                    continue
                if self._metric_names is None or k in self._metric_names:
                    rows.append({"timestamp": float(t - t0), "metric_name": k, "value": float(v)})
        return pd.DataFrame(rows, columns=["timestamp", "metric_name", "value"])

"""SageMaker's Describe*/List* response shapes, built from dogbreed's job and endpoint records.

One place for the mapping, used by the `dogbreed.boto3` shim's `client('sagemaker')`, by `Session`, by the
estimators' `describe()` and by the analytics classes, so every view of a job says the same thing.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from dogbreed.config import UserError
from dogbreed.jobs import endpoint_records, names, records
from dogbreed.jobs.records import COMPLETED, FAILED, IN_PROGRESS, STOPPED, JobRecord

ACCOUNT = "000000000000"  # there is no AWS account: a fixed, obviously fake one in ARNs and messages
DEFAULT_REGION = "us-east-1"
ALGORITHM_METRICS = [{"Name": "train:accuracy", "Regex": "Epoch\\S* Train-accuracy=(\\S*)"},
                     {"Name": "validation:accuracy", "Regex": "Epoch\\S* Validation-accuracy=(\\S*)"}]


class ResourceNotFound(UserError):
    """A job or endpoint name that dogbreed has no record of (the shim turns it into a ValidationException)."""

    def __init__(self, message: str, code: str = "ValidationException"):
        super().__init__(message)
        self.code = code


def region() -> str:
    import os

    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or DEFAULT_REGION


def arn(kind: str, name: str) -> str:
    return f"arn:aws:sagemaker:{region()}:{ACCOUNT}:{kind}/{name.lower()}"


def when(t: float | None) -> dt.datetime | None:
    return dt.datetime.fromtimestamp(t, tz=dt.timezone.utc) if t else None


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


def training_record(name: str) -> JobRecord:
    try:
        names.validate(name, "training job")
        record = records.load(name)
    except UserError:
        raise ResourceNotFound("Requested resource not found.") from None
    if record.kind != "training":
        raise ResourceNotFound("Requested resource not found.")
    return record


def tuning_record(name: str) -> JobRecord:
    try:
        names.validate(name, "tuning job")
        record = records.load(name)
    except UserError:
        raise ResourceNotFound(f"Amazon SageMaker can't find a tuning job with name {name}") from None
    if record.kind != "tuning":
        raise ResourceNotFound(f"Amazon SageMaker can't find a tuning job with name {name}")
    return record


def model_data(name: str) -> str:
    """Where a training job's model is: what SageMaker calls model_data (a folder here, not a tarball)."""
    return (records.job_dir(name) / "model").as_uri()


def sagemaker_hyperparameters(record: JobRecord) -> dict[str, str]:
    """The hyperparameters as the user passed them (strings, as SageMaker keeps them), else every set one."""
    given = record.extra.get("sagemaker_hyperparameters")
    if given is not None:
        return {k: str(v) for k, v in given.items()}
    return {k: str(v) for k, v in record.hyperparameters.items() if v not in (None, "")}


def _secondary_status(record: JobRecord) -> str:
    if record.status == IN_PROGRESS:
        return "Training"
    if record.status == STOPPED and (record.failure_reason or "").startswith("MaxRuntimeExceeded"):
        return "MaxRuntimeExceeded"
    return record.status


def _channels(data: Any) -> list[dict[str, Any]]:
    if isinstance(data, dict):
        items = data.items()
    else:
        items = [("training", data)]
    out = []
    for channel, value in items:
        uri = value["uri"] if isinstance(value, dict) else str(value)
        entry: dict[str, Any] = {"ChannelName": channel, "DataSource": {"S3DataSource": {
            "S3DataType": "S3Prefix", "S3Uri": uri, "S3DataDistributionType": "FullyReplicated"}},
            "CompressionType": "None", "RecordWrapperType": "None"}
        if isinstance(value, dict) and value.get("content_type"):
            entry["ContentType"] = value["content_type"]
        out.append(entry)
    return out


def describe_training_job(name: str) -> dict[str, Any]:
    record = training_record(name)
    extra = record.extra
    end = record.end_time or record.start_time
    transitions = [{"Status": "Starting", "StartTime": when(record.start_time), "EndTime": when(record.start_time),
                    "StatusMessage": "Preparing the instances for training"},
                   {"Status": "Training", "StartTime": when(record.start_time), "EndTime": when(record.end_time),
                    "StatusMessage": "Training in progress" if record.status == IN_PROGRESS else "Training ended"}]
    if record.status != IN_PROGRESS:
        transitions.append({"Status": _secondary_status(record), "StartTime": when(end), "EndTime": when(end),
                            "StatusMessage": record.failure_reason or "Training job completed"})
    metrics = [{"MetricName": k, "Value": float(v), "Timestamp": when(end)} for k, v in sorted(record.metrics.items())
               if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return _drop_none({
        "TrainingJobName": record.name, "TrainingJobArn": arn("training-job", record.name),
        "TuningJobArn": arn("hyper-parameter-tuning-job", record.parent) if record.parent else None,
        "ModelArtifacts": {"S3ModelArtifacts": model_data(record.name)},
        "TrainingJobStatus": record.status, "SecondaryStatus": _secondary_status(record),
        "FailureReason": record.failure_reason,
        "HyperParameters": sagemaker_hyperparameters(record),
        "AlgorithmSpecification": {"TrainingImage": extra.get("image_uri") or "dogbreed", "TrainingInputMode":
                                   extra.get("input_mode") or "File", "MetricDefinitions": ALGORITHM_METRICS,
                                   "EnableSageMakerMetricsTimeSeries": False},
        "RoleArn": extra.get("role") or f"arn:aws:iam::{ACCOUNT}:role/dogbreed-local",
        "InputDataConfig": _channels(record.data.get("location")),
        "OutputDataConfig": {"KmsKeyId": "", "S3OutputPath": extra.get("output_path") or
                             records.job_dir(record.name).parent.as_uri()},
        "ResourceConfig": {"InstanceType": extra.get("instance_type") or "local", "InstanceCount":
                           int(extra.get("instance_count") or 1), "VolumeSizeInGB": int(extra.get("volume_size") or 30)},
        "StoppingCondition": {"MaxRuntimeInSeconds": int(extra.get("max_run") or 86400)},
        "CreationTime": when(record.start_time), "TrainingStartTime": when(record.start_time),
        "TrainingEndTime": when(record.end_time), "LastModifiedTime": when(end),
        "SecondaryStatusTransitions": transitions, "FinalMetricDataList": metrics,
        "EnableNetworkIsolation": False, "EnableInterContainerTrafficEncryption": False,
        "EnableManagedSpotTraining": False,
        "TrainingTimeInSeconds": int(record.elapsed_s) if record.end_time else None,
        "BillableTimeInSeconds": int(record.elapsed_s) if record.end_time else None,
        "DebugRuleEvaluationStatuses": [{"RuleConfigurationName": rule, "RuleEvaluationStatus": status}
                                        for rule, status in sorted((extra.get("rules") or {}).items())],
    })


def training_job_summaries(tuning_job: str) -> list[dict[str, Any]]:
    """HyperParameterTrainingJobSummary of each trial, newest first (the order SageMaker's console lists them)."""
    from dogbreed.tune.analytics import analytics

    record = tuning_record(tuning_job)
    rows, config, _ = analytics(record.name)
    out = []
    for row in sorted(rows, key=lambda r: (r.get("_start") or 0, r["TrainingJobName"]), reverse=True):
        job = records.load(row["TrainingJobName"]) if records.exists(row["TrainingJobName"]) else None
        tuned = {r.name: str(row[r.name]) for r in config.ranges if r.name in row}
        value = row.get("FinalObjectiveValue")
        out.append(_drop_none({
            "TrainingJobName": row["TrainingJobName"], "TrainingJobArn": arn("training-job", row["TrainingJobName"]),
            "TuningJobName": tuning_job, "CreationTime": when(row.get("_start")),
            "TrainingStartTime": when(row.get("_start")), "TrainingEndTime": when(job.end_time if job else None),
            "TrainingJobStatus": row["TrainingJobStatus"], "TunedHyperParameters": tuned,
            "FailureReason": job.failure_reason if job and job.status == FAILED else None,
            "FinalHyperParameterTuningJobObjectiveMetric": None if value is None else {
                "Type": config.objective_type, "MetricName": config.objective_metric, "Value": float(value)},
            "ObjectiveStatus": "Succeeded" if value is not None else (
                "Pending" if row["TrainingJobStatus"] == IN_PROGRESS else "Failed"),
        }))
    return out


def _best_summary(tuning_job: str) -> dict[str, Any] | None:
    record = tuning_record(tuning_job)
    best = record.extra.get("best_training_job")
    if not best:
        return None
    return next((s for s in training_job_summaries(tuning_job) if s["TrainingJobName"] == best), None)


def _overall_best(tuning_job: str, maximize: bool, seen: set[str] | None = None) -> dict[str, Any] | None:
    """The best training job of this tuning job and, recursively, of its warm-start parents."""
    from dogbreed.tune.config import TuningConfig

    seen = seen or set()
    seen.add(tuning_job)
    candidates = [s for s in [_best_summary(tuning_job)] if s]
    config = TuningConfig.from_dict(tuning_record(tuning_job).extra["config"])
    for parent in config.warm_start_parents:
        if parent not in seen and records.exists(parent):
            best = _overall_best(parent, maximize, seen)
            if best:
                candidates.append(best)
    scored = [c for c in candidates if c.get("FinalHyperParameterTuningJobObjectiveMetric")]
    if not scored:
        return None
    key = lambda c: c["FinalHyperParameterTuningJobObjectiveMetric"]["Value"]  # noqa: E731
    return max(scored, key=key) if maximize else min(scored, key=key)


def describe_tuning_job(name: str) -> dict[str, Any]:
    from dogbreed.tune.config import TuningConfig

    record = tuning_record(name)
    config = TuningConfig.from_dict(record.extra["config"])
    summaries = training_job_summaries(name)
    statuses = [s["TrainingJobStatus"] for s in summaries]
    ranges: dict[str, list[dict[str, Any]]] = {"IntegerParameterRanges": [], "ContinuousParameterRanges": [],
                                               "CategoricalParameterRanges": []}
    for r in config.ranges:
        if r.type == "Categorical":
            ranges["CategoricalParameterRanges"].append({"Name": r.name, "Values": [str(v) for v in r.values]})
        else:
            ranges[f"{r.type}ParameterRanges"].append({"Name": r.name, "MinValue": str(r.min), "MaxValue":
                                                       str(r.max), "ScalingType": r.scaling})
    static = {k: str(v) for k, v in (record.extra.get("sagemaker_static_hyperparameters") or config.static).items()}
    desc = _drop_none({
        "HyperParameterTuningJobName": name, "HyperParameterTuningJobArn": arn("hyper-parameter-tuning-job", name),
        "HyperParameterTuningJobConfig": {
            "Strategy": config.strategy,
            "HyperParameterTuningJobObjective": {"Type": config.objective_type, "MetricName": config.objective_metric},
            "ResourceLimits": {"MaxNumberOfTrainingJobs": config.max_jobs,
                               "MaxParallelTrainingJobs": config.max_parallel_jobs,
                               **({"MaxRuntimeInSeconds": int(config.max_runtime_seconds)}
                                  if config.max_runtime_seconds else {})},
            "ParameterRanges": ranges,
            "TrainingJobEarlyStoppingType": "Off" if config.early_stopping == "Off" else "Auto",
        },
        "TrainingJobDefinition": {
            "StaticHyperParameters": static,
            "AlgorithmSpecification": {"TrainingImage": record.extra.get("image_uri") or "dogbreed",
                                       "TrainingInputMode": "File", "MetricDefinitions": ALGORITHM_METRICS},
            "RoleArn": record.extra.get("role") or f"arn:aws:iam::{ACCOUNT}:role/dogbreed-local",
            "InputDataConfig": _channels(record.data.get("location")),
            "OutputDataConfig": {"S3OutputPath": record.extra.get("output_path") or ""},
            "ResourceConfig": {"InstanceType": record.extra.get("instance_type") or "local",
                               "InstanceCount": int(record.extra.get("instance_count") or 1), "VolumeSizeInGB": 30},
            "StoppingCondition": {"MaxRuntimeInSeconds": int(record.extra.get("max_run") or 86400)},
        },
        "HyperParameterTuningJobStatus": record.status,
        "CreationTime": when(record.start_time), "HyperParameterTuningEndTime": when(record.end_time),
        "LastModifiedTime": when(record.end_time or record.start_time),
        "TrainingJobStatusCounters": {"Completed": statuses.count(COMPLETED), "InProgress": statuses.count(IN_PROGRESS),
                                      "RetryableError": 0, "NonRetryableError": statuses.count(FAILED),
                                      "Stopped": statuses.count(STOPPED)},
        "ObjectiveStatusCounters": {
            "Succeeded": sum(1 for s in summaries if s["ObjectiveStatus"] == "Succeeded"),
            "Pending": sum(1 for s in summaries if s["ObjectiveStatus"] == "Pending"),
            "Failed": sum(1 for s in summaries if s["ObjectiveStatus"] == "Failed")},
        "BestTrainingJob": _best_summary(name),
        "FailureReason": record.failure_reason if record.status == FAILED else None,
    })
    if config.warm_start_type:
        desc["WarmStartConfig"] = {"ParentHyperParameterTuningJobs": [
            {"HyperParameterTuningJobName": p} for p in config.warm_start_parents], "WarmStartType":
            config.warm_start_type}
        if config.warm_start_type == "IdenticalDataAndAlgorithm":
            overall = _overall_best(name, config.maximize)
            if overall:
                desc["OverallBestTrainingJob"] = overall
    return desc


ENDPOINT_STATUS = {"Creating": "Creating", "InService": "InService", "Stopped": "OutOfService", "Failed": "Failed"}


def endpoint_record(name: str) -> Any:
    try:
        names.validate(name, "endpoint")
        return endpoint_records.load(name)
    except UserError:
        raise ResourceNotFound(f'Could not find endpoint "{name}".') from None


def describe_endpoint(name: str) -> dict[str, Any]:
    e = endpoint_record(name)
    status = ENDPOINT_STATUS.get(e.live_status, e.live_status)
    return _drop_none({
        "EndpointName": e.name, "EndpointArn": arn("endpoint", e.name), "EndpointConfigName": e.name,
        "ProductionVariants": [{"VariantName": "AllTraffic", "CurrentWeight": 1.0, "DesiredWeight": 1.0,
                                "CurrentInstanceCount": e.workers, "DesiredInstanceCount": e.workers,
                                "DeployedImages": [{"SpecifiedImage": e.backend, "ResolvedImage": e.backend}]}],
        "EndpointStatus": status, "FailureReason": e.live_failure_reason,
        "CreationTime": when(e.created), "LastModifiedTime": when(e.created),
        "Url": e.url, "Model": e.model,
    })


def list_endpoints() -> list[dict[str, Any]]:
    return [{"EndpointName": e.name, "EndpointArn": arn("endpoint", e.name), "CreationTime": when(e.created),
             "LastModifiedTime": when(e.created), "EndpointStatus": ENDPOINT_STATUS.get(e.live_status, e.live_status)}
            for e in endpoint_records.list_endpoints()]


def list_training_jobs() -> list[dict[str, Any]]:
    return [{"TrainingJobName": r.name, "TrainingJobArn": arn("training-job", r.name),
             "CreationTime": when(r.start_time), "TrainingEndTime": when(r.end_time),
             "LastModifiedTime": when(r.end_time or r.start_time), "TrainingJobStatus": r.status,
             "SecondaryStatus": _secondary_status(r)} for r in records.list_records(kind="training")]


def list_tuning_jobs() -> list[dict[str, Any]]:
    out = []
    for r in records.list_records(kind="tuning"):
        counts = r.extra.get("trial_counts") or {}
        out.append({"HyperParameterTuningJobName": r.name, "HyperParameterTuningJobArn":
                    arn("hyper-parameter-tuning-job", r.name), "HyperParameterTuningJobStatus": r.status,
                    "Strategy": (r.extra.get("config") or {}).get("strategy"), "CreationTime": when(r.start_time),
                    "HyperParameterTuningEndTime": when(r.end_time),
                    "TrainingJobStatusCounters": {"Completed": counts.get("COMPLETE", 0),
                                                  "InProgress": counts.get("RUNNING", 0),
                                                  "NonRetryableError": counts.get("FAIL", 0),
                                                  "Stopped": counts.get("PRUNED", 0), "RetryableError": 0}})
    return out


def job_log_path(name: str) -> Path:
    record = records.load(name)
    return records.job_dir(name) / ("tuning.log" if record.kind == "tuning" else "train.log")

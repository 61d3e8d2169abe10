"""`Session`, as in the SageMaker SDK: the notebook's handle on jobs, logs and "buckets" (`sagemaker.session`).

There is no S3 here: a bucket is a folder under the dogbreed home (`$DOGBREED_HOME/buckets/NAME`), `upload_data`
copies into it and returns an `s3://NAME/...` URI, and every `s3://` URI whose bucket exists there resolves to that
folder (others go to real S3 through fsspec/s3fs).
"""

from __future__ import annotations

import logging
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from dogbreed import describe
from dogbreed.config import UserError
from dogbreed.exceptions import UnexpectedStatusException
from dogbreed.inputs import TrainingInput
from dogbreed.jobs import records
from dogbreed.jobs.records import COMPLETED, ENDED, STOPPED

log = logging.getLogger("dogbreed")
s3_input = TrainingInput  # SDK v1's name, still accepted by v2 with a deprecation warning


def get_execution_role(sagemaker_session: Any = None, use_default: bool = False) -> str:
    """There are no IAM roles here: a fixed role ARN that every call accepts and ignores."""
    return f"arn:aws:iam::{describe.ACCOUNT}:role/dogbreed-local"


class Session:
    def __init__(self, boto_session: Any = None, sagemaker_client: Any = None, sagemaker_runtime_client: Any = None,
                 sagemaker_featurestore_runtime_client: Any = None, default_bucket: str | None = None,
                 settings: Any = None, sagemaker_metrics_client: Any = None, sagemaker_config: Any = None,
                 default_bucket_prefix: str | None = None, **kwargs: Any):
        from dogbreed import boto3

        self.boto_session = boto_session or boto3.Session()
        self.sagemaker_client = sagemaker_client or boto3.client("sagemaker")
        self.sagemaker_runtime_client = sagemaker_runtime_client or boto3.client("sagemaker-runtime")
        self._default_bucket = default_bucket
        self.default_bucket_prefix = default_bucket_prefix
        self.local_mode = False
        self.config = None

    @property
    def boto_region_name(self) -> str:
        return getattr(self.boto_session, "region_name", None) or describe.region()

    def account_id(self) -> str:
        return describe.ACCOUNT

    def get_caller_identity_arn(self) -> str:
        return get_execution_role()

    def expand_role(self, role: str) -> str:
        return role if "/" in role else f"arn:aws:iam::{describe.ACCOUNT}:role/{role}"

    # -- buckets -----------------------------------------------------------------------------------------------
    def default_bucket(self) -> str:
        return self._default_bucket or f"sagemaker-{self.boto_region_name}-{describe.ACCOUNT}"

    def upload_data(self, path: str, bucket: str | None = None, key_prefix: str = "data",
                    extra_args: Any = None, callback: Any = None) -> str:
        """Copies a file or folder into the (local) bucket; returns its s3:// URI, as SageMaker does."""
        from dogbreed.data.layout import bucket_path

        bucket = bucket or self.default_bucket()
        source = Path(path)
        if not source.exists():
            raise UserError(f"upload_data: {source} not found")
        target = bucket_path(bucket, key_prefix)
        if source.is_dir():
            shutil.copytree(source, target, dirs_exist_ok=True, symlinks=False)
            return f"s3://{bucket}/{key_prefix}"
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target / source.name)
        return f"s3://{bucket}/{key_prefix}/{source.name}"

    def download_data(self, path: str, bucket: str, key_prefix: str = "", extra_args: Any = None) -> list[str]:
        from dogbreed.data.layout import bucket_path

        source = bucket_path(bucket, key_prefix)
        if not source.exists():
            raise UserError(f"download_data: s3://{bucket}/{key_prefix} not found")
        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        if source.is_file():
            shutil.copy2(source, out / source.name)
            return [str(out / source.name)]
        shutil.copytree(source, out, dirs_exist_ok=True)
        return [str(p) for p in out.rglob("*") if p.is_file()]

    # -- jobs --------------------------------------------------------------------------------------------------
    def describe_training_job(self, job_name: str) -> dict[str, Any]:
        return self.sagemaker_client.describe_training_job(TrainingJobName=job_name)

    def describe_tuning_job(self, job_name: str) -> dict[str, Any]:
        return self.sagemaker_client.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=job_name)

    def describe_endpoint(self, endpoint_name: str) -> dict[str, Any]:
        return self.sagemaker_client.describe_endpoint(EndpointName=endpoint_name)

    def stop_training_job(self, job_name: str) -> None:
        self.sagemaker_client.stop_training_job(TrainingJobName=job_name)

    def stop_tuning_job(self, name: str) -> None:
        self.sagemaker_client.stop_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)

    def delete_endpoint(self, endpoint_name: str) -> None:
        log.info("Deleting endpoint with name: %s", endpoint_name)
        self.sagemaker_client.delete_endpoint(EndpointName=endpoint_name)

    def delete_endpoint_config(self, endpoint_config_name: str) -> None:
        """Endpoint configurations are part of the endpoint here: nothing to delete."""

    def delete_model(self, model_name: str) -> None:
        """Models live in the registry (`dogbreed models delete`): nothing to delete for an endpoint."""

    def wait_for_job(self, job: str, poll: int = 5) -> dict[str, Any]:
        record = _wait(job, poll)
        _raise_unless_ended_well(record, "Training")
        return self.describe_training_job(job)

    def wait_for_tuning_job(self, job: str, poll: int = 5) -> dict[str, Any]:
        record = _wait(job, poll)
        if record.status == STOPPED:
            log.warning("tuning job %s was stopped: %s", job, record.failure_reason)
        else:
            _raise_unless_ended_well(record, "Tuning")
        return self.describe_tuning_job(job)

    def wait_for_endpoint(self, endpoint: str, poll: int = 30) -> dict[str, Any]:
        from dogbreed.serve.launch import wait_in_service

        wait_in_service(endpoint)
        return self.describe_endpoint(endpoint)

    def logs_for_job(self, job_name: str, wait: bool = False, poll: int = 10, log_type: str = "All",
                     timeout: int | None = None) -> None:
        """Prints the job's status and its log (following it until the job ends with `wait`), like SageMaker's
        CloudWatch log stream."""
        from dogbreed.jobs.logs import follow

        try:
            record = records.load(job_name)
        except UserError:
            raise UnexpectedStatusException(f"no training or tuning job named {job_name!r}") from None
        print(f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(record.start_time))} Starting - "
              f"{record.kind} job {job_name}")
        path = describe.job_log_path(job_name)
        if path.exists():
            follow(path, lambda: records.load(job_name).status not in ENDED, out=sys.stdout, follow=wait,
                   poll=min(poll, 2))
        record = records.load(job_name)
        print(f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(record.end_time or time.time()))} "
              f"{record.status}" + (f" - {record.failure_reason}" if record.failure_reason else ""))
        if wait:
            _raise_unless_ended_well(record, "Training")
            print(f"Training seconds: {int(record.elapsed_s)}")
            print(f"Billable seconds: {int(record.elapsed_s)}")


def _wait(name: str, poll: float) -> Any:
    while True:
        record = records.load(name)
        if record.status in ENDED:
            return record
        time.sleep(min(poll, 2))


def _raise_unless_ended_well(record: Any, what: str) -> None:
    if record.status not in (COMPLETED, STOPPED):
        raise UnexpectedStatusException(
            f"Error for {what} job {record.name}: {record.status}. Reason: {record.failure_reason}",
            allowed_statuses=[COMPLETED, STOPPED], actual_status=record.status)

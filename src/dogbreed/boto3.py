"""A small boto3-shaped module: `from dogbreed import boto3`, then `boto3.client('sagemaker-runtime')` finds dogbreed
endpoints by name and `boto3.client('sagemaker')` answers the describe/list calls for training jobs, tuning jobs and
endpoints from dogbreed's records.

Results have botocore's shape (a streaming `Body`, `ResponseMetadata`); errors are botocore's `ClientError` (the
real class when botocore is installed, so `except botocore.exceptions.ClientError` works) with SageMaker's codes and
messages. The real boto3 works too, pointed at an endpoint: `boto3.client('sagemaker-runtime',
endpoint_url=<endpoint URL>)`, since every dogbreed endpoint also answers SageMaker runtime's REST route.
"""

from __future__ import annotations

import io
import uuid
from typing import Any, Callable

from dogbreed import describe
from dogbreed.describe import ACCOUNT, ResourceNotFound

try:  # the real classes when botocore is there: user code catching them keeps working
    from botocore.exceptions import ClientError
    from botocore.response import StreamingBody as _BotocoreStreamingBody
except ImportError:  # pragma: no cover - exercised where botocore is absent
    _BotocoreStreamingBody = None

    class ClientError(Exception):  # type: ignore[no-redef]
        """botocore's ClientError: `.response` holds Error{Code, Message} and ResponseMetadata."""

        def __init__(self, error_response: dict[str, Any], operation_name: str):
            err = error_response.get("Error", {})
            super().__init__(f"An error occurred ({err.get('Code', 'Unknown')}) when calling the {operation_name} "
                             f"operation: {err.get('Message', '')}")
            self.response, self.operation_name = error_response, operation_name


class StreamingBody:
    """A response body read like botocore's StreamingBody (read, iter_lines, close)."""

    def __init__(self, data: bytes):
        self._raw, self._length = io.BytesIO(data), len(data)

    def read(self, amt: int | None = None) -> bytes:
        return self._raw.read() if amt is None else self._raw.read(amt)

    def iter_lines(self, chunk_size: int = 1024, keepends: bool = False):
        for line in self._raw.read().splitlines(keepends):
            yield line

    def close(self) -> None:
        self._raw.close()


def _body(data: bytes) -> Any:
    if _BotocoreStreamingBody is not None:
        return _BotocoreStreamingBody(io.BytesIO(data), len(data))
    return StreamingBody(data)


def _metadata(status: int = 200, headers: dict[str, str] | None = None) -> dict[str, Any]:
    request_id = str(uuid.uuid4())
    return {"RequestId": request_id, "HTTPStatusCode": status,
            "HTTPHeaders": {"x-amzn-requestid": request_id, **(headers or {})}, "RetryAttempts": 0}


def _error(code: str, message: str, operation: str, status: int = 400, **fields: Any) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}, "ResponseMetadata": _metadata(status),
                        "Message": message, **fields}, operation)


class _Exceptions:
    ClientError = ClientError


class _Client:
    service_name = ""
    exceptions = _Exceptions()

    def __init__(self, region_name: str | None = None):
        self.meta = type("ClientMeta", (), {"region_name": region_name or describe.region(),
                                            "service_model": None})()

    def _call(self, operation: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        try:
            result = fn()
        except ResourceNotFound as e:
            raise _error(e.code, str(e), operation) from None
        return {**result, "ResponseMetadata": _metadata()}


class SageMakerRuntimeClient(_Client):
    """`client('sagemaker-runtime')`: InvokeEndpoint on a dogbreed endpoint found by name."""

    service_name = "sagemaker-runtime"

    def invoke_endpoint(self, *, EndpointName: str, Body: Any, ContentType: str = "application/octet-stream",  # noqa: N803
                        Accept: str | None = None, CustomAttributes: str | None = None, **kwargs: Any
                        ) -> dict[str, Any]:
        import httpx

        from dogbreed.jobs.endpoint_records import IN_SERVICE

        operation = "InvokeEndpoint"
        try:
            record = describe.endpoint_record(EndpointName)
        except ResourceNotFound:
            raise _error("ValidationError", f"Endpoint {EndpointName} of account {ACCOUNT} not found.",
                         operation) from None
        if record.live_status != IN_SERVICE:
            raise _error("ValidationError", f"Endpoint {EndpointName} of account {ACCOUNT} is not in service "
                         f"(status {record.live_status}).", operation)
        data = Body.read() if hasattr(Body, "read") else bytes(Body)
        headers = {"Content-Type": ContentType or "application/octet-stream"}
        if Accept:
            headers["Accept"] = Accept
        if CustomAttributes:
            headers["X-Amzn-SageMaker-Custom-Attributes"] = CustomAttributes
        try:
            r = httpx.post(f"{record.url}/invocations", content=data, headers=headers, timeout=60)
        except httpx.HTTPError as e:
            raise _error("ServiceUnavailable", f"Endpoint {EndpointName} did not answer: {e}", operation, 503
                         ) from None
        if r.status_code != 200:
            try:
                message = r.json().get("error", r.text)
            except ValueError:
                message = r.text
            raise _error("ModelError", f'Received client error ({r.status_code}) from primary with message '
                         f'"{message}". See `dogbreed logs {EndpointName}` for more information.', operation, 424,
                         OriginalStatusCode=r.status_code, OriginalMessage=message)
        content_type = r.headers.get("content-type", "application/json")
        return {"Body": _body(r.content), "ContentType": content_type, "InvokedProductionVariant": "AllTraffic",
                "ResponseMetadata": _metadata(200, {"content-type": content_type,
                                                    "x-amzn-invoked-production-variant": "AllTraffic",
                                                    "content-length": str(len(r.content))})}


def _page(items: list[dict[str, Any]], key: str, MaxResults: int | None, NextToken: str | None  # noqa: N803
          ) -> dict[str, Any]:
    start = int(NextToken or 0)
    size = MaxResults or 100
    out: dict[str, Any] = {key: items[start:start + size]}
    if start + size < len(items):
        out["NextToken"] = str(start + size)
    return out


class SageMakerClient(_Client):
    """`client('sagemaker')`: the describe/list/stop calls notebooks make, answered from dogbreed's records."""

    service_name = "sagemaker"

    def describe_training_job(self, *, TrainingJobName: str) -> dict[str, Any]:  # noqa: N803
        return self._call("DescribeTrainingJob", lambda: describe.describe_training_job(TrainingJobName))

    def describe_hyper_parameter_tuning_job(self, *, HyperParameterTuningJobName: str) -> dict[str, Any]:  # noqa: N803
        return self._call("DescribeHyperParameterTuningJob",
                          lambda: describe.describe_tuning_job(HyperParameterTuningJobName))

    def list_training_jobs_for_hyper_parameter_tuning_job(
            self, *, HyperParameterTuningJobName: str, NextToken: str | None = None,  # noqa: N803
            MaxResults: int | None = None, StatusEquals: str | None = None, SortBy: str | None = None,  # noqa: N803
            SortOrder: str | None = None) -> dict[str, Any]:  # noqa: N803
        def run() -> dict[str, Any]:
            items = describe.training_job_summaries(HyperParameterTuningJobName)
            if StatusEquals:
                items = [s for s in items if s["TrainingJobStatus"] == StatusEquals]
            if SortBy:
                key = {"Name": lambda s: s["TrainingJobName"], "CreationTime": lambda s: s.get("CreationTime") or 0,
                       "Status": lambda s: s["TrainingJobStatus"],
                       "FinalObjectiveMetricValue": lambda s: s["FinalHyperParameterTuningJobObjectiveMetric"]["Value"]
                       }[SortBy]
                if SortBy == "FinalObjectiveMetricValue":
                    items = [s for s in items if s.get("FinalHyperParameterTuningJobObjectiveMetric")]
                items = sorted(items, key=key, reverse=SortOrder == "Descending")
            return _page(items, "TrainingJobSummaries", MaxResults, NextToken)

        return self._call("ListTrainingJobsForHyperParameterTuningJob", run)

    def describe_endpoint(self, *, EndpointName: str) -> dict[str, Any]:  # noqa: N803
        return self._call("DescribeEndpoint", lambda: describe.describe_endpoint(EndpointName))

    def describe_endpoint_config(self, *, EndpointConfigName: str) -> dict[str, Any]:  # noqa: N803
        def run() -> dict[str, Any]:
            e = describe.describe_endpoint(EndpointConfigName)
            return {"EndpointConfigName": e["EndpointName"], "EndpointConfigArn": describe.arn(
                "endpoint-config", e["EndpointName"]), "ProductionVariants": [
                {"VariantName": "AllTraffic", "ModelName": e["Model"], "InitialInstanceCount":
                 e["ProductionVariants"][0]["CurrentInstanceCount"], "InstanceType": "local"}],
                "CreationTime": e["CreationTime"]}

        return self._call("DescribeEndpointConfig", run)

    def list_endpoints(self, *, NextToken: str | None = None, MaxResults: int | None = None,  # noqa: N803
                       NameContains: str | None = None, StatusEquals: str | None = None, **kwargs: Any  # noqa: N803
                       ) -> dict[str, Any]:
        def run() -> dict[str, Any]:
            items = [e for e in describe.list_endpoints() if (not NameContains or NameContains in e["EndpointName"])
                     and (not StatusEquals or e["EndpointStatus"] == StatusEquals)]
            return _page(items, "Endpoints", MaxResults, NextToken)

        return self._call("ListEndpoints", run)

    def list_training_jobs(self, *, NextToken: str | None = None, MaxResults: int | None = None,  # noqa: N803
                           NameContains: str | None = None, StatusEquals: str | None = None,  # noqa: N803
                           **kwargs: Any) -> dict[str, Any]:
        def run() -> dict[str, Any]:
            items = [j for j in describe.list_training_jobs()
                     if (not NameContains or NameContains in j["TrainingJobName"])
                     and (not StatusEquals or j["TrainingJobStatus"] == StatusEquals)]
            return _page(items, "TrainingJobSummaries", MaxResults, NextToken)

        return self._call("ListTrainingJobs", run)

    def list_hyper_parameter_tuning_jobs(self, *, NextToken: str | None = None,  # noqa: N803
                                         MaxResults: int | None = None, NameContains: str | None = None,  # noqa: N803
                                         StatusEquals: str | None = None, **kwargs: Any) -> dict[str, Any]:  # noqa: N803
        def run() -> dict[str, Any]:
            items = [j for j in describe.list_tuning_jobs()
                     if (not NameContains or NameContains in j["HyperParameterTuningJobName"])
                     and (not StatusEquals or j["HyperParameterTuningJobStatus"] == StatusEquals)]
            return _page(items, "HyperParameterTuningJobSummaries", MaxResults, NextToken)

        return self._call("ListHyperParameterTuningJobs", run)

    def stop_training_job(self, *, TrainingJobName: str) -> dict[str, Any]:  # noqa: N803
        from dogbreed.jobs.control import request_stop

        def run() -> dict[str, Any]:
            describe.training_record(TrainingJobName)
            request_stop(TrainingJobName)
            return {}

        return self._call("StopTrainingJob", run)

    def stop_hyper_parameter_tuning_job(self, *, HyperParameterTuningJobName: str) -> dict[str, Any]:  # noqa: N803
        from dogbreed.jobs.control import request_stop

        def run() -> dict[str, Any]:
            describe.tuning_record(HyperParameterTuningJobName)
            request_stop(HyperParameterTuningJobName)
            return {}

        return self._call("StopHyperParameterTuningJob", run)

    def delete_endpoint(self, *, EndpointName: str) -> dict[str, Any]:  # noqa: N803
        from dogbreed.jobs.endpoint_records import delete

        def run() -> dict[str, Any]:
            describe.endpoint_record(EndpointName)
            delete(EndpointName)
            return {}

        return self._call("DeleteEndpoint", run)

    def delete_endpoint_config(self, *, EndpointConfigName: str) -> dict[str, Any]:  # noqa: N803
        return self._call("DeleteEndpointConfig", lambda: {})  # configs are part of the endpoint here

    def delete_model(self, *, ModelName: str) -> dict[str, Any]:  # noqa: N803
        return self._call("DeleteModel", lambda: {})  # models live in the registry: `dogbreed models delete`


SERVICES: dict[str, type[_Client]] = {"sagemaker-runtime": SageMakerRuntimeClient,
                                      "runtime.sagemaker": SageMakerRuntimeClient, "sagemaker": SageMakerClient}


def client(service_name: str, region_name: str | None = None, api_version: str | None = None, use_ssl: bool = True,
           verify: Any = None, endpoint_url: str | None = None, aws_access_key_id: str | None = None,
           aws_secret_access_key: str | None = None, aws_session_token: str | None = None, config: Any = None,
           **kwargs: Any) -> Any:
    """A client for 'sagemaker-runtime' or 'sagemaker'; credentials and endpoint URLs mean nothing here."""
    if service_name not in SERVICES:
        from dogbreed.config import UserError

        raise UserError(f"dogbreed.boto3 has no {service_name!r} client (only 'sagemaker' and 'sagemaker-runtime'); "
                        "use the real boto3 for other AWS services")
    return SERVICES[service_name](region_name)


class Session:
    """boto3.Session: gives clients; its region is AWS_REGION / AWS_DEFAULT_REGION or us-east-1."""

    def __init__(self, aws_access_key_id: str | None = None, aws_secret_access_key: str | None = None,
                 aws_session_token: str | None = None, region_name: str | None = None,
                 botocore_session: Any = None, profile_name: str | None = None, **kwargs: Any):
        self.region_name = region_name or describe.region()
        self.profile_name = profile_name

    def client(self, service_name: str, region_name: str | None = None, **kwargs: Any) -> Any:
        return client(service_name, region_name=region_name or self.region_name, **kwargs)

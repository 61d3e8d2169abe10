"""SageMaker runtime's InvokeEndpoint on a real `dogbreed deploy`, called with the real boto3 package."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import Endpoint


@pytest.fixture(scope="module")
def endpoint(served_model):
    ep = Endpoint("ep-runtime", "dogs5@prod")
    yield ep
    ep.stop()


def _photos(dogs_slice: Path, split: str = "test") -> list[Path]:
    return sorted((dogs_slice / split).rglob("*.jpg"))


def test_real_boto3_sagemaker_runtime_client(endpoint, dogs_slice):
    """The seed's `boto3.client('sagemaker-runtime').invoke_endpoint(...)`, with the real boto3 package and only
    `endpoint_url` pointing here: every class's probability, the same as /invocations; errors as ClientError."""
    import boto3
    from botocore.exceptions import ClientError

    runtime = boto3.client("sagemaker-runtime", endpoint_url=endpoint.url, region_name="us-east-1",
                           aws_access_key_id="x", aws_secret_access_key="x")
    jpeg = _photos(dogs_slice)[0].read_bytes()
    out = runtime.invoke_endpoint(EndpointName=endpoint.name, Body=jpeg, ContentType="image/jpeg",
                                  Accept="application/json")
    assert out["ContentType"] == "application/json" and out["InvokedProductionVariant"] == "AllTraffic"
    probs = json.loads(out["Body"].read())
    assert len(probs) == 5 and abs(sum(probs) - 1) < 1e-3
    assert np.allclose(probs, endpoint.post(jpeg).json(), atol=1e-6)
    x_image = runtime.invoke_endpoint(EndpointName=endpoint.name, Body=bytearray(jpeg),
                                      ContentType="application/x-image")
    assert np.argmax(json.loads(x_image["Body"].read())) == np.argmax(probs)

    with pytest.raises(ClientError) as unknown:
        runtime.invoke_endpoint(EndpointName="Dog-Classification-Endpoint", Body=jpeg, ContentType="image/jpeg")
    err = unknown.value.response
    assert err["Error"]["Code"] == "ValidationError" and err["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert "Dog-Classification-Endpoint" in err["Error"]["Message"]
    with pytest.raises(runtime.exceptions.ModelError) as refused:  # the model's own 400, as SageMaker reports it
        runtime.invoke_endpoint(EndpointName=endpoint.name, Body=b"not an image", ContentType="image/jpeg")
    assert refused.value.response["OriginalStatusCode"] == 400
    assert "bad image" in refused.value.response["Error"]["Message"]
    assert endpoint.post(jpeg).status_code == 200  # and it keeps serving

"""SageMaker runtime's InvokeEndpoint route on a dogbreed endpoint, so code written for
`boto3.client("sagemaker-runtime").invoke_endpoint(...)` works with only `endpoint_url=` added.

The route and error shapes follow botocore's model for sagemaker-runtime (2017-05-13, rest-json):
`POST /endpoints/{EndpointName}/invocations`, the body and Content-Type/Accept passed through; an unknown
endpoint is a `ValidationError` (400); a request the model refuses is a `ModelError` (424) carrying the
model's own status and message, as SageMaker reports container errors.
"""

from __future__ import annotations

import json
from typing import Awaitable, Callable

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

ACCOUNT = "000000000000"  # the account id dogbreed.boto3 reports, so both say the same
VARIANT = "AllTraffic"  # the production variant name SageMaker's SDK gives a single-model endpoint


def sagemaker_error(status: int, code: str, message: str, **fields) -> JSONResponse:
    """An error botocore parses into ClientError: the code in `x-amzn-ErrorType`, the text in `message`."""
    return JSONResponse({"message": message, **fields}, status_code=status,
                        headers={"x-amzn-ErrorType": f"{code}:http://internal.amazon.com/coral/com.amazon.sagemaker/"})


def add_runtime_route(app: FastAPI, endpoint_name: str, invoke: Callable[[Request], Awaitable[Response]]) -> None:
    """Serves `invoke` (the endpoint's own /invocations handler) at SageMaker runtime's path for `endpoint_name`."""

    @app.post("/endpoints/{name}/invocations", include_in_schema=False)
    async def invoke_endpoint(name: str, request: Request) -> Response:
        if name != endpoint_name:
            return sagemaker_error(400, "ValidationError", f"Endpoint {name} of account {ACCOUNT} not found "
                                                           f"(this address serves {endpoint_name}).")
        response = await invoke(request)
        if response.status_code >= 400:
            try:
                original = json.loads(response.body).get("error", "")
            except (ValueError, AttributeError):
                original = ""
            return sagemaker_error(424, "ModelError", f"Received client error ({response.status_code}) from "
                                   f"the model with message \"{original}\".", OriginalStatusCode=response.status_code,
                                   OriginalMessage=original)
        response.headers["x-Amzn-Invoked-Production-Variant"] = VARIANT
        return response

"""`Predictor`, as in the SageMaker SDK (`sagemaker.predictor`): calls an endpoint by name.

Defaults are the SDK's (IdentitySerializer, BytesDeserializer: bytes in, the JSON body's bytes out, a list of
every class's probability for this algorithm). Beyond the SDK, `predict` also takes a file path, a PIL image or a
numpy array, `predict_top_k` gives the best breeds with names, and a Predictor is a context manager that deletes
its endpoint on exit.
"""

from __future__ import annotations

import io
import logging
import mimetypes
from pathlib import Path
from typing import Any

from dogbreed.deserializers import BytesDeserializer
from dogbreed.serializers import IdentitySerializer

log = logging.getLogger("dogbreed")


class Predictor:
    def __init__(self, endpoint_name: str, sagemaker_session: Any = None, serializer: Any = None,
                 deserializer: Any = None, component_name: str | None = None, **kwargs: Any):
        from dogbreed.session import Session

        self.endpoint_name = kwargs.get("endpoint", endpoint_name)
        self.sagemaker_session = sagemaker_session or Session()
        self.serializer = serializer or IdentitySerializer()
        self.deserializer = deserializer or BytesDeserializer()
        self.component_name = component_name

    @property
    def endpoint(self) -> str:
        return self.endpoint_name

    @property
    def content_type(self) -> str:
        return self.serializer.CONTENT_TYPE

    @property
    def accept(self) -> tuple[str, ...]:
        return self.deserializer.ACCEPT

    @property
    def url(self) -> str:
        from dogbreed import describe

        return describe.endpoint_record(self.endpoint_name).url

    def _body(self, data: Any) -> tuple[Any, str | None]:
        """Serialized body, and a content type implied by the data itself (a file's suffix, an image)."""
        plain = isinstance(self.serializer, IdentitySerializer)
        if plain and isinstance(data, (str, Path)) and Path(data).is_file():
            return Path(data).read_bytes(), mimetypes.guess_type(str(data))[0] or "application/x-image"
        if plain and hasattr(data, "save") and hasattr(data, "mode"):  # a PIL image
            buf = io.BytesIO()
            data.convert("RGB").save(buf, "JPEG", quality=95)
            return buf.getvalue(), "image/jpeg"
        if plain and hasattr(data, "shape") and hasattr(data, "dtype"):  # a numpy image (H x W [x C], uint8)
            from PIL import Image

            buf = io.BytesIO()
            Image.fromarray(data).save(buf, "PNG")
            return buf.getvalue(), "image/png"
        return self.serializer.serialize(data), None

    def predict(self, data: Any, initial_args: dict[str, Any] | None = None, target_model: str | None = None,
                target_variant: str | None = None, inference_id: str | None = None,
                custom_attributes: str | None = None, component_name: str | None = None) -> Any:
        body, implied = self._body(data)
        args = dict(initial_args or {})
        args.setdefault("EndpointName", self.endpoint_name)
        if "ContentType" not in args:
            args["ContentType"] = implied if implied and self.content_type == "application/octet-stream" \
                else self.content_type
        args.setdefault("Accept", ", ".join(self.accept))
        if custom_attributes:
            args["CustomAttributes"] = custom_attributes
        args["Body"] = body
        response = self.sagemaker_session.sagemaker_runtime_client.invoke_endpoint(**args)
        return self.deserializer.deserialize(response["Body"], response.get("ContentType",
                                                                             "application/octet-stream"))

    def predict_top_k(self, data: Any, k: int = 5) -> list[dict[str, Any]]:
        """The k likeliest breeds with readable names: [{"label", "class", "index", "probability"}, ...]."""
        import httpx

        body, implied = self._body(data)
        r = httpx.post(f"{self.url}/invocations", params={"top_k": k}, content=body,
                       headers={"Content-Type": implied or "application/x-image"}, timeout=60)
        if r.status_code != 200:
            from dogbreed.config import UserError

            raise UserError(f"endpoint {self.endpoint_name} answered {r.status_code}: {r.json().get('error', r.text)}")
        return r.json()["predictions"]

    def delete_endpoint(self, delete_endpoint_config: bool = True) -> None:
        self.sagemaker_session.delete_endpoint(self.endpoint_name)

    delete_predictor = delete_endpoint

    def delete_model(self) -> None:
        """Models live in the model registry here (`dogbreed models delete`); nothing is deleted with the endpoint."""

    def __enter__(self) -> "Predictor":
        return self

    def __exit__(self, *exc: Any) -> None:
        from dogbreed.jobs import endpoint_records

        if endpoint_records.exists(self.endpoint_name):
            self.delete_endpoint()

    def __repr__(self) -> str:
        return f"Predictor(endpoint_name={self.endpoint_name!r})"


RealTimePredictor = Predictor  # SDK v1's name


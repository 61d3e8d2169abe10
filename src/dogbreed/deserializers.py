"""Deserializers of response bodies, as in the SageMaker SDK (`sagemaker.deserializers`). Each closes the stream."""

from __future__ import annotations

import codecs
import io
import json
from typing import Any


class BaseDeserializer:
    ACCEPT: tuple[str, ...] = ("*/*",)

    def deserialize(self, stream: Any, content_type: str) -> Any:
        raise NotImplementedError


class SimpleBaseDeserializer(BaseDeserializer):
    def __init__(self, accept: str | tuple[str, ...] = "*/*"):
        self._accept = (accept,) if isinstance(accept, str) else tuple(accept)

    @property
    def ACCEPT(self) -> tuple[str, ...]:  # noqa: N802 - SageMaker's name
        return self._accept


class BytesDeserializer(SimpleBaseDeserializer):
    """The body's bytes: the SDK's default for predictors (a JSON list of probabilities, for this algorithm)."""

    def deserialize(self, stream: Any, content_type: str) -> bytes:
        try:
            return stream.read()
        finally:
            stream.close()


class StringDeserializer(SimpleBaseDeserializer):
    def __init__(self, encoding: str = "UTF-8", accept: str = "application/json"):
        super().__init__(accept)
        self.encoding = encoding

    def deserialize(self, stream: Any, content_type: str) -> str:
        try:
            return stream.read().decode(self.encoding)
        finally:
            stream.close()


class JSONDeserializer(SimpleBaseDeserializer):
    def __init__(self, accept: str = "application/json"):
        super().__init__(accept)

    def deserialize(self, stream: Any, content_type: str) -> Any:
        try:
            return json.load(codecs.getreader("utf-8")(stream))
        finally:
            stream.close()


class NumpyDeserializer(SimpleBaseDeserializer):
    def __init__(self, dtype: Any = None, accept: str = "application/x-npy", allow_pickle: bool = False):
        super().__init__(accept)
        self.dtype, self.allow_pickle = dtype, allow_pickle

    def deserialize(self, stream: Any, content_type: str) -> Any:
        import numpy as np

        try:
            if content_type == "application/json":
                return np.array(json.load(codecs.getreader("utf-8")(stream)), dtype=self.dtype)
            return np.load(io.BytesIO(stream.read()), allow_pickle=self.allow_pickle)
        finally:
            stream.close()


class StreamDeserializer(SimpleBaseDeserializer):
    def deserialize(self, stream: Any, content_type: str) -> tuple[Any, str]:
        return stream, content_type

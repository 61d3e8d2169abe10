"""Serializers of request bodies, as in the SageMaker SDK (`sagemaker.serializers`)."""

from __future__ import annotations

import io
import json
from typing import Any


class BaseSerializer:
    CONTENT_TYPE = "application/octet-stream"

    def serialize(self, data: Any) -> Any:
        raise NotImplementedError


class SimpleBaseSerializer(BaseSerializer):
    def __init__(self, content_type: str = "application/json"):
        if not isinstance(content_type, str):
            raise ValueError(f"content_type must be a string, not {type(content_type).__name__}")
        self._content_type = content_type

    @property
    def CONTENT_TYPE(self) -> str:  # noqa: N802 - SageMaker's name
        return self._content_type


class IdentitySerializer(SimpleBaseSerializer):
    """Sends the data as it is (bytes); the SDK's default for predictors."""

    def __init__(self, content_type: str = "application/octet-stream"):
        super().__init__(content_type)

    def serialize(self, data: Any) -> Any:
        return data


class JSONSerializer(SimpleBaseSerializer):
    def __init__(self, content_type: str = "application/json"):
        super().__init__(content_type)

    def serialize(self, data: Any) -> str:
        if hasattr(data, "read"):
            return data.read()
        if hasattr(data, "tolist"):
            return json.dumps(data.tolist())
        if isinstance(data, dict):
            return json.dumps({k: v.tolist() if hasattr(v, "tolist") else v for k, v in data.items()})
        return json.dumps(data)


class CSVSerializer(SimpleBaseSerializer):
    def __init__(self, content_type: str = "text/csv"):
        super().__init__(content_type)

    def serialize(self, data: Any) -> str:
        if isinstance(data, str):
            return data
        rows = data.tolist() if hasattr(data, "tolist") else data
        if rows and not isinstance(rows[0], (list, tuple)):
            rows = [rows]
        return "\n".join(",".join(str(v) for v in row) for row in rows)


class NumpySerializer(SimpleBaseSerializer):
    def __init__(self, dtype: Any = None, content_type: str = "application/x-npy"):
        super().__init__(content_type)
        self.dtype = dtype

    def serialize(self, data: Any) -> bytes:
        import numpy as np

        buf = io.BytesIO()
        np.save(buf, np.asarray(data, dtype=self.dtype))
        return buf.getvalue()


class DataSerializer(SimpleBaseSerializer):
    """A file path or raw bytes, sent as they are."""

    def __init__(self, content_type: str = "file-path/raw-bytes"):
        super().__init__(content_type)

    def serialize(self, data: Any) -> bytes:
        if isinstance(data, str):
            with open(data, "rb") as f:
                return f.read()
        return bytes(data)

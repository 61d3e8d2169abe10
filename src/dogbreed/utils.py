"""Job-name helpers with the SageMaker SDK's names (`name_from_base`, ...), over dogbreed's own naming."""

from __future__ import annotations

import re

from dogbreed.jobs.names import MAX_LENGTH, timestamp

_SUFFIX = re.compile(r"-(\d{4}-\d{2}-\d{2}-\d{2}-\d{2}-\d{2}-\d{3}|\d{6}-\d{6}-\d{3}|\d{6}-\d{4})$")


def sagemaker_timestamp() -> str:
    return timestamp(short=False)


def sagemaker_short_timestamp() -> str:
    return timestamp(short=True)


def name_from_base(base: str, max_length: int = MAX_LENGTH, short: bool = False) -> str:
    """`base-<timestamp>`, cut to `max_length` (the timestamp has milliseconds, so names are unique)."""
    suffix = timestamp(short)
    return f"{base[: max_length - len(suffix) - 1].rstrip('-_.')}-{suffix}"


def base_name_from_image(image: str | None, default_base_name: str | None = None) -> str:
    """`.../image-classification:1` -> `image-classification`."""
    m = re.match(r"^(.+/)?([^:/]+)(:[^:]+)?$", image or "")
    return m.group(2) if m else (default_base_name or "dogbreed")


def base_from_name(name: str) -> str:
    return _SUFFIX.sub("", name)

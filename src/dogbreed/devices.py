"""Which device a job or an endpoint runs on, and mixed precision on it."""

from __future__ import annotations

import contextlib

import torch

from dogbreed.config import UserError


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_device(device: str | None) -> str:
    """`None` -> CUDA when present, else CPU; a named device is checked before any work starts."""
    if not device:
        return default_device()
    try:
        d = torch.device(device)
    except (RuntimeError, ValueError):
        raise UserError(f"--device {device!r} is not a device (use cpu, cuda or cuda:N)") from None
    if d.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"--device {device} asked for, but this machine has no CUDA GPU (use --device cpu)")
        if d.index is not None and d.index >= torch.cuda.device_count():
            raise UserError(f"--device {device}: this machine has {torch.cuda.device_count()} GPU(s)")
    elif d.type != "cpu":
        raise UserError(f"--device {device!r} is not supported (use cpu, cuda or cuda:N)")
    return str(d)


def autocast(device: str | torch.device, precision_dtype: str) -> contextlib.AbstractContextManager:
    """Mixed precision for bfloat16/float16 on `device`; nothing for float32."""
    dtype = {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(precision_dtype)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)

"""SageMaker instance types on this machine: a GPU type runs on CUDA when there is one; what is ignored is said once."""

from __future__ import annotations

import logging

log = logging.getLogger("dogbreed")

GPU_INSTANCE_FAMILIES = ("ml.p", "ml.g", "ml.inf", "ml.trn", "local_gpu")
_said: set[str] = set()


def say_once(message: str) -> None:
    if message not in _said:
        from dogbreed.progress import ensure_visible_logs

        ensure_visible_logs()  # said from a constructor, before any fit(): it must not fall on a silent logger
        _said.add(message)
        log.info("%s", message)


def device_for(instance_type: str | None) -> str | None:
    """The local device for a SageMaker instance type: a GPU type runs on CUDA when this machine has it."""
    if not instance_type:
        return None
    import torch

    wants_gpu = str(instance_type).startswith(GPU_INSTANCE_FAMILIES)
    device = "cuda" if wants_gpu and torch.cuda.is_available() else "cpu"
    say_once(f"instance_type {instance_type} runs here on {device}"
             + (" (no GPU on this machine)" if wants_gpu and device == "cpu" else ""))
    return device

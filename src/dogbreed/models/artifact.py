"""A trained classifier on disk: weights in safetensors (never pickle) and a JSON card with what it needs to run."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from dogbreed.config import UserError
from dogbreed.models.imagenet import attach_imagenet_head, last_layers_copy
from dogbreed.models.inference import IMAGENET_HEAD
from dogbreed.preprocessing import Preprocessing

WEIGHTS, CARD = "model.safetensors", "model.json"


@dataclass(frozen=True)
class ModelCard:
    backbone: str
    timm_name: str
    class_folders: list[str]
    class_labels: list[str]
    preprocessing: Preprocessing
    test_time_flip: bool = True
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    lineage: dict[str, Any] = field(default_factory=dict)  # job, data content key
    weights_sha256: str = ""  # of model.safetensors: checked before every load
    preset: str = ""
    temperature: float = 1.0  # calibrated on a held-out part of train/: probabilities are softmax(logits / T)
    # Not-a-dog decision: {"dog_classes": [ImageNet indices], "threshold": p, ...}; empty: the model has no
    # ImageNet classifier to judge by (older models), every photo counts as a dog.
    not_a_dog: dict[str, Any] = field(default_factory=dict)
    uncertain_below: float = 0.0  # a top-1 probability under this flags the breed as uncertain
    calibration: dict[str, Any] = field(default_factory=dict)  # what the thresholds were set on, ECE before/after

    @property
    def num_classes(self) -> int:
        return len(self.class_folders)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["preprocessing"] = self.preprocessing.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelCard":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{**{k: v for k, v in d.items() if k in known},
                      "preprocessing": Preprocessing.from_dict(d["preprocessing"])})


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save_model(directory: Path, model: nn.Module, card: ModelCard) -> ModelCard:
    """Writes weights and card (each atomically); returns the card with the weights' SHA-256 filled in."""
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    tmp = directory / f".{WEIGHTS}.{os.getpid()}.tmp"
    save_file(state, str(tmp))
    os.replace(tmp, directory / WEIGHTS)
    card = dataclasses.replace(card, weights_sha256=sha256_of(directory / WEIGHTS))
    tmp = directory / f".{CARD}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(card.to_dict(), indent=1))
    os.replace(tmp, directory / CARD)
    return card


def load_card(directory: Path) -> ModelCard:
    path = Path(directory) / CARD
    if not path.exists():
        raise UserError(f"no model in {directory} (missing {CARD})")
    try:
        return ModelCard.from_dict(json.loads(path.read_text()))
    except (ValueError, TypeError, KeyError, UnicodeDecodeError) as e:
        raise UserError(f"model card {path} is damaged ({type(e).__name__}: {str(e)[:80]})") from None


def verify_weights(directory: Path, card: ModelCard) -> Path:
    """The weights file, after checking it is there and is the one the card describes."""
    path = Path(directory) / WEIGHTS
    if not path.is_file():
        raise UserError(f"model weights {path} are missing")
    if card.weights_sha256 and sha256_of(path) != card.weights_sha256:
        raise UserError(f"model weights {path} are damaged: their SHA-256 does not match the model card")
    return path


def load_model(directory: Path) -> tuple[nn.Module, ModelCard]:
    """The model in eval mode and its card; a damaged, truncated or non-finite model is a one-line UserError."""
    import timm

    card = load_card(directory)
    path = verify_weights(directory, card)
    try:
        state = load_file(str(path))
    except Exception as e:  # noqa: BLE001 - safetensors raises several types for a damaged file
        raise UserError(f"model weights {path} cannot be read ({str(e).splitlines()[0][:80]})") from None
    for key, value in state.items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise UserError(f"model weights {path} hold NaN or infinite values (in {key})")
    model = timm.create_model(card.timm_name, pretrained=False, num_classes=card.num_classes)
    kept = f"{IMAGENET_HEAD}.classifier."
    if f"{kept}weight" in state:  # the backbone's ImageNet classifier, kept for the dog score
        frozen = last_layers_copy(model) if any(k.startswith(f"{IMAGENET_HEAD}.top.") for k in state) else None
        attach_imagenet_head(model, (state[f"{kept}weight"], state[f"{kept}bias"]), frozen)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise UserError(f"model weights {path} do not fit {card.timm_name} with {card.num_classes} classes "
                        f"({str(e).splitlines()[0][:80]})") from None
    return model.eval(), card

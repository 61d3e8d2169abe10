"""A trained classifier on disk: weights in safetensors (never pickle) and a JSON card with what it needs to run."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file
from torch import nn

from dogbreed.config import UserError
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

    @property
    def num_classes(self) -> int:
        return len(self.class_folders)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["preprocessing"] = self.preprocessing.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelCard":
        return cls(**{**d, "preprocessing": Preprocessing.from_dict(d["preprocessing"])})


def save_model(directory: Path, model: nn.Module, card: ModelCard) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(directory / WEIGHTS))
    (directory / CARD).write_text(json.dumps(card.to_dict(), indent=1))


def load_card(directory: Path) -> ModelCard:
    path = Path(directory) / CARD
    if not path.exists():
        raise UserError(f"no model in {directory} (missing {CARD})")
    return ModelCard.from_dict(json.loads(path.read_text()))


def load_model(directory: Path) -> tuple[nn.Module, ModelCard]:
    import timm

    card = load_card(directory)
    model = timm.create_model(card.timm_name, pretrained=False, num_classes=card.num_classes)
    model.load_state_dict(load_file(str(Path(directory) / WEIGHTS)), strict=True)
    return model.eval(), card

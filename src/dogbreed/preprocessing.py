"""How a backbone wants its pixels: carried by the weights, resolved in one place (models.registry)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Preprocessing:
    input_size: int = 224
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    crop_pct: float = 0.875
    interpolation: str = "bicubic"

    @property
    def resize_size(self) -> int:
        """Side of the square image kept in the decode cache; crops of `input_size` are taken from it."""
        return int(math.floor(self.input_size / self.crop_pct))

    def key(self) -> str:
        return f"{self.input_size}-{self.resize_size}-{self.interpolation}"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Preprocessing":
        return cls(input_size=int(d["input_size"]), mean=tuple(d["mean"]), std=tuple(d["std"]),
                   crop_pct=float(d["crop_pct"]), interpolation=str(d["interpolation"]))

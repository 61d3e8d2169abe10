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
        return int(math.floor(self.input_size / self.crop_pct + 1e-6))

    def key(self) -> str:
        return f"{self.input_size}-{self.resize_size}-{self.interpolation}"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Preprocessing":
        return cls(input_size=int(d["input_size"]), mean=tuple(d["mean"]), std=tuple(d["std"]),
                   crop_pct=float(d["crop_pct"]), interpolation=str(d["interpolation"]))


def to_input(squares, prep: Preprocessing):
    """The inference transform, the one place it is written: square uint8 images (N x S x S x 3, numpy or torch,
    as decoded by `dogbreed.data.images.to_square`) -> centre crop of `input_size` -> float, normalised,
    N x 3 x H x W (channels_last). Used by evaluation, batch transform, ONNX serving and PyTorch serving."""
    import numpy as np
    import torch

    if isinstance(squares, np.ndarray):
        array = np.ascontiguousarray(squares)
        raw = torch.from_numpy(array if array.flags.writeable else array.copy())  # a read-only memmap slice
    else:
        raw = squares
    raw = raw.permute(0, 3, 1, 2)
    size, full = prep.input_size, raw.shape[-1]
    off = (full - size) // 2
    x = raw[:, :, off:off + size, off:off + size].float().div_(255)
    mean = torch.tensor(prep.mean).view(1, 3, 1, 1)
    std = torch.tensor(prep.std).view(1, 3, 1, 1)
    return x.sub_(mean).div_(std).contiguous(memory_format=torch.channels_last)

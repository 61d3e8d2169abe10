"""Batches from the decode cache: random crops, flips and colour changes done on tensors, one batch ahead.

Augmentation runs in a background thread (torch releases the GIL), so the training step rarely waits for data;
the trainer measures how often it does.
"""

from __future__ import annotations

import math
import queue
import threading
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from dogbreed.preprocessing import Preprocessing, to_input


@dataclass(frozen=True)
class BatchSource:
    """An epoch's worth of (images, labels) batches; iterate it again for the next epoch."""
    images: np.ndarray  # N x S x S x 3 uint8
    labels: np.ndarray
    prep: Preprocessing
    batch_size: int
    train: bool = False
    augmentation: str = "none"
    seed: int = 0
    epoch_offset: int = 0
    shard: tuple[int, int] = (0, 1)  # (rank, workers) of a data-parallel job: this worker's share

    def __len__(self) -> int:
        return math.ceil(shard_length(len(self.labels), self.shard[1]) / self.batch_size)

    def batches(self, epoch: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        rng = np.random.default_rng(self.seed * 1000 + epoch + self.epoch_offset)
        order = rng.permutation(len(self.labels)) if self.train else np.arange(len(self.labels))
        order = shard_order(order, *self.shard, pad=self.train)
        n = len(order)
        for start in range(0, n, self.batch_size):
            idx = np.sort(order[start:start + self.batch_size])  # sorted: sequential reads from the memmap
            yield self.make_batch(idx, rng)

    def make_batch(self, idx: np.ndarray, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        labels = torch.from_numpy(self.labels[idx])
        if not (self.train and self.augmentation != "none"):
            return to_input(self.images[idx], self.prep), labels
        raw = torch.from_numpy(np.ascontiguousarray(self.images[idx])).permute(0, 3, 1, 2)  # B x 3 x S x S
        size, full = self.prep.input_size, raw.shape[-1]
        crops = []
        for img in raw:
            top, left = rng.integers(0, full - size + 1, size=2)
            crop = img[:, top:top + size, left:left + size]
            crops.append(crop.flip(2) if rng.random() < 0.5 else crop)
        x = torch.stack(crops).float().div_(255)
        if self.augmentation in ("crop_color", "crop_color_transform"):
            x = _color_jitter(x, rng)
        if self.augmentation == "crop_color_transform":
            x = _affine_jitter(x, rng)
        mean = torch.tensor(self.prep.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.prep.std).view(1, 3, 1, 1)
        return x.sub_(mean).div_(std).contiguous(memory_format=torch.channels_last), labels


def _color_jitter(x: torch.Tensor, rng: np.random.Generator, strength: float = 0.3) -> torch.Tensor:
    b = x.shape[0]
    brightness = torch.from_numpy(rng.uniform(1 - strength, 1 + strength, (b, 1, 1, 1))).float()
    contrast = torch.from_numpy(rng.uniform(1 - strength, 1 + strength, (b, 1, 1, 1))).float()
    saturation = torch.from_numpy(rng.uniform(1 - strength, 1 + strength, (b, 1, 1, 1))).float()
    x = x * brightness
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * contrast + mean
    grey = x.mean(dim=1, keepdim=True)
    x = (x - grey) * saturation + grey
    return x.clamp_(0, 1)


def _affine_jitter(x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Small rotations, scaling and shear: the 'transform' of SageMaker's crop_color_transform."""
    b = x.shape[0]
    angle = torch.from_numpy(rng.uniform(-0.26, 0.26, b)).float()  # about +-15 degrees
    scale = torch.from_numpy(rng.uniform(0.9, 1.1, b)).float()
    shear = torch.from_numpy(rng.uniform(-0.1, 0.1, b)).float()
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin + shear, torch.zeros(b)], 1),
                         torch.stack([sin, cos, torch.zeros(b)], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, padding_mode="reflection", align_corners=False)


def shard_length(n: int, workers: int) -> int:
    return -(-n // workers)


def shard_order(order: np.ndarray, rank: int, workers: int, pad: bool = True) -> np.ndarray:
    """A worker's part of an epoch's order: every workers-th example. Training shards are padded to equal length
    by repeating from the start (as torch's DistributedSampler does): data-parallel workers must all take the
    same number of steps. Evaluation shards are not (no collective runs in an evaluation pass), so every
    example counts once."""
    if workers == 1:
        return order
    if not pad:
        return order[rank::workers]
    padded = np.resize(order, shard_length(len(order), workers) * workers)
    return padded[rank::workers]


def prefetch(it: Iterator, depth: int = 2) -> Iterator:
    """Runs `it` in a thread, `depth` items ahead; exceptions surface in the consumer."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def work() -> None:
        try:
            for item in it:
                if not _put(item):
                    return
        except BaseException as e:  # re-raised in the consumer
            _put(e)
        _put(done)

    def _put(item: object) -> bool:
        while not stop.is_set():  # a consumer that stopped early must not leave this thread blocked
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    t = threading.Thread(target=work, daemon=True)
    t.start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()

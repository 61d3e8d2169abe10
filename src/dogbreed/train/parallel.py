"""This process's place among a data-parallel job's workers, and the few collective steps the recipe needs.

A single-process job is a group of one, for which every method is the identity; `dogbreed.train.distributed`
starts the workers (Ray Train) and the process group (gloo on CPU, NCCL on GPUs) and hands each stage its group.
Shards are equal in size (the last ones padded with repeated examples, as torch's DistributedSampler does),
because DistributedDataParallel needs every worker to take the same number of steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class WorkerGroup:
    rank: int = 0
    size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def shard(self) -> tuple[int, int]:
        """What batch sources take (`dogbreed.data.batches.shard_order`)."""
        return self.rank, self.size

    def batch_size(self, global_batch: int) -> int:
        """Each worker's batch: the job's mini_batch_size is the global batch, so N workers take the same steps
        as one process would (and reach the same accuracy)."""
        return max(1, -(-global_batch // self.size))

    def block(self, n: int) -> tuple[int, int]:
        """A contiguous block of n items for this worker (feature extraction: gathered back in order)."""
        per_worker = -(-n // self.size)
        return min(n, self.rank * per_worker), min(n, (self.rank + 1) * per_worker)

    def wrap(self, module: nn.Module, device: str) -> nn.Module:
        if self.size == 1:
            return module
        from torch.nn.parallel import DistributedDataParallel

        ids = [torch.device(device).index] if device.startswith("cuda") else None
        # buffers (batch-norm statistics) are not broadcast at every forward: evaluation passes, whose shards
        # differ by one example between workers, then run no collective; the saved model is the first worker's
        return DistributedDataParallel(module, device_ids=ids, broadcast_buffers=False)

    def sum(self, values: list[float]) -> list[float]:
        """Element-wise sums over the workers (metrics are reduced, so the record reads like one job's)."""
        if self.size == 1:
            return values
        import torch.distributed as dist

        t = torch.tensor(values, dtype=torch.float64)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t.tolist()

    def any(self, flag: bool) -> bool:
        """True on every worker when it is true on one (a stop request seen by one stops all at the same epoch)."""
        return bool(self.sum([float(flag)])[0]) if self.size > 1 else flag

    def gather(self, obj: Any) -> list[Any]:
        """Every worker's `obj`, in rank order, on every worker."""
        if self.size == 1:
            return [obj]
        import torch.distributed as dist

        parts: list[Any] = [None] * self.size
        dist.all_gather_object(parts, obj)
        return parts

    def gather_blocks(self, part: np.ndarray, n: int) -> np.ndarray:
        """The whole array from every worker's `block`, in order."""
        return np.concatenate(self.gather(part))[:n] if self.size > 1 else part


SINGLE = WorkerGroup()

"""Micro-batching: concurrent requests are gathered (up to a size, for at most a wait) and predicted together."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import numpy as np


class MicroBatcher:
    def __init__(self, predict: Callable[[list[np.ndarray]], np.ndarray], max_batch_size: int = 16,
                 max_wait_ms: float = 5.0, on_batch: Callable[[int], None] | None = None):
        self.predict, self.max_batch_size, self.max_wait = predict, max_batch_size, max_wait_ms / 1000
        self.on_batch = on_batch
        self.queue: asyncio.Queue = asyncio.Queue()
        self._task: asyncio.Task | None = None
        # The model runs in a thread of its own: decoding, however busy, never queues inference behind it.
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="dogbreed-predict")

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _drain(self, items: list) -> None:
        while len(items) < self.max_batch_size:
            try:
                items.append(self.queue.get_nowait())
            except asyncio.QueueEmpty:
                return

    async def submit(self, square: np.ndarray) -> np.ndarray:
        future = asyncio.get_running_loop().create_future()
        await self.queue.put((square, future))
        return await future

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            items = [await self.queue.get()]
            await asyncio.sleep(0)  # let requests that arrived together join
            self._drain(items)
            # Wait for more only under load (others already queued): a lone request is served at once, and
            # requests arriving while the model runs are batched on the next round anyway.
            if len(items) > 1 and self.max_wait > 0:
                deadline = loop.time() + self.max_wait
                while len(items) < self.max_batch_size:
                    timeout = deadline - loop.time()
                    if timeout <= 0:
                        break
                    try:
                        items.append(await asyncio.wait_for(self.queue.get(), timeout))
                    except asyncio.TimeoutError:
                        break
            squares = [s for s, _ in items]
            try:
                probs = await loop.run_in_executor(self._executor, self.predict, squares)
            except Exception as e:  # every waiting request learns of it; the loop goes on
                for _, f in items:
                    if not f.done():
                        f.set_exception(e)
                continue
            if self.on_batch:
                self.on_batch(len(items))
            for (_, f), p in zip(items, probs):
                if not f.done():
                    f.set_result(p)



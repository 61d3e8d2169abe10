"""Decoding requests' images off the event loop, in two lanes, so that costly images never stall ordinary photos.

What an image costs to decode is known from its header: JPEGs decode at reduced scale (a 12-megapixel phone photo
costs a few hundred thousand pixels), other formats cost every stored pixel. Images that cost more than
`heavy_pixels` wait for a lane of their own, one at a time, with a bounded queue (a client over it is told to
retry: 429); everything else is decoded by the ordinary lane's threads, and inference (its own thread, in the
micro-batcher) is never queued behind either.
"""

from __future__ import annotations

import asyncio
import ctypes
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import numpy as np

from dogbreed.data.images import read_header
from dogbreed.serve.requests import RequestError

HEAVY_PIXELS = 8_000_000
HEAVY_QUEUE = 4


def _release_freed_memory() -> None:
    """A large decode's buffers go back to the system rather than staying in the allocator's free lists."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


class DecodeLanes:
    def __init__(self, decode: Callable[[bytes], np.ndarray], min_side: int, threads: int = 2,
                 heavy_pixels: int = HEAVY_PIXELS, heavy_queue: int = HEAVY_QUEUE):
        self.decode_fn, self.min_side, self.heavy_pixels = decode, min_side, heavy_pixels
        self.light = ThreadPoolExecutor(max(1, threads), thread_name_prefix="dogbreed-decode")
        self.heavy = ThreadPoolExecutor(1, thread_name_prefix="dogbreed-decode-large")
        self.heavy_queue = heavy_queue
        self._heavy_waiting = 0

    def _decode_heavy(self, data: bytes) -> np.ndarray:
        try:
            return self.decode_fn(data)
        finally:
            _release_freed_memory()

    async def decode(self, data: bytes) -> np.ndarray:
        """The model's square array for one image; ImageError for bad bytes, RequestError(429) when the lane for
        large images is full."""
        loop = asyncio.get_running_loop()
        header = read_header(data)  # header only: cheap enough for the event loop
        if header.decode_pixels(self.min_side) <= self.heavy_pixels:
            return await loop.run_in_executor(self.light, self.decode_fn, data)
        if self._heavy_waiting >= self.heavy_queue:
            raise RequestError(429, f"too many large images ({header.width}x{header.height} {header.format}) "
                                    "being decoded; retry shortly, or send a JPEG")
        self._heavy_waiting += 1
        try:
            return await loop.run_in_executor(self.heavy, self._decode_heavy, data)
        finally:
            self._heavy_waiting -= 1

    def shutdown(self) -> None:
        self.light.shutdown(wait=False, cancel_futures=True)
        self.heavy.shutdown(wait=False, cancel_futures=True)

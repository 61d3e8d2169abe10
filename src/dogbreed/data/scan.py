"""One pass over a split's files: content hash, size, and whether each decodes (in worker processes)."""

from __future__ import annotations

import hashlib
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from dogbreed.data.images import ImageError, decode_image, to_square
from dogbreed.data.layout import IMAGE_SUFFIXES
from dogbreed.preprocessing import Preprocessing


@dataclass(frozen=True)
class FileScan:
    path: str
    sha1: str
    width: int = 0
    height: int = 0
    error: str | None = None  # why the file is unusable; None if fine


def hash_file(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()


def _scan_one(args: tuple[str, Preprocessing | None]) -> tuple[FileScan, np.ndarray | None]:
    path, prep = args
    p = Path(path)
    data = p.read_bytes()
    digest = hashlib.sha1(data).hexdigest()
    if p.suffix.lower() not in IMAGE_SUFFIXES:
        return FileScan(path, digest, error="not an image file"), None
    if not data:
        return FileScan(path, digest, error="zero-byte file"), None
    try:
        decoded = decode_image(data, prep.resize_size if prep is not None else None)
        array = to_square(decoded.image, prep) if prep is not None else None
    except ImageError as e:
        return FileScan(path, digest, error=str(e)), None
    return FileScan(path, digest, decoded.width, decoded.height), array


def scan_files(paths: list[Path], prep: Preprocessing | None, workers: int,
               on_progress: Callable[[int], None] | None = None,
               ) -> list[tuple[FileScan, np.ndarray | None]]:
    """Scans in order; with `prep`, also returns each decoded square array (None for bad files)."""
    jobs = [(str(p), prep) for p in paths]
    if workers <= 1 or len(jobs) < 64:
        results = []
        for j in jobs:
            results.append(_scan_one(j))
            if on_progress:
                on_progress(1)
        return results
    results = []
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for r in pool.map(_scan_one, jobs, chunksize=32):
            results.append(r)
            if on_progress:
                on_progress(1)
    return results

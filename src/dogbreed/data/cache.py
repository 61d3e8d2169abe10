"""Decode once, train many times: each split's images as one uint8 array on disk, keyed by content.

The key covers every file's content hash and the preprocessing, so a changed photo or another backbone's input
size gives a new cache entry, while re-running a job on the same data decodes nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from dogbreed.config import home
from dogbreed.data.images import DECODER_VERSION
from dogbreed.data.layout import Split
from dogbreed.data.scan import FileScan, hash_file, scan_files
from dogbreed.preprocessing import Preprocessing


@dataclass(frozen=True)
class CachedSplit:
    name: str
    key: str
    images: np.ndarray  # N x S x S x 3 uint8 (memory-mapped), good files only
    labels: np.ndarray  # N class indices
    scans: tuple[FileScan, ...]  # every file of the split, bad ones included, in layout order

    @property
    def good_files(self) -> list[str]:
        return [s.path for s in self.scans if s.error is None]


def split_key(split: Split, prep: Preprocessing) -> tuple[str, list[str]]:
    digests = [hash_file(p) for p in split.files]
    h = hashlib.sha1(f"{prep.key()}|{DECODER_VERSION}".encode())
    for label, d in zip(split.labels, digests):
        h.update(f"{label}/{d}\n".encode())
    return h.hexdigest()[:20], digests


def load_or_build(split: Split, prep: Preprocessing, class_index: dict[str, int], workers: int,
                  on_progress: Callable[[int], None] | None = None) -> CachedSplit:
    key, _ = split_key(split, prep)
    root = home() / "cache" / "images" / key
    if not (root / "meta.json").exists():
        _build(split, prep, root, workers, on_progress)
    meta = json.loads((root / "meta.json").read_text())
    # Paths are the current ones: the same content may have been cached from another location.
    scans = tuple(FileScan(**{**s, "path": str(p)}) for s, p in zip(meta["scans"], split.files))
    labels = np.array([class_index[lab] for lab, s in zip(split.labels, scans) if s.error is None], dtype=np.int64)
    images = np.load(root / "images.npy", mmap_mode="r")
    return CachedSplit(split.name, key, images, labels, scans)


def _build(split: Split, prep: Preprocessing, root: Path, workers: int,
           on_progress: Callable[[int], None] | None) -> None:
    results = scan_files(list(split.files), prep, workers, on_progress)
    good = [a for _, a in results if a is not None]
    size = prep.resize_size
    tmp = root.with_name(root.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    out = np.lib.format.open_memmap(tmp / "images.npy", mode="w+", dtype=np.uint8, shape=(len(good), size, size, 3))
    for i, a in enumerate(good):
        out[i] = a
    out.flush()
    del out
    scans = [s.__dict__ for s, _ in results]
    (tmp / "meta.json").write_text(json.dumps({"preprocessing": prep.to_dict(), "scans": scans}))
    try:
        tmp.rename(root)  # atomic: a crash never leaves a half-written cache entry behind
    except OSError:  # another process built it first
        shutil.rmtree(tmp, ignore_errors=True)

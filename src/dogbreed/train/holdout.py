"""A held-out part of train/: where presets are compared, temperatures fitted and thresholds set.

valid/ is only ever reported, never used to choose anything, so the choices a job makes need photos of their own.
"""

from __future__ import annotations

import numpy as np


def holdout_mask(labels: np.ndarray, fraction: float, seed: int = 0, min_per_class: int = 1) -> np.ndarray:
    """Boolean mask of the held-out photos: `fraction` of every class (at least `min_per_class`, never all of
    a class), chosen at random but the same for the same labels and seed."""
    labels = np.asarray(labels)
    mask = np.zeros(len(labels), dtype=bool)
    if fraction <= 0:
        return mask
    rng = np.random.default_rng(seed + 7919)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        if len(idx) < 2:
            continue
        k = min(len(idx) - 1, max(min_per_class, round(fraction * len(idx))))
        mask[rng.choice(idx, size=k, replace=False)] = True
    return mask

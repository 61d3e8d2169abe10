"""Starting a new head from the ImageNet classifier: most dog breeds are ImageNet classes already."""

from __future__ import annotations

import re
from functools import lru_cache

import torch
from torch import nn


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", name.lower()).strip()


@lru_cache(maxsize=1)
def _imagenet_names() -> tuple[dict[str, int], dict[str, int]]:
    """(synset -> index, normalised name -> index), from timm's bundled ImageNet-1k class info (offline)."""
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    by_synset, by_name = {}, {}
    for i in range(info.num_classes()):
        by_synset[info.index_to_label_name(i)] = i
        for lemma in info.index_to_description(i).split(","):
            by_name.setdefault(_norm(lemma), i)
    return by_synset, by_name


def imagenet_index(folder: str, label: str) -> int | None:
    """ImageNet-1k class index for a class folder (`n02085620-Chihuahua`) or readable label (`Chihuahua`)."""
    by_synset, by_name = _imagenet_names()
    synset = folder.split("-", 1)[0]
    if synset in by_synset:
        return by_synset[synset]
    return by_name.get(_norm(label))


def init_head_from_imagenet(head: nn.Linear, imagenet_head: tuple[torch.Tensor, torch.Tensor],
                            classes: list[tuple[str, str]]) -> int:
    """Copies the ImageNet rows of matching classes into `head`; returns how many classes matched.

    Unmatched rows get zero weights and the mean ImageNet bias, so they start neutral rather than random.
    """
    weight, bias = imagenet_head
    matched = 0
    with torch.no_grad():
        head.weight.zero_()
        head.bias.fill_(float(bias.mean()))
        for row, (folder, label) in enumerate(classes):
            index = imagenet_index(folder, label)
            if index is not None:
                head.weight[row] = weight[index]
                head.bias[row] = bias[index]
                matched += 1
    return matched

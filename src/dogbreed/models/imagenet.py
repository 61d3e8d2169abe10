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


# ImageNet-1k's dogs: the domestic breeds (151-268) and the wild dogs a dog photo's probability spreads onto
# (wolves, coyote, dingo, dhole, African hunting dog: 269-275; Stanford Dogs has the last three as breeds).
DOG_CLASSES = tuple(range(151, 276))


class ImageNetHead(nn.Module):
    """The backbone's own ImageNet classifier, kept beside the breed head. On pooled features; or, when the
    backbone's last block was fine-tuned, on that block's input through a frozen copy of the original layers."""

    def __init__(self, classifier: nn.Linear, top: nn.Module | None = None):
        super().__init__()
        self.classifier, self.top = classifier, top
        for p in self.parameters():
            p.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.top is not None:
            x = self.top(x).mean((2, 3))
        return self.classifier(x)


def attach_imagenet_head(model: nn.Module, imagenet_head: tuple[torch.Tensor, torch.Tensor],
                         top: nn.Module | None = None) -> nn.Module:
    """Keeps the backbone's own ImageNet classifier inside the model (saved with it), for the dog score."""
    from dogbreed.models.inference import IMAGENET_HEAD

    weight, bias = imagenet_head
    classifier = nn.Linear(weight.shape[1], weight.shape[0])
    with torch.no_grad():
        classifier.weight.copy_(weight)
        classifier.bias.copy_(bias)
    model.add_module(IMAGENET_HEAD, ImageNetHead(classifier, top).eval())
    return model


def last_layers_copy(model: nn.Module) -> nn.Module:
    """A frozen copy of what follows the last block's input (last block, final 1x1 convolution, its BatchNorm)."""
    import copy

    part = nn.Sequential(copy.deepcopy(model.blocks[-1]), copy.deepcopy(model.conv_head),
                         copy.deepcopy(model.bn2)).eval()
    for p in part.parameters():
        p.requires_grad_(False)
    return part

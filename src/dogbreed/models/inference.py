"""Class probabilities as every consumer computes them (evaluation, ONNX export, serving): softmax of the logits
(divided by the model's calibrated temperature), averaged over the image and its mirror when the model was trained
for test-time flip; and, for models that kept the backbone's ImageNet classifier, the probability that the photo
shows a dog at all."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from dogbreed.devices import autocast
from dogbreed.preprocessing import Preprocessing, to_input

IMAGENET_HEAD = "imagenet_head"  # submodule name of the backbone's own ImageNet classifier, kept for the dog score


def average_softmax(logits: list[torch.Tensor], temperature: float = 1.0) -> torch.Tensor:
    """Mean of the softmax over views of the same images (one tensor of logits per view)."""
    probs = (logits[0].float() / temperature).softmax(-1)
    for view in logits[1:]:
        probs = probs + (view.float() / temperature).softmax(-1)
    return probs / len(logits)


def dog_probability(imagenet_logits: torch.Tensor, dog_classes: torch.Tensor) -> torch.Tensor:
    """ImageNet probability mass on the dog classes: what the backbone itself thinks of 'is this a dog'."""
    return imagenet_logits.float().softmax(-1)[:, dog_classes].sum(-1)


def stem(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A timm EfficientNet up to its last block: the part the `best` preset keeps frozen and caches."""
    x = model.bn1(model.conv_stem(x))
    return model.blocks[:-1](x)


def top(model: nn.Module, a: torch.Tensor) -> torch.Tensor:
    """The rest, from the last block's input to the pooled features."""
    x = model.bn2(model.conv_head(model.blocks[-1](a)))
    return model.forward_head(x, pre_logits=True)


class ServedModel(nn.Module):
    """Normalised images in, class probabilities out (with the mirror view averaged in when `flip`).

    With `dog_classes` (and the model's kept ImageNet classifier) it returns a second output: each image's dog
    probability, from the same forward pass."""

    def __init__(self, model: nn.Module, flip: bool, temperature: float = 1.0,
                 dog_classes: list[int] | None = None):
        super().__init__()
        self.model, self.flip, self.temperature = model, flip, float(temperature)
        self.with_dog = bool(dog_classes) and hasattr(model, IMAGENET_HEAD)
        self.register_buffer("dog_classes", torch.tensor(dog_classes or [], dtype=torch.long), persistent=False)

    def forward(self, x: torch.Tensor):
        views = [x, torch.flip(x, dims=[3])] if self.flip else [x]
        if not self.with_dog:
            return average_softmax([self.model(v) for v in views], self.temperature)
        dog_head = getattr(self.model, IMAGENET_HEAD)
        if dog_head.top is not None:  # the last block was fine-tuned: the dog score reads its frozen copy
            dog_inputs = [stem(self.model, v) for v in views]
            pooled = [top(self.model, a) for a in dog_inputs]
        else:
            pooled = [self.model.forward_head(self.model.forward_features(v), pre_logits=True) for v in views]
            dog_inputs = pooled
        probs = average_softmax([self.model.get_classifier()(p) for p in pooled], self.temperature)
        dog = sum(dog_probability(dog_head(d), self.dog_classes) for d in dog_inputs) / len(dog_inputs)
        return probs, dog


@torch.no_grad()
def predict_probabilities(model: nn.Module, squares: np.ndarray, prep: Preprocessing, flip: bool,
                          device: str = "cpu", precision_dtype: str = "float32", batch_size: int = 64,
                          temperature: float = 1.0) -> torch.Tensor:
    """N x C probabilities for square uint8 images (the decode cache's or the endpoint's)."""
    served = ServedModel(model.to(device, memory_format=torch.channels_last).eval(), flip, temperature)
    outs = []
    for start in range(0, len(squares), batch_size):
        x = to_input(squares[start:start + batch_size], prep).to(device)
        with autocast(device, precision_dtype):
            outs.append(served(x).float().cpu())
    return torch.cat(outs) if outs else torch.zeros(0, 0)

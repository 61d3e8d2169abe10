"""Class probabilities as every consumer computes them (evaluation, ONNX export, serving): softmax of the logits,
averaged over the image and its mirror when the model was trained for test-time flip."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from dogbreed.devices import autocast
from dogbreed.preprocessing import Preprocessing, to_input


def average_softmax(logits: list[torch.Tensor]) -> torch.Tensor:
    """Mean of the softmax over views of the same images (one tensor of logits per view)."""
    probs = logits[0].float().softmax(-1)
    for view in logits[1:]:
        probs = probs + view.float().softmax(-1)
    return probs / len(logits)


class ServedModel(nn.Module):
    """Normalised images in, class probabilities out (with the mirror view averaged in when `flip`)."""

    def __init__(self, model: nn.Module, flip: bool):
        super().__init__()
        self.model, self.flip = model, flip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        views = [self.model(x)]
        if self.flip:
            views.append(self.model(torch.flip(x, dims=[3])))
        return average_softmax(views)


@torch.no_grad()
def predict_probabilities(model: nn.Module, squares: np.ndarray, prep: Preprocessing, flip: bool,
                          device: str = "cpu", precision_dtype: str = "float32", batch_size: int = 64
                          ) -> torch.Tensor:
    """N x C probabilities for square uint8 images (the decode cache's or the endpoint's)."""
    served = ServedModel(model.to(device, memory_format=torch.channels_last).eval(), flip)
    outs = []
    for start in range(0, len(squares), batch_size):
        x = to_input(squares[start:start + batch_size], prep).to(device)
        with autocast(device, precision_dtype):
            outs.append(served(x).float().cpu())
    return torch.cat(outs) if outs else torch.zeros(0, 0)

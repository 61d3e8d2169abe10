"""Fine-tuning the backbone's last block on cached activations of the frozen part (the `best` preset).

Everything before the last block stays frozen, so its output for each cached view of each photo is computed once
(`view_features.extract_view_features(keep_activations=True)`); an epoch then runs only the last block, the final
1x1 convolution and the head: a CPU fine-tunes in minutes rather than hours. The head starts from the linear one
trained before (LP-FT: fine-tuning from a good head distorts the pretrained features least).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from dogbreed.config import Hyperparameters
from dogbreed.train.recipe import AnchoredLoss, make_optimizer
from dogbreed.train.trainer import Callback, Trainer, TrainerConfig
from dogbreed.models.inference import top

BACKBONE_LR_SHARE = 0.1  # the last block learns at a tenth of the head's rate


class LastBlockClassifier(nn.Module):
    """Last-block input activations -> breed logits, sharing its layers with the whole model."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.dropout = nn.Dropout(0.2)

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        return self.model.get_classifier()(self.dropout(top(self.model, a)))

    def train(self, mode: bool = True) -> "LastBlockClassifier":
        super().train(mode)
        self.model.eval()  # the frozen part keeps its BatchNorm statistics...
        for m in trainable_modules(self.model):  # ...the trained part learns its own
            m.train(mode)
        self.dropout.train(mode)
        return self


def trainable_modules(model: nn.Module) -> list[nn.Module]:
    return [model.blocks[-1], model.conv_head, model.bn2, model.get_classifier()]


@dataclass(frozen=True)
class ActivationBatches:
    """Batches of cached activations (N x V x C x h x w, float16 on disk) as float32 channels-last tensors.
    Training draws one random view per photo per epoch; evaluation yields every view."""
    activations: np.ndarray
    labels: np.ndarray
    index: np.ndarray  # which photos
    batch_size: int
    train: bool = False
    seed: int = 0

    def __len__(self) -> int:
        return math.ceil(len(self.index) / self.batch_size)

    def batches(self, epoch: int = 0):
        rng = np.random.default_rng(self.seed * 1000 + epoch)
        order = rng.permutation(self.index) if self.train else self.index
        for start in range(0, len(order), self.batch_size):
            idx = np.sort(order[start:start + self.batch_size])  # sorted: sequential reads from the memmap
            if self.train:
                views = rng.integers(0, self.activations.shape[1], size=len(idx))
                a = np.stack([self.activations[i, v] for i, v in zip(idx, views)])
            else:
                a = np.asarray(self.activations[idx])
            x = torch.from_numpy(a.astype(np.float32))
            x = x.flatten(0, 1) if x.dim() == 5 else x
            yield x.contiguous(memory_format=torch.channels_last), torch.from_numpy(self.labels[idx])


def views_mean_predict(n_views: int):
    """Predict for evaluation batches that hold every view of each photo in a row: mean softmax, as log."""

    def predict(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
        logits = module(x).float()
        probs = logits.view(-1, n_views, logits.shape[-1]).softmax(-1).mean(1)
        return probs.clamp_min(1e-12).log()

    return predict


def finetune_last_block(model: nn.Module, activations: np.ndarray, labels: np.ndarray, fit: np.ndarray,
                        hp: Hyperparameters, epochs: int, callbacks: list[Callback], epoch_offset: int = 0,
                        valid: tuple[np.ndarray, np.ndarray] | None = None, device: str = "cpu") -> Trainer:
    """Trains the last block, final convolution and head of `model` in place on the cached activations of the
    photos in `fit`; returns the finished trainer (its history and stop reason)."""
    for p in model.parameters():
        p.requires_grad_(False)
    blocks = [m for m in trainable_modules(model)[:-1]]
    head = model.get_classifier()
    for m in [*blocks, head]:
        for p in m.parameters():
            p.requires_grad_(True)
    backbone_params = [p for m in blocks for p in m.parameters()]
    opt = make_optimizer(list(head.parameters()), hp, hp.learning_rate * 0.3)
    opt.add_param_group({**opt.param_groups[0], "params": backbone_params,
                         "lr": hp.learning_rate * 0.3 * BACKBONE_LR_SHARE})
    for g in opt.param_groups:
        g["initial_lr"] = g["lr"]
    module = LastBlockClassifier(model)
    steps = max(1, epochs)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    valid_source = None
    predict = None
    if valid is not None:
        v_acts, v_labels = valid
        valid_source = ActivationBatches(v_acts, v_labels, np.arange(len(v_labels)), 64)
        predict = views_mean_predict(v_acts.shape[1])
    torch.manual_seed(hp.seed)
    trainer = Trainer(module, ActivationBatches(activations, labels, np.flatnonzero(fit), hp.mini_batch_size,
                                                train=True, seed=hp.seed),
                      valid_source, opt, TrainerConfig(epochs=epochs, stage="last_block", top_k=hp.top_k,
                                                       device=device, epoch_offset=epoch_offset),
                      loss_fn=AnchoredLoss(head, hp.preset_value("head_anchor"), hp.label_smoothing), scheduler=scheduler,
                      **({"predict": predict} if predict else {}), callbacks=callbacks)
    trainer.fit()
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return trainer


@torch.no_grad()
def refeaturize(model: nn.Module, activations: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """N x V x D pooled features of the (fine-tuned) model from cached last-block inputs."""
    model = model.eval()
    out = []
    n, v = activations.shape[:2]
    for start in range(0, n, batch_size):
        a = torch.from_numpy(np.asarray(activations[start:start + batch_size]).astype(np.float32))
        b = a.shape[0]
        f = top(model, a.flatten(0, 1).contiguous(memory_format=torch.channels_last))
        out.append(f.view(b, v, -1).float().numpy())
    return np.concatenate(out) if out else np.zeros((0, v, model.num_features), np.float32)

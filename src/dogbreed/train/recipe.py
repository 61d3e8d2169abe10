"""The pieces of a training recipe: what is frozen, the loss, the optimizer and the learning-rate schedule."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from dogbreed.config import Hyperparameters


class PartlyFrozen(nn.Module):
    """Wraps a model whose early part is frozen; that part stays in eval mode (BatchNorm statistics kept)."""

    def __init__(self, model: nn.Module, frozen: list[nn.Module]):
        super().__init__()
        self.model = model
        self._frozen = frozen

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def train(self, mode: bool = True) -> "PartlyFrozen":
        super().train(mode)
        for m in self._frozen:
            m.eval()
        return self


def _units(model: nn.Module) -> list[tuple[nn.Module, bool]]:
    """The model's modules in forward order, nested Sequentials expanded; the flag marks blocks."""
    out: list[tuple[nn.Module, bool]] = []

    def walk(m: nn.Module, in_sequential: bool) -> None:
        if isinstance(m, nn.Sequential):
            for child in m.children():
                walk(child, True)
        else:
            out.append((m, in_sequential))

    for _, child in model.named_children():
        walk(child, False)
    return out


def freeze_for_mode(model: nn.Module, train_mode: str, trainable_blocks: int) -> nn.Module:
    """Freezes all but what `train_mode` trains; returns the module to train."""
    if train_mode == "full":
        for p in model.parameters():
            p.requires_grad_(True)
        return model
    units = _units(model)
    block_positions = [i for i, (_, is_block) in enumerate(units) if is_block]
    if train_mode == "last_blocks" and block_positions:
        first_trainable = block_positions[max(0, len(block_positions) - trainable_blocks)]
    else:  # head only: everything before the classifier
        first_trainable = len(units)
    classifier = model.get_classifier()
    frozen = []
    for i, (m, _) in enumerate(units):
        trainable = i >= first_trainable or m is classifier
        for p in m.parameters():
            p.requires_grad_(trainable)
        if not trainable:
            frozen.append(m)
    for p in classifier.parameters():
        p.requires_grad_(True)
    return PartlyFrozen(model, frozen)


class AnchoredLoss(nn.Module):
    """Cross-entropy plus an L2 pull of the head towards its starting weights (L2-SP).

    With 60 photos per breed, a head started from the ImageNet rows overfits when trained freely; anchoring it
    keeps what ImageNet knew and learns only what the new data supports.
    """

    def __init__(self, head: nn.Linear, strength: float, label_smoothing: float):
        super().__init__()
        self.ce = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
        self.head, self.strength = head, strength
        self.start = [p.detach().clone() for p in (head.weight, head.bias)]

    def forward(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        loss = self.ce(logits, y)
        if self.strength:
            pull = sum(((p - p0) ** 2).sum() for p, p0 in zip((self.head.weight, self.head.bias), self.start))
            loss = loss + self.strength / 2 * pull
        return loss


def make_optimizer(params: list[nn.Parameter], hp: Hyperparameters, lr: float) -> torch.optim.Optimizer:
    """SageMaker's optimizers by name; eps 0 (allowed by SageMaker's ranges) is raised to a tiny positive value."""
    betas, eps = (hp.beta_1, hp.beta_2), hp.safe_eps
    if hp.optimizer in ("sgd", "nag"):
        # Nesterov without momentum is plain SGD (as MXNet's nag); torch refuses the combination, so say it plainly
        return torch.optim.SGD(params, lr=lr, momentum=hp.momentum, weight_decay=hp.weight_decay,
                               nesterov=hp.optimizer == "nag" and hp.momentum > 0)
    if hp.optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, betas=betas, eps=eps, weight_decay=hp.weight_decay)
    if hp.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=betas, eps=eps, weight_decay=hp.weight_decay)
    return torch.optim.RMSprop(params, lr=lr, alpha=hp.gamma, momentum=hp.momentum, eps=eps,
                               weight_decay=hp.weight_decay)


def make_scheduler(opt: torch.optim.Optimizer, hp: Hyperparameters, epochs: int) -> Any:
    if hp.lr_scheduler == "cosine" and epochs > 0:
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    if hp.lr_scheduler == "step":
        milestones = hp.decay_epochs() or [max(1, epochs // 3), max(2, 2 * epochs // 3)]
        return torch.optim.lr_scheduler.MultiStepLR(opt, milestones=milestones, gamma=hp.lr_scheduler_factor)
    return None

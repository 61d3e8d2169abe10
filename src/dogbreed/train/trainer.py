"""A short training loop that knows nothing of logging: callbacks fire at named events (after minGPT's trainer).

The loop times each step's parts (waiting for data, forward, backward, optimizer) because the profiler and the
data-wait figure need them, and leaves everything else (metrics export, early stopping, debugging) to callbacks.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Protocol

import torch
from torch import nn

from dogbreed.data.batches import prefetch
from dogbreed.devices import autocast


class BatchSource(Protocol):
    def __len__(self) -> int: ...
    def batches(self, epoch: int = 0) -> Iterable[tuple[torch.Tensor, torch.Tensor]]: ...


@dataclass(frozen=True)
class StepRecord:
    epoch: int
    step: int  # global step
    loss: float
    batch_size: int
    data_s: float
    forward_s: float
    backward_s: float
    optimizer_s: float

    @property
    def total_s(self) -> float:
        return self.data_s + self.forward_s + self.backward_s + self.optimizer_s


class Callback:
    """Hooks a callback may implement; each receives the trainer, whose state it may read and `request_stop`."""

    def on_train_start(self, trainer: "Trainer") -> None: ...
    def on_epoch_start(self, trainer: "Trainer") -> None: ...
    def on_after_backward(self, trainer: "Trainer") -> None: ...  # gradients are in .grad
    def on_step_end(self, trainer: "Trainer", step: StepRecord) -> None: ...
    def on_epoch_end(self, trainer: "Trainer", metrics: dict[str, float]) -> None: ...
    def on_train_end(self, trainer: "Trainer") -> None: ...


@dataclass
class TrainerConfig:
    epochs: int
    stage: str = "train"
    top_k: int = 5
    precision_dtype: str = "float32"
    device: str = "cpu"
    epoch_offset: int = 0  # epochs already run by earlier stages: keeps the metric steps of a job continuous
    max_grad_norm: float | None = None


@dataclass
class TrainerState:
    epoch: int = 0
    global_step: int = 0
    stop_reason: str | None = None
    history: list[dict[str, float]] = field(default_factory=list)
    last_loss: float = float("nan")


Predict = Callable[[nn.Module, torch.Tensor], torch.Tensor]


def plain_predict(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model(x)


class Trainer:
    def __init__(self, model: nn.Module, train: BatchSource, valid: BatchSource | None,
                 optimizer: torch.optim.Optimizer, config: TrainerConfig, *,
                 loss_fn: nn.Module | None = None, scheduler: Any = None, predict: Predict = plain_predict,
                 callbacks: list[Callback] | None = None,
                 sum_over_workers: Callable[[list[float]], list[float]] = lambda values: values):
        self.model, self.train_source, self.valid_source = model, train, valid
        self.optimizer, self.scheduler, self.config = optimizer, scheduler, config
        self.loss_fn = loss_fn or nn.CrossEntropyLoss()
        self.predict = predict
        self.callbacks = list(callbacks or [])
        self.sum_over_workers = sum_over_workers  # data-parallel: each worker's metric sums -> the job's
        self.state = TrainerState()
        self.device = torch.device(config.device)
        self._scaler = torch.amp.GradScaler("cuda") if config.precision_dtype == "float16" else None

    # -- events -------------------------------------------------------------------------------------------
    def fire(self, event: str, *args: Any) -> None:
        for cb in self.callbacks:
            getattr(cb, event)(self, *args)

    def request_stop(self, reason: str) -> None:
        """Called by callbacks (early stopping, debugger actions); the loop stops after the current epoch."""
        if self.state.stop_reason is None:
            self.state.stop_reason = reason

    @property
    def global_epoch(self) -> int:
        return self.config.epoch_offset + self.state.epoch

    def autocast(self) -> contextlib.AbstractContextManager:
        return autocast(self.device, self.config.precision_dtype)

    # -- loop -----------------------------------------------------------------------------------------------
    def fit(self) -> list[dict[str, float]]:
        self.model.to(self.device)
        self.fire("on_train_start")
        # a restored trainer (dogbreed.train.checkpoint) goes on after the epochs it already has
        for epoch in range(self.state.epoch + 1, self.config.epochs + 1):
            self.state.epoch = epoch
            self.fire("on_epoch_start")
            metrics = self._train_epoch(epoch)
            if self.valid_source is not None:
                metrics.update(self.evaluate(self.valid_source, prefix="validation"))
            if self.scheduler is not None:
                self.scheduler.step()
            metrics["epoch"] = float(self.global_epoch)
            self.state.history.append(metrics)
            self.fire("on_epoch_end", metrics)
            if self.state.stop_reason:
                break
        self.fire("on_train_end")
        return self.state.history

    def _train_epoch(self, epoch: int) -> dict[str, float]:
        self.model.train()
        total_loss, correct, correct_k, seen = 0.0, 0, 0, 0
        batches = iter(prefetch(iter(self.train_source.batches(self.global_epoch))))
        while True:
            t0 = time.perf_counter()
            try:
                x, y = next(batches)
            except StopIteration:
                break
            x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            t1 = time.perf_counter()
            with self.autocast():
                logits = self.model(x)
                loss = self.loss_fn(logits, y)
            t2 = time.perf_counter()
            self.optimizer.zero_grad(set_to_none=True)
            if self._scaler is not None:
                self._scaler.scale(loss).backward()
                self._scaler.unscale_(self.optimizer)
            else:
                loss.backward()
            self.fire("on_after_backward")
            t3 = time.perf_counter()
            if self.config.max_grad_norm:
                nn.utils.clip_grad_norm_(self.model.parameters(), self.config.max_grad_norm)
            if self._scaler is not None:
                self._scaler.step(self.optimizer)
                self._scaler.update()
            else:
                self.optimizer.step()
            self._sync()
            t4 = time.perf_counter()
            self.state.global_step += 1
            loss_value = float(loss.detach())
            self.state.last_loss = loss_value
            n = len(y)
            total_loss += loss_value * n
            seen += n
            c, ck = _hits(logits.detach().float(), y, self.config.top_k)
            correct += c
            correct_k += ck
            self.fire("on_step_end", StepRecord(self.global_epoch, self.state.global_step, loss_value, n,
                                                t1 - t0, t2 - t1, t3 - t2, t4 - t3))
        total_loss, correct, correct_k, seen = self.sum_over_workers([total_loss, correct, correct_k, seen])
        seen = max(seen, 1)
        return {"train:loss": total_loss / seen, "train:accuracy": correct / seen,
                "train:top_k_accuracy": correct_k / seen}

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()

    @torch.no_grad()
    def predict_all(self, source: BatchSource) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and labels over a whole source, in order, with the model in eval mode."""
        was_training = self.model.training
        self.model.eval()
        logits, labels = [], []
        for x, y in prefetch(iter(source.batches(0))):
            with self.autocast():
                out = self.predict(self.model, x.to(self.device))
            logits.append(out.float().cpu())
            labels.append(y)
        self.model.train(was_training)
        return torch.cat(logits), torch.cat(labels)

    def evaluate(self, source: BatchSource, prefix: str) -> dict[str, float]:
        logits, labels = self.predict_all(source)
        loss = float(nn.functional.cross_entropy(logits, labels, reduction="sum")) if len(labels) else 0.0
        c, ck = _hits(logits, labels, self.config.top_k)
        loss, c, ck, n = self.sum_over_workers([loss, c, ck, len(labels)])
        n = max(n, 1)
        return {f"{prefix}:loss": loss / n, f"{prefix}:accuracy": c / n, f"{prefix}:top_k_accuracy": ck / n}


def _hits(logits: torch.Tensor, y: torch.Tensor, k: int) -> tuple[int, int]:
    k = min(k, logits.shape[1])
    top = logits.topk(k, dim=1).indices
    return int((top[:, 0] == y).sum()), int((top == y[:, None]).any(dim=1).sum())

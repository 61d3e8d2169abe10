"""Callbacks the training job attaches to its trainers: epoch records, tracking, early stopping, progress."""

from __future__ import annotations

import logging
from typing import Callable

from dogbreed.train.trainer import Callback, StepRecord, Trainer

log = logging.getLogger("dogbreed")


class EpochLog(Callback):
    """Passes each epoch's metrics on (to the job record and the tracker) and logs a line."""

    def __init__(self, sink: Callable[[dict[str, float]], None]):
        self.sink = sink

    def on_epoch_end(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        metrics = {**metrics, "stage": trainer.config.stage}
        self.sink(metrics)
        shown = " ".join(f"{k}={v:.4f}" for k, v in metrics.items() if isinstance(v, float) and k != "epoch")
        log.info("epoch %d [%s] %s", int(metrics["epoch"]), trainer.config.stage, shown)


class EarlyStopping(Callback):
    """SageMaker's early_stopping: stop when validation accuracy has not improved by `tolerance` (relative)
    for `patience` epochs, never before `min_epochs`."""

    def __init__(self, min_epochs: int, patience: int, tolerance: float, metric: str = "validation:accuracy"):
        self.min_epochs, self.patience, self.tolerance, self.metric = min_epochs, patience, tolerance, metric
        self.best: float | None = None
        self.bad_epochs = 0

    def on_train_start(self, trainer: Trainer) -> None:
        # a trainer restored from a checkpoint already has epochs: count them as if this had seen them
        for metrics in trainer.state.history:
            self._count(metrics)

    def on_epoch_end(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        if self._count(metrics) and trainer.global_epoch >= self.min_epochs and self.bad_epochs >= self.patience:
            trainer.request_stop(f"early stopping: {self.metric} did not improve for {self.patience} epochs")

    def _count(self, metrics: dict[str, float]) -> bool:
        value = metrics.get(self.metric)
        if value is None:
            return False
        if self.best is None or value > self.best * (1 + self.tolerance):
            self.best, self.bad_epochs = value, 0
        else:
            self.bad_epochs += 1
        return True


class ProgressBar(Callback):
    """A bar per epoch on a terminal or in a notebook; elsewhere nothing (epoch lines are logged anyway)."""

    def __init__(self) -> None:
        self.bar = None

    def on_epoch_start(self, trainer: Trainer) -> None:
        from dogbreed.progress import interactive

        if not interactive():
            return
        from tqdm.auto import tqdm

        self.bar = tqdm(total=len(trainer.train_source), desc=f"{trainer.config.stage} epoch {trainer.global_epoch}",
                        unit="step", leave=False, dynamic_ncols=True)

    def on_step_end(self, trainer: Trainer, step: StepRecord) -> None:
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{step.loss:.3f}", refresh=False)

    def on_epoch_end(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class StopWatcher(Callback):
    """Calls `check` after every step; `check` raises to end the job at once (a user's stop request)."""

    def __init__(self, check: Callable[[], None]):
        self.check = check

    def on_step_end(self, trainer: Trainer, step: StepRecord) -> None:
        self.check()

    def on_epoch_end(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        self.check()


class DataWaitMeter(Callback):
    """Share of step time spent waiting for the next batch; reported as a metric of the job."""

    def __init__(self) -> None:
        self.data_s = self.total_s = 0.0
        self.images = 0

    def on_step_end(self, trainer: Trainer, step: StepRecord) -> None:
        self.data_s += step.data_s
        self.total_s += step.total_s
        self.images += step.batch_size

    @property
    def share(self) -> float:
        return self.data_s / self.total_s if self.total_s else 0.0

    @property
    def images_per_s(self) -> float:
        return self.images / self.total_s if self.total_s else 0.0

"""The debugger's hooks: trainer callbacks that record tensors at an interval, kept in memory and saved as Parquet.

Nothing here decides anything: rules (rules.py) read what was recorded. Statistics are computed only on sampled
steps, so a job pays for the debugger only every `interval` steps.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dogbreed.config import UserError
from dogbreed.train.trainer import Callback, StepRecord, Trainer

ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.SiLU, nn.GELU, nn.Tanh, nn.Sigmoid, nn.LeakyReLU, nn.ELU, nn.Hardswish)
SATURATION = {nn.Tanh: (-0.97, 0.97), nn.Sigmoid: (0.03, 0.97), nn.ReLU6: (None, 5.99)}


@dataclass
class DebugData:
    """What the debugger recorded: long-format rows, one per (step, tensor, statistic)."""
    tensors: list[dict[str, Any]] = field(default_factory=list)  # step, epoch, stage, name, stat, value
    steps: list[dict[str, Any]] = field(default_factory=list)  # step, epoch, stage, loss, time, data_s, ...
    epochs: list[dict[str, Any]] = field(default_factory=list)  # per-epoch metrics
    system: list[dict[str, Any]] = field(default_factory=list)  # profiler samples
    meta: dict[str, Any] = field(default_factory=dict)  # num_classes, label counts, start time, first step time

    def save(self, directory: Path) -> None:
        import pandas as pd

        directory.mkdir(parents=True, exist_ok=True)
        for name in ("tensors", "steps", "epochs", "system"):
            pd.DataFrame(getattr(self, name)).to_parquet(directory / f"{name}.parquet", index=False)
        import json

        (directory / "meta.json").write_text(json.dumps(self.meta, default=str))

    @classmethod
    def load(cls, directory: Path) -> "DebugData":
        import json

        import pandas as pd

        if not (directory / "meta.json").exists():
            raise UserError(f"no debugger data in {directory}")
        d = cls(meta=json.loads((directory / "meta.json").read_text()))
        for name in ("tensors", "steps", "epochs", "system"):
            p = directory / f"{name}.parquet"
            if p.exists() and p.stat().st_size:
                try:
                    setattr(d, name, pd.read_parquet(p).to_dict("records"))
                except Exception:  # an empty table was written without columns
                    setattr(d, name, [])
        return d


class TensorRecorder(Callback):
    """Records losses every step and, every `interval` steps, per-layer gradient and weight norms and statistics,
    update/weight ratios, activation statistics (zeros, saturation) and predicted-class histograms."""

    def __init__(self, data: DebugData, interval: int = 10):
        if interval < 1:
            raise UserError(f"debugger interval must be a positive number of steps, not {interval}")
        self.data, self.interval = data, interval
        self.sample_next = True
        self._handles: list[Any] = []
        self._before: dict[str, torch.Tensor] = {}
        self._acts: dict[str, dict[str, float]] = {}
        self._logits: torch.Tensor | None = None

    # -- wiring ---------------------------------------------------------------------------------------------
    def on_train_start(self, trainer: Trainer) -> None:
        self.sample_next = True
        model = trainer.model
        self._handles = []
        for name, module in model.named_modules():
            if isinstance(module, ACTIVATIONS):
                self._handles.append(module.register_forward_hook(self._activation_hook(name or "act", module)))
        self._handles.append(model.register_forward_hook(self._output_hook))

    def on_train_end(self, trainer: Trainer) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def _activation_hook(self, name: str, module: nn.Module):
        lo_hi = next((v for k, v in SATURATION.items() if isinstance(module, k)), None)

        def hook(_m: nn.Module, _inp: Any, out: torch.Tensor) -> None:
            if not (self.sample_next and torch.is_grad_enabled() and isinstance(out, torch.Tensor)):
                return
            with torch.no_grad():
                o = out.detach().float()
                stats = {"zero_fraction": float((o == 0).float().mean()), "mean": float(o.mean()),
                         "std": float(o.std()) if o.numel() > 1 else 0.0}
                if lo_hi is not None:
                    lo, hi = lo_hi
                    sat = (o >= hi) if lo is None else ((o <= lo) | (o >= hi))
                    stats["saturated_fraction"] = float(sat.float().mean())
                self._acts[name] = stats

        return hook

    def _output_hook(self, _m: nn.Module, _inp: Any, out: torch.Tensor) -> None:
        if self.sample_next and torch.is_grad_enabled() and isinstance(out, torch.Tensor):
            self._logits = out.detach()

    # -- events ---------------------------------------------------------------------------------------------
    def on_after_backward(self, trainer: Trainer) -> None:
        if not self.sample_next:
            return
        step, epoch, stage = trainer.state.global_step + 1, trainer.global_epoch, trainer.config.stage
        rows = self.data.tensors
        with torch.no_grad():
            for name, p in trainer.model.named_parameters():
                if not p.requires_grad:
                    continue
                w = p.detach().float()
                rows.append(_row(step, epoch, stage, name, "weight_norm", float(w.norm())))
                rows.append(_row(step, epoch, stage, name, "weight_std", float(w.std()) if w.numel() > 1 else 0.0))
                rows.append(_row(step, epoch, stage, name, "weight_nonfinite", float((~torch.isfinite(w)).sum())))
                if p.grad is not None:
                    g = p.grad.detach().float()
                    rows.append(_row(step, epoch, stage, name, "grad_norm", float(g.norm())))
                    rows.append(_row(step, epoch, stage, name, "grad_mean_abs", float(g.abs().mean())))
                    rows.append(_row(step, epoch, stage, name, "grad_nonfinite", float((~torch.isfinite(g)).sum())))
                self._before[name] = w.clone()
            for name, stats in self._acts.items():
                for stat, value in stats.items():
                    rows.append(_row(step, epoch, stage, name, f"activation_{stat}", value))
            if self._logits is not None and self._logits.dim() == 2:
                counts = torch.bincount(self._logits.argmax(1).cpu(), minlength=self._logits.shape[1])
                for c in torch.nonzero(counts).flatten().tolist():
                    rows.append(_row(step, epoch, stage, str(c), "predicted_class_count", float(counts[c])))
        self._acts = {}
        self._logits = None

    def on_step_end(self, trainer: Trainer, step: StepRecord) -> None:
        if self._before:
            with torch.no_grad():
                for name, p in trainer.model.named_parameters():
                    before = self._before.get(name)
                    if before is None:
                        continue
                    denom = float(before.norm())
                    ratio = float((p.detach().float() - before).norm()) / denom if denom > 0 else math.inf
                    self.data.tensors.append(_row(step.step, step.epoch, trainer.config.stage, name,
                                                  "update_ratio", ratio))
            self._before = {}
        self.data.steps.append({"step": step.step, "epoch": step.epoch, "stage": trainer.config.stage,
                                "loss": step.loss, "time": time.time(), "batch_size": step.batch_size,
                                "data_s": step.data_s, "forward_s": step.forward_s, "backward_s": step.backward_s,
                                "optimizer_s": step.optimizer_s})
        self.data.meta.setdefault("first_step_time", time.time() - step.total_s)
        self.sample_next = step.step % self.interval == 0

    def on_epoch_end(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        self.data.epochs.append({**{k: v for k, v in metrics.items() if isinstance(v, (int, float))},
                                 "stage": trainer.config.stage})


def _row(step: int, epoch: int, stage: str, name: str, stat: str, value: float) -> dict[str, Any]:
    return {"step": step, "epoch": epoch, "stage": stage, "name": name, "stat": stat, "value": value}

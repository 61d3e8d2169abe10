"""The debugger's hooks: trainer callbacks that record tensors at an interval, kept in memory and saved as Parquet.

Nothing here decides anything: rules (rules.py) read what was recorded. Tensor statistics are computed only on
sampled steps, so a job pays for the debugger only every `interval` steps; losses, step times, input-image
statistics and the validation confusion are cheap and recorded every step (or epoch).
"""

from __future__ import annotations

import json
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
TABLES = ("tensors", "steps", "epochs", "system", "confusion")


@dataclass
class DebugData:
    """What the debugger recorded: long-format rows, one per (step, tensor, statistic). Steps are the job's, counted
    on across stages (each stage's trainer counts from 1), so a step names one moment of the job."""
    tensors: list[dict[str, Any]] = field(default_factory=list)  # step, epoch, stage, name, stat, value
    steps: list[dict[str, Any]] = field(default_factory=list)  # step, epoch, stage, loss, time, data_s, ...
    epochs: list[dict[str, Any]] = field(default_factory=list)  # per-epoch metrics and start/loop end/end times
    system: list[dict[str, Any]] = field(default_factory=list)  # profiler samples
    confusion: list[dict[str, Any]] = field(default_factory=list)  # epoch, stage, label, predicted, count
    meta: dict[str, Any] = field(default_factory=dict)  # num_classes, label counts, phase times, host

    def save(self, directory: Path) -> None:
        import pandas as pd

        directory.mkdir(parents=True, exist_ok=True)
        for name in TABLES:
            pd.DataFrame(getattr(self, name)).to_parquet(directory / f"{name}.parquet", index=False)
        (directory / "meta.json").write_text(json.dumps(self.meta, default=str))

    @classmethod
    def load(cls, directory: Path) -> "DebugData":
        import pandas as pd

        if not (directory / "meta.json").exists():
            raise UserError(f"no debugger data in {directory}")
        d = cls(meta=json.loads((directory / "meta.json").read_text()))
        for name in TABLES:
            p = directory / f"{name}.parquet"
            if p.exists() and p.stat().st_size:
                try:
                    setattr(d, name, pd.read_parquet(p).to_dict("records"))
                except Exception:  # an empty table was written without columns
                    setattr(d, name, [])
        return d


def layer_names(model: nn.Module) -> dict[str, str]:
    """Module path -> the name a user knows the layer by: wrappers around the network are dropped
    (`model.blocks.5.0.conv_pw` -> `blocks.5.0.conv_pw`), and a lone head inside `Sequential(Dropout, head)`
    is called `classifier`, as timm names it in the whole network (so both stages name it alike)."""
    names: dict[str, str] = {}
    for path, module in model.named_modules():
        parts, kept, node, stripping = path.split(".") if path else [], [], model, True
        for part in parts:
            with_params = [c for c in node.children() if next(c.parameters(), None) is not None]
            node = node._modules[part]
            if stripping and len(with_params) == 1 and (part.isdigit() or part == "model"):
                continue  # a wrapper's only trainable child: the wrapper adds nothing to the name
            stripping = False
            kept.append(part)
        names[path] = ".".join(kept) or ("classifier" if isinstance(module, nn.Linear) else
                                         type(module).__name__.lower())
    return names


def parameter_names(model: nn.Module) -> dict[str, str]:
    layers = layer_names(model)
    out = {}
    for name, _ in model.named_parameters():
        module, _, leaf = name.rpartition(".")
        out[name] = f"{layers.get(module, module)}.{leaf}" if module else leaf
    return out


class TensorRecorder(Callback):
    """Records, every `interval` steps, per-layer gradient and weight norms and statistics, update/weight ratios,
    activation statistics (zeros, saturation) and predicted-class histograms; and, every step, the statistics
    of the input images (CheckInputImages needs hundreds of images, more than the sampled steps see)."""

    def __init__(self, data: DebugData, interval: int = 10):
        if interval < 1:
            raise UserError(f"debugger interval must be a positive number of steps, not {interval}")
        self.data, self.interval = data, interval
        self.sample_next = True
        self._handles: list[Any] = []
        self._before: dict[str, torch.Tensor] = {}
        self._acts: dict[str, dict[str, float]] = {}
        self._logits: torch.Tensor | None = None
        self._inputs: dict[str, float] = {}
        self._names: dict[str, str] = {}
        self._offset = 0

    # -- wiring ---------------------------------------------------------------------------------------------
    def on_train_start(self, trainer: Trainer) -> None:
        self.sample_next = True
        self._offset = _steps_before(self.data)
        model = trainer.model
        self._names = parameter_names(model)
        layers = layer_names(model)
        self._handles = []
        for path, module in model.named_modules():
            if isinstance(module, ACTIVATIONS):
                self._handles.append(module.register_forward_hook(self._activation_hook(layers[path] or "act",
                                                                                        module)))
        self._handles.append(model.register_forward_hook(self._output_hook))
        self._handles.append(model.register_forward_pre_hook(self._input_hook))

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

    def _input_hook(self, _m: nn.Module, args: tuple[Any, ...]) -> None:
        x = args[0] if args else None
        # Images only (N x 3 x H x W): the head stage's features and the feature maps of later stages are not.
        if torch.is_grad_enabled() and isinstance(x, torch.Tensor) and x.dim() == 4 and x.shape[1] == 3:
            with torch.no_grad():
                xf = x.detach().float()
                self._inputs = {"input_mean": float(xf.mean()), "input_std": float(xf.std()),
                                "input_min": float(xf.min()), "input_max": float(xf.max()),
                                "input_images": float(x.shape[0])}

    # -- events ---------------------------------------------------------------------------------------------
    def on_after_backward(self, trainer: Trainer) -> None:
        step, epoch, stage = self._offset + trainer.state.global_step + 1, trainer.global_epoch, trainer.config.stage
        rows = self.data.tensors
        for stat, value in self._inputs.items():
            rows.append(_row(step, epoch, stage, "input", stat, value))
        self._inputs = {}
        if not self.sample_next:
            return
        with torch.no_grad():
            for name, p in trainer.model.named_parameters():
                if not p.requires_grad:
                    continue
                w, shown = p.detach().float(), self._names.get(name, name)
                rows.append(_row(step, epoch, stage, shown, "weight_norm", float(w.norm())))
                if w.numel() > 1:  # a single number has no spread
                    rows.append(_row(step, epoch, stage, shown, "weight_std", float(w.std())))
                rows.append(_row(step, epoch, stage, shown, "weight_zero_fraction", float((w == 0).float().mean())))
                rows.append(_row(step, epoch, stage, shown, "weight_nonfinite", float((~torch.isfinite(w)).sum())))
                if p.grad is not None:
                    g = p.grad.detach().float()
                    rows.append(_row(step, epoch, stage, shown, "grad_norm", float(g.norm())))
                    rows.append(_row(step, epoch, stage, shown, "grad_mean_abs", float(g.abs().mean())))
                    rows.append(_row(step, epoch, stage, shown, "grad_zero_fraction",
                                     float((g == 0).float().mean())))
                    rows.append(_row(step, epoch, stage, shown, "grad_nonfinite", float((~torch.isfinite(g)).sum())))
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
                    change = float((p.detach().float() - before).norm())
                    ratio = change / denom if denom > 0 else (0.0 if change == 0 else math.inf)
                    self.data.tensors.append(_row(self._offset + step.step, step.epoch, trainer.config.stage,
                                                  self._names.get(name, name), "update_ratio", ratio))
            self._before = {}
        self.sample_next = step.step % self.interval == 0


class StepTimer(Callback):
    """Losses and step times every step, and when each stage and epoch started and ended: the profiler report's
    job summary and step statistics, and the rules on time (StepOutlier, StalledTraining), read these."""

    def __init__(self, data: DebugData):
        self.data = data
        self._epoch_start = 0.0
        self._last_step_end: float | None = None
        self._offset = 0

    def on_train_start(self, trainer: Trainer) -> None:
        self._offset = _steps_before(self.data)
        self.data.meta.setdefault("stages", []).append({"stage": trainer.config.stage, "start": time.time()})

    def on_train_end(self, trainer: Trainer) -> None:
        stages = self.data.meta.get("stages") or []
        if stages and stages[-1]["stage"] == trainer.config.stage:
            stages[-1]["end"] = time.time()

    def on_epoch_start(self, trainer: Trainer) -> None:
        self._epoch_start, self._last_step_end = time.time(), None

    def on_step_end(self, trainer: Trainer, step: StepRecord) -> None:
        now = time.time()
        self._last_step_end = now
        self.data.steps.append({"step": self._offset + step.step, "epoch": step.epoch, "stage": trainer.config.stage,
                                "loss": step.loss, "time": now, "batch_size": step.batch_size,
                                "data_s": step.data_s, "forward_s": step.forward_s, "backward_s": step.backward_s,
                                "optimizer_s": step.optimizer_s})
        self.data.meta.setdefault("first_step_time", now - step.total_s)

    def on_epoch_end(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        now = time.time()
        self.data.epochs.append({**{k: v for k, v in metrics.items() if isinstance(v, (int, float))},
                                 "stage": trainer.config.stage, "start_time": self._epoch_start,
                                 "loop_end_time": self._last_step_end or now, "end_time": now})


class ClassRecorder(Callback):
    """What the model saw and predicted per class: the training labels' counts (when the job has not recorded its
    data's own), and every epoch's validation predictions as a confusion of counts per (label, predicted class).

    No extra forward pass: the trainer's `predict` is wrapped for the stage (and unwrapped after it), keeping the
    argmax of the validation predictions the trainer computes and would otherwise throw away."""

    def __init__(self, data: DebugData):
        self.data = data
        self._predicted: list[torch.Tensor] = []
        self._original: Any = None

    def on_train_start(self, trainer: Trainer) -> None:
        labels = getattr(trainer.train_source, "labels", None)
        if labels is not None and not self.data.meta.get("label_counts"):
            counts = torch.bincount(torch.as_tensor(labels).long().flatten())
            self.data.meta["label_counts"] = {str(c): int(n) for c, n in enumerate(counts.tolist())}
        self._original, self._predicted = trainer.predict, []
        original = self._original

        def predict(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
            out = original(model, x)
            if not model.training and isinstance(out, torch.Tensor) and out.dim() == 2:
                self._predicted.append(out.detach().argmax(1).cpu())
            return out

        trainer.predict = predict

    def on_train_end(self, trainer: Trainer) -> None:
        if self._original is not None:
            trainer.predict = self._original
        self._original = None

    def on_epoch_end(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        predicted, self._predicted = self._predicted, []
        labels = getattr(trainer.valid_source, "labels", None)
        if labels is None or not predicted:
            return
        pred = torch.cat(predicted)
        truth = torch.as_tensor(labels).long().flatten()
        if len(pred) != len(truth):  # predictions of something other than one validation pass: not a confusion
            return
        n = int(max(int(pred.max()), int(truth.max()))) + 1
        counts = torch.bincount(truth * n + pred, minlength=n * n).view(n, n)
        for t, p in torch.nonzero(counts).tolist():
            self.data.confusion.append({"epoch": trainer.global_epoch, "stage": trainer.config.stage,
                                        "label": t, "predicted": p, "count": int(counts[t, p])})


def _steps_before(data: DebugData) -> int:
    """The job's steps before this stage: its trainer counts from 1 again."""
    return int(data.steps[-1]["step"]) if data.steps else 0


def _row(step: int, epoch: int, stage: str, name: str, stat: str, value: float) -> dict[str, Any]:
    return {"step": step, "epoch": epoch, "stage": stage, "name": name, "stat": stat, "value": value}

"""Rules, after smdebug's: each reads the recorded data, returns a verdict and fills its report.

A rule never acts. Stopping the job is an action configured beside the rule (`action=stop`), carried out by the
RuleRunner callback (monitor.py).
"""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict
from dataclasses import dataclass, field
from statistics import mean, pstdev
from typing import Any, ClassVar

from dogbreed.config import UserError
from dogbreed.debug.hooks import DebugData

NO_ISSUES, ISSUES, ERROR, NOT_JUDGED = "NoIssuesFound", "IssuesFound", "Error", "NotJudged"


class CannotJudge(Exception):
    """Raised by a rule whose situation cannot arise on this machine (no GPU): its verdict is NotJudged, never
    NoIssuesFound, so a user does not read a rule that never looked as a clean bill."""


@dataclass
class RuleResult:
    rule: str
    status: str
    violations: int = 0
    details: str = ""
    datapoints: int = 0
    parameters: dict[str, Any] = field(default_factory=dict)
    recommendation: str = ""
    kind: str = "debugger"

    @property
    def triggered(self) -> bool:
        return self.status == ISSUES

    def to_report(self) -> dict[str, Any]:
        """The JSON SageMaker writes per rule."""
        return {"RuleName": self.rule, "RuleTriggered": self.triggered, "Status": self.status,
                "Violations": self.violations, "Details": self.details, "Datapoints": self.datapoints,
                "RuleParameters": self.parameters, "Recommendation": self.recommendation, "Kind": self.kind}


@dataclass
class Rule:
    """Base: subclasses set `name`, `recommendation` and implement `check`."""
    name: ClassVar[str] = ""
    kind: ClassVar[str] = "debugger"
    recommendation: ClassVar[str] = ""

    def evaluate(self, data: DebugData) -> RuleResult:
        params = dataclasses.asdict(self)
        try:
            violations, datapoints, details = self.check(data)
        except CannotJudge as e:
            return RuleResult(self.name, NOT_JUDGED, details=str(e), parameters=params, kind=self.kind)
        except Exception as e:  # a broken rule is a verdict of its own, not a crashed job
            return RuleResult(self.name, ERROR, details=f"{type(e).__name__}: {e}", parameters=params,
                              kind=self.kind)
        status = ISSUES if violations else NO_ISSUES
        return RuleResult(self.name, status, violations, details, datapoints, params,
                          self.recommendation if violations else "", self.kind)

    def check(self, data: DebugData) -> tuple[int, int, str]:
        raise NotImplementedError


def _stat(data: DebugData, stat: str) -> list[dict[str, Any]]:
    return [r for r in data.tensors if r["stat"] == stat]


def _layers_over(data: DebugData, stat: str, threshold: float) -> tuple[dict[str, float], list[str]]:
    """Per-layer values of `stat` at the last step that recorded it, and the layers at or over `threshold`."""
    rows = _stat(data, stat)
    last_step = max((r["step"] for r in rows), default=None)
    layers = {r["name"]: r["value"] for r in rows if r["step"] == last_step}
    return layers, sorted(n for n, v in layers.items() if v >= threshold)


# -- debugger rules ------------------------------------------------------------------------------------------


@dataclass
class VanishingGradient(Rule):
    name: ClassVar[str] = "VanishingGradient"
    recommendation: ClassVar[str] = ("Gradients have all but vanished: raise the learning rate, use an optimizer "
                                     "with adaptive steps (adam), check the loss is connected to the parameters.")
    threshold: float = 1e-7
    min_fraction_of_steps: float = 0.5

    def check(self, data: DebugData) -> tuple[int, int, str]:
        by_step: dict[int, list[float]] = defaultdict(list)
        for r in _stat(data, "grad_mean_abs"):
            by_step[r["step"]].append(r["value"])
        vanished = [s for s, vals in by_step.items() if max(vals) < self.threshold]
        bad = len(by_step) and len(vanished) / len(by_step) >= self.min_fraction_of_steps
        return (len(vanished) if bad else 0, len(by_step),
                f"{len(vanished)} of {len(by_step)} recorded steps had every layer's mean |gradient| below "
                f"{self.threshold:g}")


@dataclass
class ExplodingTensor(Rule):
    """NaN or Inf in the loss, weights or gradients, as smdebug's rule; and, since float32 rarely overflows within a
    short run, a loss or gradient norm grown `max_growth`-fold over its first recorded value (0 turns that off)."""
    name: ClassVar[str] = "ExplodingTensor"
    recommendation: ClassVar[str] = ("Values exploded (NaN, Inf, or a loss/gradients grown by orders of magnitude): "
                                     "lower the learning rate, clip gradients, or train in float32.")
    only_nan: bool = False
    max_growth: float = 100.0

    def check(self, data: DebugData) -> tuple[int, int, str]:
        bad_loss = [s["step"] for s in data.steps if
                    (math.isnan(s["loss"]) if self.only_nan else not math.isfinite(s["loss"]))]
        bad_tensors = [r for r in data.tensors if r["stat"] in ("grad_nonfinite", "weight_nonfinite") and r["value"]]
        notes = [f"non-finite loss at {len(bad_loss)} step(s), non-finite weights or gradients in "
                 f"{len(bad_tensors)} record(s)"]
        grown = 0
        if self.max_growth:
            losses = [s["loss"] for s in data.steps if math.isfinite(s["loss"])]
            if losses and losses[0] > 0 and max(losses) > self.max_growth * losses[0]:
                grown += 1
                notes.append(f"loss grew from {losses[0]:.3g} to {max(losses):.3g}")
            first: dict[str, float] = {}
            worst = (1.0, "")
            for r in _stat(data, "grad_norm"):
                f = first.setdefault(r["name"], r["value"])
                if f > 0 and math.isfinite(r["value"]) and r["value"] / f > worst[0]:
                    worst = (r["value"] / f, r["name"])
            if worst[0] > self.max_growth:
                grown += 1
                notes.append(f"gradient norm of {worst[1]} grew {worst[0]:.0f}-fold")
        n = len(bad_loss) + len(bad_tensors) + grown
        return n, len(data.steps) + len(data.tensors), "; ".join(notes)


@dataclass
class LossNotDecreasing(Rule):
    """Judges each stage apart (head training and fine-tuning optimise different losses) on the loss the optimiser
    sees, comparing the mean of its first and last `window_fraction` of steps (at least `window` steps each).

    The head's loss has a floor (label smoothing, the anchor term), so a sound stage can fall by only a few percent:
    a stage passes when its loss fell by `min_delta_percentage`, or fell by more than `min_t` standard errors of the
    step-to-step noise (a real decrease, however small against the floor)."""
    name: ClassVar[str] = "LossNotDecreasing"
    recommendation: ClassVar[str] = ("The training loss is not going down: check the learning rate is above zero "
                                     "and not too small, that labels match images, and that layers are trainable.")
    window: int = 5
    window_fraction: float = 0.25
    min_delta_percentage: float = 2.0
    min_t: float = 3.0
    min_steps: int = 10

    def check(self, data: DebugData) -> tuple[int, int, str]:
        by_stage: dict[str, list[float]] = defaultdict(list)
        for s in data.steps:
            if math.isfinite(s["loss"]):
                by_stage[s.get("stage") or "train"].append(s["loss"])
        notes, violations, judged = [], 0, 0
        for stage, losses in by_stage.items():
            w = max(self.window, int(len(losses) * self.window_fraction))
            if len(losses) < max(self.min_steps, 2 * w):
                notes.append(f"stage {stage}: only {len(losses)} steps, too few to judge")
                continue
            judged += len(losses)
            head, tail = losses[:w], losses[-w:]
            first, last = mean(head), mean(tail)
            drop = (first - last) / abs(first) * 100 if first else 0.0
            se = math.sqrt((pstdev(head) ** 2 + pstdev(tail) ** 2) / w)
            t = (first - last) / se if se > 0 else (math.inf if first > last else 0.0)
            bad = drop < self.min_delta_percentage and t < self.min_t
            violations += bad
            notes.append(f"stage {stage}{' NOT DECREASING' if bad else ''}: mean loss of its first {w} steps "
                         f"{first:.4f}, of its last {w} {last:.4f}, {drop:.1f}% lower (needs "
                         f"{self.min_delta_percentage}%) and {t:.1f} standard errors (needs {self.min_t})")
        return violations, judged, "; ".join(notes) or "no steps recorded"


def _epoch_losses(data: DebugData) -> list[tuple[int, float, float]]:
    return [(int(e["epoch"]), e["train:loss"], e["validation:loss"]) for e in data.epochs
            if "train:loss" in e and "validation:loss" in e]


@dataclass
class Overfit(Rule):
    name: ClassVar[str] = "Overfit"
    recommendation: ClassVar[str] = ("Validation loss is far above training loss and the gap keeps growing: add data "
                                     "or augmentation (augmentation_type=crop_color), label smoothing, weight decay, "
                                     "or stop earlier (early_stopping=true).")
    ratio_threshold: float = 1.0
    patience: int = 3
    start_epoch: int = 2

    def check(self, data: DebugData) -> tuple[int, int, str]:
        rows = [r for r in _epoch_losses(data) if r[0] >= self.start_epoch]
        run, worst, violations = 0, 0.0, 0
        prev_gap = None
        for _, train, val in rows:
            gap = (val - train) / max(train, 1e-12)
            growing = prev_gap is None or gap >= prev_gap
            run = run + 1 if gap > self.ratio_threshold and growing else 0
            if run >= self.patience:
                violations += 1
            worst, prev_gap = max(worst, gap), gap
        return (violations, len(rows),
                f"largest (validation - training) / training loss ratio {worst:.2f} (threshold "
                f"{self.ratio_threshold}, for {self.patience} epochs in a row while growing)")


@dataclass
class Overtraining(Rule):
    name: ClassVar[str] = "Overtraining"
    recommendation: ClassVar[str] = ("Validation loss has risen well above its best while training loss still falls: "
                                     "fewer epochs or early_stopping=true would give a better model sooner.")
    patience: int = 5
    min_rise: float = 0.05  # absolute rise of validation loss above its best that counts
    min_rise_fraction: float = 0.25  # and relative rise

    def check(self, data: DebugData) -> tuple[int, int, str]:
        rows = _epoch_losses(data)
        best, best_at, violations, worst = math.inf, None, 0, 0.0
        for i, (_, train, val) in enumerate(rows):
            if val < best:
                best, best_at = val, i
                continue
            rise = val - best
            worst = max(worst, rise)
            risen = rise > self.min_rise and rise > self.min_rise_fraction * best
            if risen and i - best_at >= self.patience and train < rows[best_at][1]:
                violations += 1
        return (violations, len(rows),
                f"best validation loss {best:.4f} at epoch {rows[best_at][0] if best_at is not None else '-'}, "
                f"largest rise above it {worst:.4f}; {violations} epoch(s) at least {self.patience} past the best, "
                f"risen by over {self.min_rise} and {self.min_rise_fraction:.0%}, with training loss still lower")


@dataclass
class PoorWeightInitialization(Rule):
    name: ClassVar[str] = "PoorWeightInitialization"
    recommendation: ClassVar[str] = ("The network started badly: an initial loss far above chance level, or "
                                     "activations whose scale differs wildly between layers. Use pretrained "
                                     "weights or a standard initialisation (He/Xavier).")
    loss_factor: float = 3.0
    activation_std_ratio: float = 1000.0

    def check(self, data: DebugData) -> tuple[int, int, str]:
        n_classes = int(data.meta.get("num_classes") or 0)
        first_stage = data.steps[0]["stage"] if data.steps else None
        losses = [s["loss"] for s in data.steps if s["stage"] == first_stage][:1]  # before any update
        violations, notes = 0, []
        if losses and n_classes > 1:
            chance = math.log(n_classes)
            initial = mean(losses) if all(math.isfinite(v) for v in losses) else math.inf
            if initial > self.loss_factor * chance:
                violations += 1
            notes.append(f"initial loss {initial:.3f} vs chance level ln({n_classes}) = {chance:.3f}")
        first_step = min((r["step"] for r in _stat(data, "activation_std")), default=None)
        stds = [r["value"] for r in _stat(data, "activation_std") if r["step"] == first_step]
        if len(stds) >= 2:
            lo, hi = min(stds), max(stds)
            ratio = hi / lo if lo > 0 else math.inf
            if ratio > self.activation_std_ratio:
                violations += 1
            notes.append(f"activation std spread across layers {ratio:.3g}")
        return violations, len(losses) + len(stds), "; ".join(notes) or "no data from the first steps"


@dataclass
class DeadRelu(Rule):
    name: ClassVar[str] = "DeadRelu"
    recommendation: ClassVar[str] = ("Many ReLU units output only zeros: lower the learning rate, check the "
                                     "initialisation, or use LeakyReLU/SiLU.")
    threshold: float = 0.95  # zero fraction that makes a layer dead
    max_dead_layer_fraction: float = 0.25

    def check(self, data: DebugData) -> tuple[int, int, str]:
        layers, dead = _layers_over(data, "activation_zero_fraction", self.threshold)
        bad = layers and len(dead) / len(layers) > self.max_dead_layer_fraction
        return (len(dead) if bad else 0, len(layers),
                f"{len(dead)} of {len(layers)} activation layers output zeros for >= {self.threshold:.0%} of units"
                + (f" ({', '.join(dead[:5])})" if dead else "") if layers else "no activation layers recorded")


@dataclass
class SaturatedActivation(Rule):
    name: ClassVar[str] = "SaturatedActivation"
    recommendation: ClassVar[str] = ("tanh/sigmoid/ReLU6 units sit at their limits, where gradients vanish: lower "
                                     "the learning rate or normalise inputs.")
    threshold: float = 0.5
    max_saturated_layer_fraction: float = 0.25

    def check(self, data: DebugData) -> tuple[int, int, str]:
        layers, sat = _layers_over(data, "activation_saturated_fraction", self.threshold)
        bad = layers and len(sat) / len(layers) > self.max_saturated_layer_fraction
        return (len(sat) if bad else 0, len(layers),
                f"{len(sat)} of {len(layers)} saturating layers have >= {self.threshold:.0%} of units at a limit"
                if layers else "no saturating activation layers recorded")


@dataclass
class WeightUpdateRatio(Rule):
    name: ClassVar[str] = "WeightUpdateRatio"
    recommendation: ClassVar[str] = ("Updates are far too large (or zero) relative to the weights: adjust the "
                                     "learning rate; about 1e-3 per step is typical.")
    large_threshold: float = 10.0
    small_threshold: float = 1e-8
    min_step: int = 2

    def check(self, data: DebugData) -> tuple[int, int, str]:
        rows = [r for r in _stat(data, "update_ratio") if r["step"] >= self.min_step]
        large = [r for r in rows if r["value"] > self.large_threshold]
        small = [r for r in rows if r["value"] < self.small_threshold]
        return (len(large) + len(small), len(rows),
                f"{len(large)} update/weight ratio(s) above {self.large_threshold:g}, {len(small)} below "
                f"{self.small_threshold:g}")


@dataclass
class ClassImbalance(Rule):
    name: ClassVar[str] = "ClassImbalance"
    recommendation: ClassVar[str] = ("Some classes have far more training images than others, or the model predicts "
                                     "one class for almost everything: collect more images of the rare classes, or "
                                     "reweight the loss.")
    threshold_imbalance: float = 10.0
    max_single_class_prediction_fraction: float = 0.9

    def check(self, data: DebugData) -> tuple[int, int, str]:
        counts = [c for c in (data.meta.get("label_counts") or {}).values() if c]
        notes, violations = [], 0
        if counts:
            ratio = max(counts) / min(counts)
            notes.append(f"largest/smallest class {ratio:.1f}x")
            violations += ratio > self.threshold_imbalance
        preds: dict[int, dict[str, float]] = defaultdict(dict)
        for r in _stat(data, "predicted_class_count"):
            preds[r["step"]][r["name"]] = r["value"]
        if preds and len(counts) > 1:
            last = preds[max(preds)]
            frac = max(last.values()) / sum(last.values())
            notes.append(f"most predicted class takes {frac:.0%} of the last recorded batch")
            violations += frac > self.max_single_class_prediction_fraction and len(last) == 1 and sum(last.values()) > 8
        return int(violations), len(counts) + len(preds), "; ".join(notes) or "no label counts recorded"


@dataclass
class StalledTraining(Rule):
    name: ClassVar[str] = "StalledTraining"
    recommendation: ClassVar[str] = "No step finished for a long time: look for a hung data loader or a deadlock."
    threshold_seconds: float = 1800.0

    def check(self, data: DebugData) -> tuple[int, int, str]:
        times = [s["time"] for s in data.steps]
        gaps = [b - a for a, b in zip(times, times[1:])]
        worst = max(gaps, default=0.0)
        return (sum(g > self.threshold_seconds for g in gaps), len(times),
                f"longest time between two steps {worst:.1f} s (threshold {self.threshold_seconds:g} s)")


# -- profiler rules ----------------------------------------------------------------------------------------------


def _has_gpu(data: DebugData) -> bool:
    return any("gpu_memory_mb" in s for s in data.system)


@dataclass
class CPUBottleneck(Rule):
    name: ClassVar[str] = "CPUBottleneck"
    kind: ClassVar[str] = "profiler"
    recommendation: ClassVar[str] = ("The CPU is saturated: on a GPU machine the GPU waits for it; use more "
                                     "num_workers or decode once (the cache); on a CPU-only machine, a smaller "
                                     "backbone or train_mode=head trains faster.")
    cpu_threshold: float = 90.0
    gpu_threshold: float = 10.0
    threshold_fraction: float = 0.5

    def check(self, data: DebugData) -> tuple[int, int, str]:
        if not data.system:
            return 0, 0, "no system samples"
        busy = [s for s in data.system if s["cpu_percent"] >= self.cpu_threshold]
        if _has_gpu(data):
            busy = [s for s in busy if s.get("gpu_percent", 0) < self.gpu_threshold]
        frac = len(busy) / len(data.system)
        if not _has_gpu(data):
            # The rule asks whether a GPU waits for the CPU; a busy CPU without a GPU is the job doing its work.
            raise CannotJudge(f"not judged: no GPU to wait for the CPU (CPU at or over {self.cpu_threshold:g}% in "
                              f"{frac:.0%} of samples)")
        return (len(busy) if frac >= self.threshold_fraction else 0, len(data.system),
                f"CPU busy while the GPU idled in {frac:.0%} of samples")


@dataclass
class IOBottleneck(Rule):
    name: ClassVar[str] = "IOBottleneck"
    kind: ClassVar[str] = "profiler"
    recommendation: ClassVar[str] = ("Steps wait for data: raise num_workers, keep the decode cache on a fast disk, "
                                     "or use train_mode=head, which reads cached features.")
    threshold: float = 0.2  # share of step time waiting for data

    def check(self, data: DebugData) -> tuple[int, int, str]:
        rows = [s for s in data.steps if s["stage"] != "head"]
        if not rows:
            return 0, 0, "no image-training steps: a head-only job reads cached features, not images"
        total = sum(s["data_s"] + s["forward_s"] + s["backward_s"] + s["optimizer_s"] for s in rows)
        wait = sum(s["data_s"] for s in rows)
        share = wait / total if total else 0.0
        return (1 if share > self.threshold else 0, len(rows),
                f"{share:.1%} of step time spent waiting for data (threshold {self.threshold:.0%})")


@dataclass
class StepOutlier(Rule):
    name: ClassVar[str] = "StepOutlier"
    kind: ClassVar[str] = "profiler"
    recommendation: ClassVar[str] = ("Some steps took far longer than the rest: look at the system usage at those "
                                     "times (another process, swapping, a slow disk).")
    stddev: float = 3.0
    min_outlier_fraction: float = 0.05
    min_steps: int = 20
    min_seconds: float = 0.05  # millisecond jitter of tiny steps is not an outlier

    def check(self, data: DebugData) -> tuple[int, int, str]:
        by_stage: dict[str, list[float]] = defaultdict(list)
        for s in data.steps:
            by_stage[s["stage"]].append(s["data_s"] + s["forward_s"] + s["backward_s"] + s["optimizer_s"])
        outliers, n, notes = 0, 0, []
        for stage, times in by_stage.items():
            if len(times) < self.min_steps:
                continue
            times = times[1:]  # the first step warms caches up
            mu, sd = mean(times), pstdev(times)
            out = [t for t in times if sd > 0 and t > mu + self.stddev * sd and t > self.min_seconds]
            n += len(times)
            notes.append(f"{stage}: {len(out)} of {len(times)} steps above mean {mu * 1000:.1f} ms + "
                         f"{self.stddev} std")
            if len(out) / len(times) > self.min_outlier_fraction:
                outliers += len(out)
        return outliers, n, "; ".join(notes) or "too few steps to judge"


@dataclass
class LowGPUUtilization(Rule):
    name: ClassVar[str] = "LowGPUUtilization"
    kind: ClassVar[str] = "profiler"
    recommendation: ClassVar[str] = "The GPU is mostly idle: raise mini_batch_size or num_workers."
    threshold: float = 30.0
    threshold_fraction: float = 0.7

    def check(self, data: DebugData) -> tuple[int, int, str]:
        util = [s["gpu_percent"] for s in data.system if "gpu_percent" in s]
        if not util:
            raise CannotJudge("not judged: no GPU utilisation samples (no GPU on this machine, or pynvml missing)")
        low = sum(u < self.threshold for u in util)
        return (low if low / len(util) >= self.threshold_fraction else 0, len(util),
                f"GPU below {self.threshold:g}% in {low} of {len(util)} samples")


@dataclass
class BatchSize(Rule):
    name: ClassVar[str] = "BatchSize"
    kind: ClassVar[str] = "profiler"
    recommendation: ClassVar[str] = "The device is underused: a larger mini_batch_size would train faster."
    gpu_memory_fraction: float = 0.2
    gpu_util_threshold: float = 50.0

    def check(self, data: DebugData) -> tuple[int, int, str]:
        rows = [s for s in data.system if "gpu_memory_mb" in s]
        if not rows:
            raise CannotJudge("not judged: no GPU on this machine (batch size is judged on GPU memory and use)")
        import torch

        total = torch.cuda.get_device_properties(0).total_memory / 2**20 if torch.cuda.is_available() else 0
        peak = max(s["gpu_memory_mb"] for s in rows)
        util = mean(s.get("gpu_percent", 100.0) for s in rows)
        bad = total and peak / total < self.gpu_memory_fraction and util < self.gpu_util_threshold
        return (1 if bad else 0, len(rows), f"peak GPU memory {peak:.0f} MB of {total:.0f} MB, mean utilisation "
                                            f"{util:.0f}%")


@dataclass
class MaxInitializationTime(Rule):
    name: ClassVar[str] = "MaxInitializationTime"
    kind: ClassVar[str] = "profiler"
    recommendation: ClassVar[str] = ("The job took long to reach its first step: the first run decodes and caches the "
                                     "data and computes features; later runs on the same data start at once.")
    threshold_minutes: float = 20.0

    def check(self, data: DebugData) -> tuple[int, int, str]:
        start, first = data.meta.get("job_start"), data.meta.get("first_step_time")
        if not (start and first):
            return 0, 0, "no step recorded"
        minutes = (first - start) / 60
        return (1 if minutes > self.threshold_minutes else 0, 1,
                f"first step {minutes:.2f} min after the job started (threshold {self.threshold_minutes:g} min)")


@dataclass
class GPUMemoryIncrease(Rule):
    name: ClassVar[str] = "GPUMemoryIncrease"
    kind: ClassVar[str] = "profiler"
    recommendation: ClassVar[str] = ("GPU memory keeps growing: something holds on to tensors (e.g. a loss kept "
                                     "with its graph).")
    increase_percent: float = 20.0

    def check(self, data: DebugData) -> tuple[int, int, str]:
        mem = [s["gpu_memory_mb"] for s in data.system if "gpu_memory_mb" in s]
        if not mem:
            raise CannotJudge("not judged: no GPU on this machine (no GPU memory samples)")
        if len(mem) < 4:
            return 0, len(mem), "too few GPU memory samples"
        q = len(mem) // 4
        early, late = mean(mem[:q]), mean(mem[-q:])
        growth = (late - early) / early * 100 if early else 0.0
        return (1 if growth > self.increase_percent else 0, len(mem),
                f"GPU memory {early:.0f} MB early, {late:.0f} MB late ({growth:.0f}% growth)")


RULES: dict[str, type[Rule]] = {r.name: r for r in (
    VanishingGradient, ExplodingTensor, LossNotDecreasing, Overfit, Overtraining, PoorWeightInitialization,
    DeadRelu, SaturatedActivation, WeightUpdateRatio, ClassImbalance, StalledTraining,
    CPUBottleneck, IOBottleneck, StepOutlier, LowGPUUtilization, BatchSize, MaxInitializationTime,
    GPUMemoryIncrease)}
TENSOR_RULES = tuple(n for n, r in RULES.items() if r.kind == "debugger")


@dataclass(frozen=True)
class RuleConfig:
    rule: Rule
    stop_on_trigger: bool = False


def parse_rule(spec: str) -> RuleConfig:
    """`Name` or `Name:param=value,param=value,action=stop`."""
    name, _, rest = spec.partition(":")
    name = name.strip()
    if name not in RULES:
        raise UserError(f"unknown rule {name!r} (known: {', '.join(RULES)})")
    cls = RULES[name]
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    stop = False
    for item in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, raw = item.partition("=")
        if not eq:
            raise UserError(f"rule parameter {item!r} of {name} must look like name=value")
        if key == "action":
            if raw not in ("stop", "none"):
                raise UserError(f"rule action must be stop or none, not {raw!r}")
            stop = raw == "stop"
            continue
        if key not in fields:
            raise UserError(f"unknown parameter {key!r} of rule {name} (known: {', '.join(fields) or 'none'})")
        default = fields[key].default
        try:
            values[key] = (raw.lower() in ("1", "true", "yes")) if isinstance(default, bool) else type(default)(raw)
        except ValueError:
            raise UserError(f"rule parameter {key}={raw!r} of {name} is not a valid {type(default).__name__}") from None
    return RuleConfig(cls(**values), stop)


def default_rules() -> list[RuleConfig]:
    return [RuleConfig(cls()) for cls in RULES.values()]


def evaluate_all(configs: list[RuleConfig], data: DebugData) -> list[RuleResult]:
    return [c.rule.evaluate(data) for c in configs]

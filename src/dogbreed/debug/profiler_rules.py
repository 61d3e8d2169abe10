"""Profiler rules: what the step times and system samples (CPU, GPU, memory) say about the job's use of the
machine (smdebug's profiler rules)."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from statistics import mean, pstdev
from typing import Any, ClassVar

from dogbreed.debug.hooks import DebugData
from dogbreed.debug.rule_base import CannotJudge, Finding, Rule


def _step_s(s: dict[str, Any]) -> float:
    return s["data_s"] + s["forward_s"] + s["backward_s"] + s["optimizer_s"]


def _steps_by_stage(data: DebugData) -> dict[str, list[dict[str, Any]]]:
    by_stage: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for s in data.steps:
        by_stage[s.get("stage") or "train"].append(s)
    return by_stage


def _steps_at(data: DebugData, samples: list[dict[str, Any]]) -> tuple[int, ...]:
    """The steps that ended nearest the times of these system samples."""
    if not data.steps:
        return ()
    times = [(s["time"], s["step"]) for s in data.steps]
    return tuple(min(times, key=lambda t: abs(t[0] - x["time"]))[1] for x in samples)


def _has_gpu(data: DebugData) -> bool:
    return any("gpu_memory_mb" in s for s in data.system)


# Stages that train on cached features (the head; the `best` preset's last block, on cached view features): they
# read no image, and leave the GPU little to do, by design.
FEATURE_STAGES = ("head", "last_block")


def _stage_samples(data: DebugData, skip: tuple[str, ...] = ()) -> dict[str, list[dict[str, Any]]]:
    """System samples taken while each training stage ran (all samples under one name for data recorded before
    stages were timed), leaving out the stages in `skip`."""
    stages = [s for s in data.meta.get("stages") or [] if "end" in s]
    if not stages:
        return {"job": list(data.system)}
    out: dict[str, list[dict[str, Any]]] = {}
    for st in stages:
        if st["stage"] not in skip:
            out.setdefault(st["stage"], []).extend(x for x in data.system if st["start"] <= x["time"] <= st["end"])
    return out


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

    def check(self, data: DebugData) -> Finding:
        if not data.system:
            return Finding(0, 0, "no system samples")
        busy = [s for s in data.system if s["cpu_percent"] >= self.cpu_threshold]
        if _has_gpu(data):
            busy = [s for s in busy if s.get("gpu_percent", 0) < self.gpu_threshold]
        frac = len(busy) / len(data.system)
        unknown = _has_gpu(data) and not any("gpu_percent" in s for s in data.system)
        if not _has_gpu(data):
            # The rule asks whether a GPU waits for the CPU; a busy CPU without a GPU is the job doing its work.
            raise CannotJudge(f"not judged: no GPU to wait for the CPU (CPU at or over {self.cpu_threshold:g}% in "
                              f"{frac:.0%} of samples)")
        return Finding(len(busy) if frac >= self.threshold_fraction else 0, len(data.system),
                       f"CPU busy while the GPU idled in {frac:.0%} of samples"
                       + (" (GPU utilisation unknown without pynvml: taken as idle)" if unknown else ""),
                       _steps_at(data, busy))


@dataclass
class IOBottleneck(Rule):
    name: ClassVar[str] = "IOBottleneck"
    kind: ClassVar[str] = "profiler"
    recommendation: ClassVar[str] = ("Steps wait for data: raise num_workers, keep the decode cache on a fast disk, "
                                     "or use train_mode=head, which reads cached features.")
    threshold: float = 0.2  # share of step time waiting for data
    min_wait_ms: float = 5.0  # mean wait per step below which it is the loader thread's hand-over, not slow data

    def check(self, data: DebugData) -> Finding:
        rows = [s for s in data.steps if s["stage"] not in FEATURE_STAGES]
        if not rows:
            return Finding(0, 0, "no image-training steps: a head-only job reads cached features, not images")
        total = sum(_step_s(s) for s in rows)
        wait = sum(s["data_s"] for s in rows)
        share = wait / total if total else 0.0
        mean_ms = wait / len(rows) * 1000
        bad = share > self.threshold and mean_ms >= self.min_wait_ms
        waiting = [s["step"] for s in rows if s["data_s"] > 0.5 * _step_s(s)]
        return Finding(1 if bad else 0, len(rows),
                       f"{share:.1%} of step time spent waiting for data (threshold {self.threshold:.0%}), "
                       f"{mean_ms:.1f} ms per step (at least {self.min_wait_ms:g} ms counts); {len(waiting)} of "
                       f"{len(rows)} steps waited more than they computed", tuple(waiting) if bad else ())


@dataclass
class StepOutlier(Rule):
    name: ClassVar[str] = "StepOutlier"
    kind: ClassVar[str] = "profiler"
    recommendation: ClassVar[str] = ("Some steps took far longer than the rest: look at the system usage at those "
                                     "times (another process, swapping, a slow disk).")
    stddev: float = 3.0
    min_outlier_fraction: float = 0.05
    min_outliers: int = 2  # one slow step in a short stage is the machine's noise, not a pattern
    min_steps: int = 20
    min_seconds: float = 0.05  # millisecond jitter of tiny steps is not an outlier

    def check(self, data: DebugData) -> Finding:
        outliers, n, notes, where = 0, 0, [], []
        for stage, rows in _steps_by_stage(data).items():
            if len(rows) < self.min_steps:
                continue
            rows = rows[1:]  # the first step warms caches up
            times = [_step_s(s) for s in rows]
            limit = self.limit(times)
            out = [s for s in rows if _step_s(s) > limit]
            n += len(times)
            notes.append(f"{stage}: {len(out)} of {len(times)} steps above mean {mean(times) * 1000:.1f} ms + "
                         f"{self.stddev} std" + (f" (steps {', '.join(str(s['step']) for s in out[:10])})"
                                                  if out else ""))
            if len(out) >= self.min_outliers and len(out) / len(times) > self.min_outlier_fraction:
                outliers += len(out)
                where += [s["step"] for s in out]
        return Finding(outliers, n, "; ".join(notes) or "too few steps to judge", tuple(where))

    def limit(self, times: list[float]) -> float:
        """The step time above which a step is an outlier (the report marks it on the histogram)."""
        mu, sd = mean(times), pstdev(times)
        return max(mu + self.stddev * sd, self.min_seconds) if sd > 0 else math.inf


@dataclass
class LowGPUUtilization(Rule):
    name: ClassVar[str] = "LowGPUUtilization"
    kind: ClassVar[str] = "profiler"
    recommendation: ClassVar[str] = "The GPU is mostly idle: raise mini_batch_size or num_workers."
    threshold: float = 30.0
    threshold_fraction: float = 0.7

    def check(self, data: DebugData) -> Finding:
        if not any("gpu_percent" in s for s in data.system):
            raise CannotJudge("not judged: no GPU utilisation samples (no GPU on this machine, or pynvml missing)")
        samples = [x for rows in _stage_samples(data, FEATURE_STAGES).values() for x in rows if "gpu_percent" in x]
        if not samples:
            return Finding(0, 0, "no image-training stage: the head trains on cached features, a light load by design")
        low = [x for x in samples if x["gpu_percent"] < self.threshold]
        bad = len(low) / len(samples) >= self.threshold_fraction
        return Finding(len(low) if bad else 0, len(samples),
                       f"GPU below {self.threshold:g}% in {len(low)} of {len(samples)} samples of image-training "
                       f"stages", _steps_at(data, low) if bad else ())


@dataclass
class BatchSize(Rule):
    name: ClassVar[str] = "BatchSize"
    kind: ClassVar[str] = "profiler"
    recommendation: ClassVar[str] = "The device is underused: a larger mini_batch_size would train faster."
    gpu_memory_fraction: float = 0.2
    gpu_util_threshold: float = 50.0

    def check(self, data: DebugData) -> Finding:
        if not _has_gpu(data):
            raise CannotJudge("not judged: no GPU on this machine (batch size is judged on GPU memory and use)")
        if not any("gpu_percent" in s for s in data.system):
            raise CannotJudge("not judged: GPU utilisation unknown (pynvml missing); low memory alone does not say "
                              "the GPU is underused")
        rows = [x for st in _stage_samples(data, FEATURE_STAGES).values() for x in st if "gpu_memory_mb" in x]
        if not rows:
            return Finding(0, 0, "no image-training stage: the head's batch size does not govern the GPU's load")
        import torch

        total = torch.cuda.get_device_properties(0).total_memory / 2**20 if torch.cuda.is_available() else 0
        peak = max(s["gpu_memory_mb"] for s in rows)
        util = mean(s.get("gpu_percent", 0.0) for s in rows)
        bad = total and peak / total < self.gpu_memory_fraction and util < self.gpu_util_threshold
        return Finding(1 if bad else 0, len(rows), f"peak GPU memory {peak:.0f} MB of {total:.0f} MB, mean "
                                                   f"utilisation {util:.0f}% in image-training stages")


@dataclass
class MaxInitializationTime(Rule):
    name: ClassVar[str] = "MaxInitializationTime"
    kind: ClassVar[str] = "profiler"
    recommendation: ClassVar[str] = ("The job took long to reach its first step: the first run decodes and caches the "
                                     "data and computes features; later runs on the same data start at once.")
    threshold_minutes: float = 20.0

    def check(self, data: DebugData) -> Finding:
        start, first = data.meta.get("job_start"), data.meta.get("first_step_time")
        if not (start and first):
            return Finding(0, 0, "no step recorded")
        minutes = (first - start) / 60
        return Finding(1 if minutes > self.threshold_minutes else 0, 1,
                       f"first step {minutes:.2f} min after the job started (threshold {self.threshold_minutes:g} "
                       f"min)", (data.steps[0]["step"],) if data.steps else ())


@dataclass
class GPUMemoryIncrease(Rule):
    name: ClassVar[str] = "GPUMemoryIncrease"
    kind: ClassVar[str] = "profiler"
    recommendation: ClassVar[str] = ("GPU memory keeps growing: something holds on to tensors (e.g. a loss kept "
                                     "with its graph).")
    increase_percent: float = 20.0

    def check(self, data: DebugData) -> Finding:
        if not _has_gpu(data):
            raise CannotJudge("not judged: no GPU on this machine (no GPU memory samples)")
        # Within each stage: memory rightly grows from feature extraction to the head, and from the head to
        # fine-tuning the backbone; a leak grows within a stage.
        notes, violations, judged, where = [], 0, 0, []
        for stage, rows in _stage_samples(data).items():
            mem = [x["gpu_memory_mb"] for x in rows if "gpu_memory_mb" in x]
            if len(mem) < 4:
                notes.append(f"{stage}: too few GPU memory samples")
                continue
            q = len(mem) // 4
            early, late = mean(mem[:q]), mean(mem[-q:])
            growth = (late - early) / early * 100 if early else (math.inf if late > early else 0.0)
            judged += len(mem)
            if growth > self.increase_percent:
                violations += 1
                where += _steps_at(data, rows[-q:])[:1]
            notes.append(f"{stage}: {early:.0f} MB early, {late:.0f} MB late ({growth:.0f}% growth)")
        return Finding(violations, judged, "GPU memory " + "; ".join(notes), tuple(where))

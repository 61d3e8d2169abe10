"""The profiler report's numbers, from what the debugger recorded: where the job's time went (phases), step-time
statistics per stage, data-loader waits, system usage per node, and torch.profiler's operators.

Plain functions over DebugData; report.py draws and lays them out.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dogbreed.debug.hooks import DebugData
from dogbreed.debug.profiler_rules import StepOutlier


@dataclass(frozen=True)
class Phase:
    name: str
    start_s: float  # from the job's start
    seconds: float
    note: str = ""


def job_phases(data: DebugData, job_start: float, job_end: float | None) -> list[Phase]:
    """Initialisation, data preparation, feature extraction, each stage's training loop and evaluation, the time
    between stages, finalisation. Jobs recorded before stages were timed get SageMaker's three phases."""
    meta = data.meta
    debug_start = meta.get("job_start") or job_start
    t0 = min(job_start, debug_start)
    end = job_end or meta.get("job_end") or (data.steps[-1]["time"] if data.steps else t0)
    stages = [s for s in meta.get("stages") or [] if "end" in s]
    phases: list[Phase] = []

    def add(name: str, a: float, b: float, note: str = "") -> None:
        if b > a:
            phases.append(Phase(name, a - t0, b - a, note))

    if not stages:
        first = meta.get("first_step_time")
        if first and data.steps:
            add("initialisation", t0, first, "job start to the first step")
            add("training loop", first, data.steps[-1]["time"])
            add("finalisation", data.steps[-1]["time"], end)
        return phases
    add("initialisation", t0, debug_start, "job record, log, debugger")
    ready = meta.get("data_ready")
    if ready:
        add("data preparation", debug_start, ready, "tracking run, decoding (or the decode cache), data check")
    before = ready or debug_start
    first = stages[0]
    add("feature extraction" if first["stage"] in ("head", "last_block") else "model set-up", before,
        first["start"], "backbone features of every image, cached for later runs" if first["stage"] == "head"
        else "")
    for i, st in enumerate(stages):
        epochs = [e for e in data.epochs if e.get("stage") == st["stage"] and "end_time" in e
                  and st["start"] <= e["end_time"] <= st["end"] + 1e-3]
        evaluation = sum(e["end_time"] - e["loop_end_time"] for e in epochs)
        add(f"training loop: {st['stage']}", st["start"], st["end"] - evaluation,
            f"{len(epochs)} epoch(s), {sum(1 for s in data.steps if s['stage'] == st['stage'])} steps")
        if evaluation > 0:
            phases.append(Phase(f"evaluation: {st['stage']}", st["end"] - evaluation - t0, evaluation,
                                "validation after every epoch"))
        if i + 1 < len(stages):
            add("between stages", st["end"], stages[i + 1]["start"], "probe head, view features, unfreezing")
    add("finalisation", stages[-1]["end"], end, "calibration, final evaluation, saving the model")
    return phases


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else math.nan


def step_seconds(s: dict[str, Any]) -> float:
    return s["data_s"] + s["forward_s"] + s["backward_s"] + s["optimizer_s"]


@dataclass
class StageSteps:
    stage: str
    steps: list[int]
    seconds: list[float]
    limit: float  # StepOutlier's: above it a step is an outlier
    outliers: list[int] = field(default_factory=list)

    def row(self) -> dict[str, Any]:
        ms = [t * 1000 for t in self.seconds]
        return {"stage": self.stage, "steps": len(ms), "mean": float(np.mean(ms)) if ms else math.nan,
                "p50": _pct(ms, 50), "p95": _pct(ms, 95), "p99": _pct(ms, 99), "max": max(ms, default=math.nan),
                "outliers": len(self.outliers)}


def step_statistics(data: DebugData, rule: StepOutlier | None = None) -> list[StageSteps]:
    rule = rule or StepOutlier()
    by_stage: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for s in data.steps:
        by_stage[s["stage"]].append(s)
    out = []
    for stage, rows in by_stage.items():
        times = [step_seconds(s) for s in rows]
        judged = times[1:] if len(times) > 1 else times  # as the rule: the first step warms caches up
        limit = rule.limit(judged) if len(judged) > 1 else math.inf
        outliers = [s["step"] for s in rows[1:] if step_seconds(s) > limit]
        out.append(StageSteps(stage, [s["step"] for s in rows], times, limit, outliers))
    return out


def data_loading(data: DebugData) -> list[dict[str, Any]]:
    """Per stage: how long steps waited for their batch, against the whole step."""
    by_stage: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for s in data.steps:
        by_stage[s["stage"]].append(s)
    rows = []
    for stage, steps in by_stage.items():
        total = sum(step_seconds(s) for s in steps)
        waits = [s["data_s"] * 1000 for s in steps]
        images = sum(s.get("batch_size") or 0 for s in steps)
        rows.append({"stage": stage, "steps": len(steps), "wait_s": sum(waits) / 1000,
                     "wait_share": sum(waits) / 1000 / total if total else 0.0, "p50_ms": _pct(waits, 50),
                     "p95_ms": _pct(waits, 95),
                     "waiting_steps": sum(1 for s in steps if s["data_s"] > 0.5 * step_seconds(s)),
                     "images_per_s": images / total if total else 0.0})
    return rows


# System metrics: column (or prefix for per-core columns) -> label and unit. Cumulative counters become rates.
SYSTEM_METRICS = (("cpu_percent", "CPU, all cores", "%"), ("memory_percent", "memory used", "%"),
                  ("process_rss_mb", "training process memory", "MB"), ("gpu_percent", "GPU", "%"),
                  ("gpu_memory_mb", "GPU memory", "MB"))
RATES = (("disk_read_mb", "disk read", "MB/s"), ("disk_write_mb", "disk write", "MB/s"),
         ("net_recv_mb", "network received", "MB/s"), ("net_sent_mb", "network sent", "MB/s"))


def system_usage(data: DebugData) -> dict[str, list[dict[str, Any]]]:
    """Per node (a distributed job's samples name their worker and host; a single job's node is the host it
    recorded), min/p50/p95/max of each system metric."""
    by_node: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in data.system:
        by_node[str(row.get("node") or data.meta.get("host") or "this machine")].append(row)
    return {node: _node_usage(rows) for node, rows in by_node.items()}


def _node_usage(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    def stat(label: str, unit: str, values: list[float]) -> None:
        values = [v for v in values if v is not None and math.isfinite(v)]
        if values:
            out.append({"metric": label, "unit": unit, "min": min(values), "p50": _pct(values, 50),
                        "p95": _pct(values, 95), "max": max(values)})

    cores = sorted((k for k in rows[0] if k.startswith("cpu") and k[3:-8].isdigit()), key=lambda k: int(k[3:-8]))
    for k in cores:
        stat(f"CPU core {k[3:-8]}", "%", [s.get(k) for s in rows])
    for key, label, unit in SYSTEM_METRICS:
        if any(key in s for s in rows):
            stat(label, unit, [s.get(key) for s in rows])
    for key, label, unit in RATES:
        pairs = [(a, b) for a, b in zip(rows, rows[1:]) if key in a and key in b and b["time"] > a["time"]]
        rates = [max(b[key] - a[key], 0.0) / (b["time"] - a["time"]) for a, b in pairs]
        if rates and max(rates) < 1:  # a trickle reads better in KB/s than as 0.0003255 MB/s
            unit, rates = "KB/s", [r * 1024 for r in rates]
        stat(label, unit, rates)
    return out


@dataclass
class Operators:
    top: list[dict[str, Any]]  # name, calls, self_ms, total_ms, share
    by_pass: dict[str, float]  # forward and other / backward / optimizer: self ms
    kernels: list[dict[str, Any]]  # GPU kernels when traced on a GPU
    steps: int


def trace_operators(path: Path, top: int = 15) -> Operators | None:
    """Top operators by self time, and the split between forward, backward and optimizer, from a Chrome trace
    written by torch.profiler. Self time: an event's duration less its direct children's, per thread."""
    if not path.exists():
        return None
    try:
        events = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    events = events.get("traceEvents", []) if isinstance(events, dict) else events
    spans = [e for e in events if e.get("ph") == "X" and e.get("cat") in ("cpu_op", "user_annotation")
             and "dur" in e]
    by_thread: dict[tuple[Any, Any], list[dict[str, Any]]] = defaultdict(list)
    for e in spans:
        by_thread[(e.get("pid"), e.get("tid"))].append(e)
    self_ms: dict[str, float] = defaultdict(float)
    total_ms: dict[str, float] = defaultdict(float)
    calls: dict[str, int] = defaultdict(int)
    by_pass: dict[str, float] = defaultdict(float)
    for thread in by_thread.values():
        thread.sort(key=lambda e: (e["ts"], -e["dur"]))
        stack: list[tuple[dict[str, Any], str, list[float]]] = []  # event, pass, [children's time]

        def close(until: float) -> None:
            while stack and stack[-1][0]["ts"] + stack[-1][0]["dur"] <= until:
                e, kind, children = stack.pop()
                own = max(e["dur"] - children[0], 0.0) / 1000
                if e.get("cat") == "cpu_op":
                    self_ms[e["name"]] += own
                    by_pass[kind] += own

        for e in thread:
            close(e["ts"])
            parent_kind = stack[-1][1] if stack else "forward and other"
            name = e["name"]
            if name.startswith("Optimizer."):
                kind = "optimizer"
            elif name.startswith("autograd::engine::evaluate_function") or "Backward" in name:
                kind = "backward"
            else:
                kind = parent_kind
            if stack:
                stack[-1][2][0] += e["dur"]
            if e.get("cat") == "cpu_op":
                total_ms[name] += e["dur"] / 1000
                calls[name] += 1
            stack.append((e, kind, [0.0]))
        close(math.inf)
    all_self = sum(self_ms.values()) or 1.0
    ops = sorted(self_ms, key=lambda n: -self_ms[n])[:top]
    kernels: dict[str, list[float]] = defaultdict(list)
    for e in events:
        if e.get("ph") == "X" and e.get("cat") == "kernel" and "dur" in e:
            kernels[e["name"]].append(e["dur"] / 1000)
    kernel_rows = [{"name": n, "calls": len(v), "ms": sum(v)} for n, v in kernels.items()]
    steps = sum(1 for e in events if e.get("name", "").startswith("Optimizer.step"))
    return Operators([{"name": n, "calls": calls[n], "self_ms": self_ms[n], "total_ms": total_ms[n],
                       "share": self_ms[n] / all_self} for n in ops], dict(by_pass),
                     sorted(kernel_rows, key=lambda r: -r["ms"])[:top], steps)


def last_confusion(data: DebugData) -> tuple[int, str, np.ndarray] | None:
    """The last epoch's validation confusion (counts, true x predicted), with its epoch and stage."""
    if not data.confusion:
        return None
    last = max(r["epoch"] for r in data.confusion)
    rows = [r for r in data.confusion if r["epoch"] == last]
    n = max(int(data.meta.get("num_classes") or 0), max(max(r["label"], r["predicted"]) for r in rows) + 1)
    counts = np.zeros((n, n), dtype=np.int64)
    for r in rows:
        counts[int(r["label"]), int(r["predicted"])] += int(r["count"])
    return int(last), str(rows[0]["stage"]), counts

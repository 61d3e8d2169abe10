"""Attaching the debugger and profiler to a training job, running rules during training, saving what they found."""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dogbreed.config import UserError
from dogbreed.debug.hooks import ClassRecorder, DebugData, StepTimer, TensorRecorder
from dogbreed.debug.profiler import SystemSampler, TorchTrace
from dogbreed.debug.rules import RuleConfig, RuleResult, default_rules, evaluate_all, parse_rule
from dogbreed.train.trainer import Callback, Trainer

log = logging.getLogger("dogbreed")


@dataclass(frozen=True)
class DebuggerConfig:
    enabled: bool = True
    interval: int = 10  # record tensors every N steps
    rules: tuple[str, ...] = ()  # rule specs (`Name:param=value,action=stop`); empty: every rule, defaults
    profiler_interval_ms: int = 500
    profile_steps: str | None = None  # e.g. "5-10": a torch.profiler trace of those steps

    def rule_configs(self) -> list[RuleConfig]:
        if not self.rules:
            return default_rules()
        chosen = [parse_rule(s) for s in self.rules]
        names = {c.rule.name for c in chosen}
        return chosen + [c for c in default_rules() if c.rule.name not in names]

    def validate(self) -> None:
        if self.interval < 1:
            raise UserError(f"debugger interval must be a positive number of steps, not {self.interval}")
        if self.profiler_interval_ms < 1:
            raise UserError(f"profiler interval must be a positive number of milliseconds, not "
                            f"{self.profiler_interval_ms}")
        self.rule_configs()
        self.trace_window()

    def trace_window(self) -> tuple[int, int] | None:
        if not self.profile_steps:
            return None
        try:
            a, _, b = self.profile_steps.partition("-")
            first, last = int(a), int(b or a)
        except ValueError:
            raise UserError(f"--profile-steps must look like 5-10, not {self.profile_steps!r}") from None
        if first < 1 or last < first:
            raise UserError(f"--profile-steps must be a range of positive steps, not {self.profile_steps!r}")
        return first, last


class RuleRunner(Callback):
    """Evaluates the rules after every epoch; a triggered rule with action=stop asks the trainer to stop."""

    def __init__(self, session: "DebugSession"):
        self.session = session

    def on_epoch_end(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        for cfg in self.session.rules:
            if cfg.rule.name in self.session.triggered:
                continue
            result = cfg.rule.evaluate(self.session.data)
            if result.triggered:
                self.session.triggered.add(cfg.rule.name)
                log.warning("rule %s triggered at epoch %d: %s", result.rule, trainer.global_epoch, result.details)
                if cfg.stop_on_trigger:
                    trainer.request_stop(f"stopped by rule {result.rule}: {result.details}")


class DebugSession:
    def __init__(self, config: DebuggerConfig, job_dir: Path):
        config.validate()
        self.config, self.dir = config, job_dir / "debug"
        self.data = DebugData(meta={"job_start": time.time(), "host": socket.gethostname(),
                                    "cpu_count": os.cpu_count()})
        self.rules = config.rule_configs()
        self.triggered: set[str] = set()
        self.recorder = TensorRecorder(self.data, config.interval)
        self.timer = StepTimer(self.data)
        self.classes = ClassRecorder(self.data)
        self.sampler = SystemSampler(self.data, config.profiler_interval_ms)
        window = config.trace_window()
        self.trace = TorchTrace(window[0], window[1], job_dir / "profiler" / "trace.json") if window else None

    def start(self) -> None:
        self.sampler.start()

    def mark(self, event: str) -> None:
        """A point of the job's timeline the report's job summary splits at (`data_ready`: the data is decoded
        and checked)."""
        self.data.meta.setdefault(event, time.time())

    def callbacks(self, stage: str) -> list[Callback]:
        cbs: list[Callback] = [self.timer, self.recorder, self.classes, RuleRunner(self)]
        if self.trace is not None and stage == "finetune":
            cbs.append(self.trace)
        return cbs

    def finish(self) -> list[RuleResult]:
        self.sampler.stop()
        self.data.meta["job_end"] = time.time()
        self.data.save(self.dir)
        results = evaluate_all(self.rules, self.data)
        save_results(self.dir, results)
        return results


def save_results(directory: Path, results: list[RuleResult]) -> None:
    rules_dir = directory / "rules"
    rules_dir.mkdir(parents=True, exist_ok=True)
    for r in results:
        (rules_dir / f"{r.rule}.json").write_text(json.dumps(r.to_report(), indent=1, default=str))


def load_results(directory: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted((directory / "rules").glob("*.json"))]

"""The profiler: system metrics sampled in a thread every N ms, and an optional torch.profiler trace window.

Step time split (data wait, forward, backward, optimizer) comes from the trainer's own StepRecords, which the
debugger's recorder keeps.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import psutil
import torch

from dogbreed.config import UserError
from dogbreed.debug.hooks import DebugData
from dogbreed.train.trainer import Callback, StepRecord, Trainer


class SystemSampler:
    def __init__(self, data: DebugData, interval_ms: int = 500):
        if interval_ms <= 0:
            raise UserError(f"profiler interval must be a positive number of milliseconds, not {interval_ms}")
        self.data, self.interval = data, interval_ms / 1000
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._gpu = torch.cuda.is_available()

    def start(self) -> None:
        psutil.cpu_percent(percpu=True)  # primes the counters: the first real sample covers one interval
        self._thread = threading.Thread(target=self._run, name="dogbreed-profiler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        proc = psutil.Process()
        while not self._stop.wait(self.interval):
            self.data.system.append(self.sample(proc))

    def sample(self, proc: psutil.Process) -> dict[str, Any]:
        cpu = psutil.cpu_percent(percpu=True)
        disk = psutil.disk_io_counters()
        net = psutil.net_io_counters()
        row: dict[str, Any] = {"time": time.time(), "cpu_percent": sum(cpu) / max(len(cpu), 1),
                               "memory_percent": psutil.virtual_memory().percent,
                               "process_rss_mb": proc.memory_info().rss / 2**20,
                               "disk_read_mb": (disk.read_bytes if disk else 0) / 2**20,
                               "disk_write_mb": (disk.write_bytes if disk else 0) / 2**20,
                               "net_sent_mb": net.bytes_sent / 2**20, "net_recv_mb": net.bytes_recv / 2**20}
        for i, c in enumerate(cpu):
            row[f"cpu{i}_percent"] = c
        if self._gpu:
            row["gpu_memory_mb"] = torch.cuda.memory_allocated() / 2**20
            try:
                row["gpu_percent"] = float(torch.cuda.utilization())
            except Exception:  # needs pynvml; memory is still worth having
                pass
        return row


class TorchTrace(Callback):
    """torch.profiler over a window of steps of the unfrozen stage, exported as a Chrome trace."""

    def __init__(self, first_step: int, last_step: int, out: Path):
        if first_step < 1 or last_step < first_step:
            raise UserError("profile steps must be a range like 5-10 of positive step numbers")
        self.first, self.last, self.out = first_step, last_step, out
        self.prof: Any = None

    def on_step_end(self, trainer: Trainer, step: StepRecord) -> None:
        if step.step == self.first - 1 or (self.first == 1 and self.prof is None and step.step == 0):
            self._start()
        if self.prof is not None:
            self.prof.step()
            if step.step >= self.last:
                self._stop()

    def on_train_start(self, trainer: Trainer) -> None:
        if self.first == 1:
            self._start()

    def on_train_end(self, trainer: Trainer) -> None:
        self._stop()

    def _start(self) -> None:
        if self.prof is None:
            activities = [torch.profiler.ProfilerActivity.CPU]
            if torch.cuda.is_available():
                activities.append(torch.profiler.ProfilerActivity.CUDA)
            self.prof = torch.profiler.profile(activities=activities, record_shapes=False)
            self.prof.__enter__()

    def _stop(self) -> None:
        if self.prof is not None:
            self.prof.__exit__(None, None, None)
            self.out.parent.mkdir(parents=True, exist_ok=True)
            self.prof.export_chrome_trace(str(self.out))
            self.prof = None

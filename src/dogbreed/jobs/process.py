"""The one place that answers "is this process still ours and alive", and that stops processes.

A PID alone is not an identity: after the process ends, the number is reused by another one. A process is
identified by its PID, its start time (psutil's `create_time`) and the host it runs on; a mismatch in any of them
means the process we recorded is gone. Jobs on other hosts of a cluster are judged by their heartbeat instead.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable

import psutil

HEARTBEAT_SECONDS = 10.0
HEARTBEAT_STALE_SECONDS = 90.0  # a job on another host whose heartbeat is older than this has ended


@dataclass(frozen=True)
class ProcessIdentity:
    pid: int
    started: float  # psutil create_time, seconds since the epoch
    host: str = ""

    @classmethod
    def of(cls, pid: int) -> "ProcessIdentity | None":
        try:
            return cls(pid, psutil.Process(pid).create_time(), socket.gethostname())
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return None

    @classmethod
    def current(cls) -> "ProcessIdentity":
        me = cls.of(os.getpid())
        assert me is not None
        return me

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "ProcessIdentity | None":
        if not d:
            return None
        return cls(int(d["pid"]), float(d["started"]), str(d.get("host", "")))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def local(self) -> bool:
        return not self.host or self.host == socket.gethostname()

    def alive(self) -> bool:
        """True while the very process recorded runs (not a zombie, not a newer process with the same PID)."""
        try:
            p = psutil.Process(self.pid)
            return abs(p.create_time() - self.started) < 0.05 and p.status() != psutil.STATUS_ZOMBIE
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return False

    def signal(self, sig: int) -> bool:
        """Sends `sig` only if the process is still the one recorded; returns whether it was sent."""
        if not self.alive():
            return False
        try:
            os.kill(self.pid, sig)
            return True
        except ProcessLookupError:
            return False


def stop_processes(processes: Iterable[ProcessIdentity], timeout: float = 15.0) -> None:
    """SIGTERM to every process that is still ours, then SIGKILL to those still running after `timeout`."""
    targets = [p for p in processes if p.local and p.signal(signal.SIGTERM)]
    deadline = time.time() + timeout
    while targets and time.time() < deadline:
        targets = [p for p in targets if p.alive()]
        time.sleep(0.1)
    for p in targets:
        p.signal(signal.SIGKILL)
    deadline = time.time() + 5
    while any(p.alive() for p in targets) and time.time() < deadline:
        time.sleep(0.05)


def group_members(leader: ProcessIdentity) -> list[ProcessIdentity]:
    """Processes of the process group that `leader` started (leader included), started no earlier than it."""
    out = []
    for p in psutil.process_iter(["pid", "create_time"]):
        try:
            if os.getpgid(p.pid) == leader.pid and p.info["create_time"] >= leader.started - 0.05:
                out.append(ProcessIdentity(p.pid, p.info["create_time"], leader.host))
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    return out


def die_with_parent() -> None:
    """Asks Linux to send this process SIGTERM when its parent dies, so no worker outlives a killed supervisor."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: workers are still tracked and stopped by identity
        return
    if os.getppid() == 1:  # the parent died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


class Heartbeat:
    """Touches a file every few seconds while a job runs; its age tells other hosts whether the job still runs."""

    def __init__(self, path: Path, interval: float = HEARTBEAT_SECONDS):
        self.path, self.interval = path, interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> "Heartbeat":
        self.beat()
        self._thread = threading.Thread(target=self._run, name="dogbreed-heartbeat", daemon=True)
        self._thread.start()
        return self

    def beat(self) -> None:
        try:
            self.path.touch()
        except OSError:  # the job folder was deleted under us; the job notices elsewhere
            pass

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.beat()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)


def heartbeat_fresh(path: Path, stale_after: float = HEARTBEAT_STALE_SECONDS) -> bool:
    try:
        return time.time() - path.stat().st_mtime < stale_after
    except OSError:
        return False


def owner_running(owner: ProcessIdentity | None, heartbeat: Path) -> bool:
    """Whether the process that owns a record still runs: by identity on this host, by heartbeat elsewhere."""
    if owner is None:
        return heartbeat_fresh(heartbeat)
    if owner.local:
        return owner.alive()
    return heartbeat_fresh(heartbeat)

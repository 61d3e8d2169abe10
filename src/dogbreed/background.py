"""Jobs started with `wait=False` (the SDK's `fit(wait=False)`): the job runs in a process of its own, in its own
session, so it survives the notebook kernel; the caller gets control back once the job's record exists.

`python -m dogbreed.background training|tuning SPEC.json` is the entry point of that process.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from dogbreed.config import UserError, home
from dogbreed.jobs import names, records


def _spec_file(name: str) -> Path:
    names.validate(name, "job")  # before the name becomes a path
    d = home() / "background"
    d.mkdir(parents=True, exist_ok=True)
    return d / f"{name}.json"


def launch(kind: str, spec: Any, timeout: float = 120.0) -> None:
    """Starts the job in the background; returns once its record exists (raises with the job's own error line if
    it ends before)."""
    payload = dataclasses.asdict(spec)
    if kind == "training":
        payload["hyperparameters"] = spec.hyperparameters.to_dict()
    path = _spec_file(spec.name)
    path.write_text(json.dumps(payload, default=str))
    log_path = path.with_suffix(".log")
    with log_path.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "dogbreed.background", kind, str(path)], stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + timeout
    while time.time() < deadline:
        if records.exists(spec.name):
            return
        if proc.poll() is not None:
            lines = [ln for ln in log_path.read_text(errors="replace").splitlines() if ln.strip()]
            errors = [ln for ln in lines if ln.startswith("error:")]
            raise UserError((errors or lines or ["the job's process ended without a word"])[-1].removeprefix("error: "))
        time.sleep(0.2)
    raise UserError(f"job {spec.name} did not start within {timeout:.0f} s; see {log_path}")


def _training_spec(d: dict[str, Any]) -> Any:
    from dogbreed.config import Hyperparameters
    from dogbreed.debug.monitor import DebuggerConfig
    from dogbreed.train.job import TrainingJobSpec

    debugger = d.get("debugger")
    if debugger is not None:
        debugger = DebuggerConfig(**{**debugger, "rules": tuple(debugger.get("rules") or ())})
    return TrainingJobSpec(**{**d, "hyperparameters": Hyperparameters.from_mapping(d["hyperparameters"]),
                              "debugger": debugger, "progress": False})


def _tuning_spec(d: dict[str, Any]) -> Any:
    from dogbreed.tune.config import TuningConfig
    from dogbreed.tune.start import TuningJobSpec

    return TuningJobSpec(**{**d, "config": TuningConfig.from_dict(d["config"])})


def main(argv: list[str]) -> int:
    from dogbreed.progress import ensure_visible_logs

    ensure_visible_logs()
    kind, path = argv
    spec = json.loads(Path(path).read_text())
    try:
        if kind == "training":
            from dogbreed.train.job import run_training_job

            record = run_training_job(_training_spec(spec))
        else:
            from dogbreed.tune.start import start_tuning_job

            record = start_tuning_job(_tuning_spec(spec))
    except UserError as e:
        print(f"error: {e}", flush=True)
        return 2
    return 0 if record.status == records.COMPLETED else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

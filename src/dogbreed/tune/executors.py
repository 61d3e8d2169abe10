"""Where trials run: inline, in worker processes on this machine, or as Ray tasks on a cluster.
`submit` then `wait_one`; a trial that cannot even run is a failed trial, never a crash of the tuning job."""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import time
from typing import Any, Callable

from dogbreed.config import UserError, home
from dogbreed.jobs import records
from dogbreed.jobs.process import die_with_parent
from dogbreed.jobs.records import FAILED, IN_PROGRESS
from dogbreed.tune.trial import TrialOutcome, TrialTask, execute_trial


class TrialExecutor:
    def __init__(self, kind: str, parallel: int, ray_address: str | None, gpus: float):
        self.kind, self.parallel = kind, parallel
        self.pending: dict[Any, TrialTask] = {}
        self.pool = None
        self.ray_fn = None
        if kind == "ray":
            try:
                import ray
            except ImportError:
                raise UserError("the Ray executor needs Ray: pip install 'ray==2.60.0'") from None
            ray.init(address=ray_address or None, ignore_reinit_error=True, log_to_driver=False,
                     include_dashboard=False, runtime_env={"env_vars": {"DOGBREED_HOME": str(home())}})
            cpus = max(1, int(ray.available_resources().get("CPU", 1) // parallel))
            self.ray_fn = ray.remote(num_cpus=cpus, num_gpus=gpus, max_retries=0)(execute_trial)
        elif parallel > 1:
            # spawn: each trial process starts clean (no forked torch thread pools); die_with_parent: a killed
            # tuning job leaves no trial running on behind its back
            self.pool = concurrent.futures.ProcessPoolExecutor(
                parallel, mp_context=multiprocessing.get_context("spawn"), initializer=die_with_parent)

    def threads(self) -> int:
        return max(1, (os.cpu_count() or 1) // self.parallel)

    def submit(self, task: TrialTask) -> None:
        if self.ray_fn is not None:
            self.pending[self.ray_fn.remote(task)] = task
        elif self.pool is not None:
            self.pending[self.pool.submit(execute_trial, task)] = task
        else:
            self.pending[("inline", task.trial_id)] = task

    def wait_one(self) -> TrialOutcome:
        if self.ray_fn is not None:
            import ray

            [ref], _ = ray.wait(list(self.pending), num_returns=1)
            task = self.pending.pop(ref)
            return self._guard(task, lambda: ray.get(ref))
        if self.pool is not None:
            done, _ = concurrent.futures.wait(list(self.pending), return_when=concurrent.futures.FIRST_COMPLETED)
            fut = next(iter(done))
            task = self.pending.pop(fut)
            return self._guard(task, fut.result)
        key = next(iter(self.pending))
        task = self.pending.pop(key)
        return self._guard(task, lambda: execute_trial(task))

    @staticmethod
    def _guard(task: TrialTask, get: Callable[[], TrialOutcome]) -> TrialOutcome:
        try:
            return get()
        except KeyboardInterrupt:
            raise
        except BaseException as e:  # noqa: BLE001 - worker died, bad configuration: a failed trial
            reason = f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"
            if records.exists(task.job_name):
                job = records.load(task.job_name)
                if job.status == IN_PROGRESS:
                    records.update(job, status=FAILED, failure_reason=reason, end_time=time.time())
            return TrialOutcome(task.trial_id, task.trial_number, task.job_name, FAILED, None, False, reason)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
        if self.ray_fn is not None:
            import ray

            ray.shutdown()

"""One training job on two data-parallel workers (Ray Train, DDP over gloo) on a real two-node local Ray cluster:
the same accuracy as one process, a record that reads like a single job's, and a killed worker survived."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from conftest import SLICE_CLASSES, make_slice, run_cli
from dogbreed.jobs import records
from dogbreed.train.checkpoint import CheckpointStore

HEAD = ["--preset", "fast", "--epochs", "5", "--mini_batch_size", "16"]
FINETUNE = ["--preset", "fast", "--train_mode", "last_blocks", "--trainable_blocks", "1", "--head_epochs", "1",
            "--epochs", "3", "--mini_batch_size", "8", "--learning_rate", "0.01", "--optimizer", "sgd"]


@pytest.fixture(scope="module")
def dogs5(tmp_path_factory):
    return make_slice(tmp_path_factory.mktemp("dogs5dist"), SLICE_CLASSES, 12, 6)


def test_two_workers_reach_one_process_accuracy(dogs5, ray_cluster):
    one = run_cli("train", "--data", str(dogs5), "--job-name", "dist-n1", *HEAD)
    assert one.returncode == 0, one.stderr[-2000:]
    two = run_cli("train", "--data", str(dogs5), "--job-name", "dist-n2", *HEAD, "--instance-count", "2",
                  "--ray-address", ray_cluster)
    assert two.returncode == 0, two.stderr[-3000:]
    r1, r2 = records.load("dist-n1"), records.load("dist-n2")
    assert r2.status == "Completed" and r2.extra["workers"] == 2 and r2.extra["instance_count"] == 2
    assert r1.metrics["validation:accuracy"] > 0.6  # far above chance (0.2) on 5 breeds
    assert abs(r2.metrics["validation:accuracy"] - r1.metrics["validation:accuracy"]) <= 0.1
    # the record, its epochs and its debugger verdicts read like a single job's
    assert [h["epoch"] for h in r2.history] == list(range(1, 6))
    assert all(0 <= h["validation:accuracy"] <= 1 for h in r2.history)
    assert r2.extra["rules"] and "LossNotDecreasing" in r2.extra["rules"]
    assert (records.job_dir("dist-n2") / "model" / "model.safetensors").exists()
    assert "training on 2 workers" in (records.job_dir("dist-n2") / "train.log").read_text()
    assert len(r2.extra["worker_group_starts"]) == 1  # no restart
    # the profiler's system usage covers every node
    from dogbreed.debug.hooks import DebugData

    usage = DebugData.load(records.job_dir("dist-n2") / "debug").system
    assert {row["node"].split("@")[0] for row in usage} == {"worker-0", "worker-1"}


def test_a_killed_worker_is_survived_from_the_last_checkpoint(dogs5, ray_cluster):
    name = "dist-kill"
    result = {}
    thread = threading.Thread(target=lambda: result.update(run=run_cli(
        "train", "--data", str(dogs5), "--job-name", name, *FINETUNE, "--instance-count", "2", "--ray-address",
        ray_cluster, "--max-failures", "1")))
    thread.start()
    pid_file = records.job_dir(name) / "distributed" / "worker-1.pid"
    store = CheckpointStore(str(records.job_dir(name) / "checkpoints"))
    deadline = time.time() + 600
    while True:  # a fine-tuning epoch done and checkpointed, then the second worker is killed mid-epoch
        assert thread.is_alive() and time.time() < deadline, result.get("run")
        try:
            latest = store.latest()
        except Exception:  # noqa: BLE001 - being written
            latest = None
        if latest is not None and latest.stage == "finetune" and pid_file.exists():
            break
        time.sleep(0.1)
    os.kill(int(pid_file.read_text()), signal.SIGKILL)
    thread.join(900)
    run = result["run"]
    assert run.returncode == 0, run.stderr[-3000:]
    record = records.load(name)
    assert record.status == "Completed"
    starts = record.extra["worker_group_starts"]
    assert len(starts) == 2 and starts[1]["from_epoch"] >= 2
    assert [h["epoch"] for h in record.history] == [1, 2, 3, 4]  # the restarted epochs replace, never repeat
    assert record.metrics["validation:accuracy"] > 0.6

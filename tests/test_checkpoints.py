"""Checkpoints and `dogbreed jobs resume`: a job killed with SIGKILL in the middle of fine-tuning goes on from its
last checkpoint and ends with the model an uninterrupted run gives."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from conftest import SLICE_CLASSES, make_slice, run_cli
from dogbreed.config import UserError
from dogbreed.jobs import records
from dogbreed.train.checkpoint import CheckpointStore

# Lite0 with its last block fine-tuned: the cheapest recipe with a real fine-tuning stage
FINETUNE = ["--preset", "fast", "--train_mode", "last_blocks", "--trainable_blocks", "1", "--head_epochs", "1",
            "--epochs", "5", "--mini_batch_size", "8", "--learning_rate", "0.01", "--optimizer", "sgd",
            "--augmentation_type", "crop_color", "--checkpoint_frequency", "1"]


@pytest.fixture(scope="module")
def dogs4(tmp_path_factory):
    return make_slice(tmp_path_factory.mktemp("dogs4ckpt"), SLICE_CLASSES[:4], 10, 4)


def _history(name):
    path = records.job_dir(name) / "job.json"
    try:
        return json.loads(path.read_text())["history"]
    except (OSError, ValueError, KeyError):
        return []


def test_killed_finetuning_resumes_to_the_uninterrupted_model(dogs4):
    reference = run_cli("train", "--data", str(dogs4), "--job-name", "ckpt-reference", *FINETUNE)
    assert reference.returncode == 0, reference.stderr[-2000:]

    proc = subprocess.Popen([sys.executable, "-m", "dogbreed.cli", "train", "--data", str(dogs4), "--job-name",
                             "ckpt-killed", *FINETUNE], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    store = CheckpointStore(str(records.job_dir("ckpt-killed") / "checkpoints"))
    while not any(h.get("stage") == "finetune" for h in _history("ckpt-killed")) or (
            store.latest().stage != "finetune"):  # a fine-tuning epoch is done and checkpointed
        assert proc.poll() is None and time.time() < deadline, "the job ended before fine-tuning"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = _history("ckpt-killed")
    assert len(done) < 6, "killed too late to test a resume"

    # what a user runs next: the job reads Failed, and resume goes on from the checkpoint
    described = json.loads(run_cli("jobs", "describe", "ckpt-killed", "--json").stdout)
    assert described["status"] == "Failed"
    resumed = run_cli("jobs", "resume", "ckpt-killed")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    record = records.load("ckpt-killed")
    assert record.status == "Completed"
    assert [h["epoch"] for h in record.history] == [1, 2, 3, 4, 5, 6]  # each epoch once, in order
    assert record.extra["resumes"][0]["after"] == "Failed"
    assert record.extra["resumes"][0]["from_epoch"] >= 2  # the head epoch and at least one fine-tuning epoch kept
    assert "resumes after epoch" in (records.job_dir("ckpt-killed") / "train.log").read_text()

    ref = load_file(records.job_dir("ckpt-reference") / "model" / "model.safetensors")
    got = load_file(records.job_dir("ckpt-killed") / "model" / "model.safetensors")
    assert ref.keys() == got.keys()
    # Equal up to float summation order (CPU kernels are not bitwise reproducible across processes): a lost
    # momentum buffer, learning-rate step or random state moves the weights by orders of magnitude more.
    for k in ref:
        torch.testing.assert_close(got[k], ref[k], rtol=1e-3, atol=1e-4, msg=k)
    ref_history = records.load("ckpt-reference").history
    for a, b in zip(ref_history, record.history, strict=True):
        assert a["validation:accuracy"] == pytest.approx(b["validation:accuracy"])
        assert a["train:loss"] == pytest.approx(b["train:loss"], abs=1e-4)

    # the same MLflow run went on: one run, finished, with every epoch's metric once
    from dogbreed.jobs.tracking import client

    c = client()
    run = c.get_run(record.mlflow_run_id)
    assert run.info.status == "FINISHED"
    steps = [m.step for m in c.get_metric_history(record.mlflow_run_id, "validation:accuracy")]
    assert set(range(1, 7)) <= set(steps)
    assert not any("checkpoints" in a.path for a in c.list_artifacts(record.mlflow_run_id))

    # a completed job has nothing to resume; an unknown one is a clear error
    again = run_cli("jobs", "resume", "ckpt-killed")
    assert again.returncode == 2 and "already complete" in again.stderr and "Traceback" not in again.stderr
    assert run_cli("jobs", "resume", "no-such-job").returncode == 2


def test_checkpoint_store_keeps_two_and_refuses_a_damaged_one(tmp_path):
    from dogbreed.train.checkpoint import Checkpoint

    def ckpt(epoch):
        return Checkpoint("finetune", epoch, epoch + 1, epoch * 10, [{"epoch": epoch + 1}], {"head": 1},
                          {"model.w": torch.full((3,), float(epoch)), "rng.torch": torch.get_rng_state()},
                          {"param_groups": []})

    # any fsspec location works (an object store in production; memory:// here)
    for location in (str(tmp_path / "ckpts"), "memory://dogbreed-test/ckpts"):
        store = CheckpointStore(location)
        assert store.latest() is None
        for epoch in range(1, 5):
            store.save(ckpt(epoch))
        latest = store.latest()
        assert latest.stage_epoch == 4 and latest.model_state()["w"].tolist() == [4.0] * 3
        names = sorted(p.rsplit("/", 1)[-1] for p in store.fs.ls(store.root, detail=False))
        assert names == ["checkpoint-3.json", "checkpoint-3.safetensors", "checkpoint-4.json",
                         "checkpoint-4.safetensors"]
    blob = tmp_path / "ckpts" / "checkpoint-4.safetensors"
    blob.write_bytes(blob.read_bytes()[:-5] + b"xxxxx")
    with pytest.raises(UserError, match="damaged"):
        CheckpointStore(str(tmp_path / "ckpts")).latest()

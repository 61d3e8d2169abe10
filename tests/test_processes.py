"""Processes killed the hard way (SIGKILL), and the commands a user runs next: records tell the truth, nothing keeps
running unseen, no name stays blocked, nothing outside the dogbreed home is touched, nothing finished is lost."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest
import yaml

from conftest import Endpoint, run_cli
from dogbreed.jobs import endpoint_records, records
from dogbreed.jobs.process import ProcessIdentity
from dogbreed.serve.deploy import free_port


def _popen(*args: str, cwd: Path | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "dogbreed.cli", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=os.environ.copy(), cwd=cwd)


def _wait_for(predicate, timeout: float = 180, what: str = "") -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _history_len(name: str) -> int:
    try:
        return len(records.load(name, reconcile=False).history)
    except Exception:  # noqa: BLE001 - not written yet
        return 0


def test_killed_training_job_is_failed_not_in_progress_forever(dogs_slice, dogbreed_home):
    proc = _popen("train", "--data", str(dogs_slice), "--job-name", "killed-train", "--epochs", "100000")
    _wait_for(lambda: _history_len("killed-train") >= 2, what="two epochs")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    # The next command that reads the record sees the owner is gone.
    d = json.loads(run_cli("jobs", "describe", "killed-train", "--json").stdout)
    assert d["status"] == "Failed" and "process ended without finishing" in d["failure_reason"]
    assert len(d["history"]) >= 2  # finished epochs are kept
    # ...and its MLflow run is ended, not RUNNING forever.
    from dogbreed.jobs.tracking import client

    assert client().get_run(d["mlflow_run_id"]).info.status == "FAILED"
    # `logs --follow` returns instead of hanging.
    r = run_cli("logs", "killed-train", "--follow", timeout=30)
    assert r.returncode == 0 and "epoch 1 [head]" in r.stdout
    # The name is not blocked for good: delete the job, and the name can be used again.
    assert run_cli("jobs", "stop", "killed-train").returncode == 2  # not running
    r = run_cli("jobs", "delete", "killed-train")
    assert r.returncode == 0, r.stderr
    assert not (dogbreed_home / "jobs" / "killed-train").exists()
    assert run_cli("jobs", "describe", "killed-train").returncode == 2


def test_jobs_stop_ends_a_running_job_stopped(dogs_slice):
    proc = _popen("train", "--data", str(dogs_slice), "--job-name", "stop-me", "--epochs", "100000")
    _wait_for(lambda: _history_len("stop-me") >= 1, what="an epoch")
    r = run_cli("jobs", "stop", "stop-me")
    assert r.returncode == 0 and "Stopped" in r.stdout, r.stderr
    proc.wait(timeout=60)
    rec = records.load("stop-me")
    assert rec.status == "Stopped" and rec.failure_reason == "stopped by the user" and rec.end_time


def test_pid_reuse_is_not_mistaken_for_the_owner(dogbreed_home):
    """A record whose PID now belongs to another process (same number, other start time) is ended, and no command
    signals that other process."""
    bystander = subprocess.Popen(["sleep", "300"])
    try:
        started = psutil.Process(bystander.pid).create_time()
        impostor = {"pid": bystander.pid, "started": started - 1000.0, "host": ProcessIdentity.current().host}
        records.jobs_root().mkdir(parents=True, exist_ok=True)
        (records.jobs_root() / "reused").mkdir()
        records.save(records.JobRecord(name="reused", owner=impostor))
        assert records.load("reused").status == "Failed"
        port = free_port()
        endpoint_records.save(endpoint_records.EndpointRecord(
            name="reused-ep", model="m", model_dir="/nowhere", url=f"http://127.0.0.1:{port}", workers=1,
            backend="onnx", port=port, owner=impostor))
        assert endpoint_records.load("reused-ep").live_status == "Failed"
        assert run_cli("endpoints", "delete", "reused-ep").returncode == 0
        assert run_cli("jobs", "delete", "reused").returncode == 0
        time.sleep(0.5)
        assert bystander.poll() is None  # the unrelated process was never signalled
    finally:
        bystander.kill()


def _workers_of(record: endpoint_records.EndpointRecord) -> list[ProcessIdentity]:
    return [w for w in record.worker_identities() if w.alive()]


def test_killed_deploy_with_two_workers_leaves_nothing_serving(served_model, dogs_slice):
    photo = sorted((dogs_slice / "test").rglob("*.jpg"))[0].read_bytes()
    ep = Endpoint("ep-kill", "dogs5", "--workers", "2")
    _wait_for(lambda: len(_workers_of(endpoint_records.load("ep-kill"))) == 2, 60, "both workers")
    workers = _workers_of(endpoint_records.load("ep-kill"))
    assert ep.post(photo).status_code == 200
    os.kill(ep.proc.pid, signal.SIGKILL)
    ep.proc.wait()
    # No worker outlives the killed deploy; the record never claims InService.
    _wait_for(lambda: not any(w.alive() for w in workers), 30, "workers to end")
    listed = json.loads(run_cli("endpoints", "list", "--json").stdout)
    status = next(e for e in listed if e["name"] == "ep-kill")
    assert status["status"] == "Failed" and "ended without stopping" in status["failure_reason"]
    with pytest.raises(httpx.HTTPError):
        httpx.post(f"{ep.url}/invocations", content=photo, headers={"Content-Type": "image/jpeg"}, timeout=3)
    # Delete works and frees the port; the name can be deployed again on the same port.
    assert run_cli("endpoints", "delete", "ep-kill").returncode == 0
    again = Endpoint("ep-kill", "dogs5", "--workers", "2")
    try:
        assert again.post(photo).status_code == 200
    finally:
        again.stop()
    assert not endpoint_records.exists("ep-kill")


def test_endpoints_delete_stops_workers_of_a_deploy_stopped_uncleanly(served_model, dogs_slice):
    """SIGSTOP freezes the deploy process (as a hung supervisor would): delete still ends every worker."""
    ep = Endpoint("ep-frozen", "dogs5", "--workers", "2")
    _wait_for(lambda: len(_workers_of(endpoint_records.load("ep-frozen"))) == 2, 60, "both workers")
    workers = _workers_of(endpoint_records.load("ep-frozen"))
    os.kill(ep.proc.pid, signal.SIGSTOP)
    try:
        r = run_cli("endpoints", "delete", "ep-frozen", timeout=120)
        assert r.returncode == 0, r.stderr
        assert not any(w.alive() for w in workers)
        assert not endpoint_records.port_in_use("127.0.0.1", ep.port)
    finally:
        try:
            os.kill(ep.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        ep.proc.wait()


def test_killed_batch_transform_resumes_and_runs_never_overlap(served_model, dogs_slice, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    photos = sorted(dogs_slice.rglob("*.jpg"))
    for i in range(4):  # enough images that the run is still going when killed
        for p in photos:
            (src / f"{i}-{p.parent.name}-{p.name}").symlink_to(p)
    out = tmp_path / "out"
    args = ("batch-transform", "--model", "dogs5@prod", "--input", str(src), "--output", str(out))
    first = _popen(*args)
    result = out / "predictions.jsonl"
    _wait_for(lambda: result.exists() and result.stat().st_size > 0, 120, "the first predictions")
    # A second run into the same output while the first writes: refused, in one line.
    r = run_cli(*args)
    assert r.returncode == 2 and "another batch transform" in r.stderr and "Traceback" not in r.stderr
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    done = len(result.read_text().splitlines())
    assert 0 < done < len(list(src.iterdir()))
    r = run_cli(*args, "--json")
    assert r.returncode == 0, r.stderr
    lines = [json.loads(x) for x in result.read_text().splitlines()]
    sources = [x["source"] for x in lines]
    assert len(sources) == len(set(sources)) == len(list(src.iterdir()))  # every image once, none twice


def test_output_that_is_a_file_is_a_one_line_error(served_model, dogs_slice, tmp_path):
    target = tmp_path / "a-file"
    target.write_text("x")
    r = run_cli("batch-transform", "--model", "dogs5", "--input", str(dogs_slice / "test"), "--output", str(target))
    assert r.returncode == 2 and "is a file" in r.stderr and "Traceback" not in r.stderr


def _tune_yaml(tmp_path: Path, **over) -> Path:
    cfg = {"strategy": "Random", "max_jobs": 6, "max_parallel_jobs": 1,
           "objective": {"metric": "validation:accuracy", "type": "Maximize"},
           "static_hyperparameters": {"epochs": 4},
           "hyperparameter_ranges": {"learning_rate": {"type": "Continuous", "min": 1e-4, "max": 1e-2,
                                                       "scaling": "Logarithmic"},
                                     "optimizer": {"type": "Categorical", "values": ["adam", "sgd", "rmsprop"]}},
           **over}
    path = tmp_path / "tune.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_tuning_from_a_scratch_folder_writes_nothing_there(dogs_slice, tmp_path, dogbreed_home):
    """Trials in worker processes track to the home's MLflow store; the folder the user ran from stays empty."""
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    cfg = _tune_yaml(tmp_path, max_jobs=2, max_parallel_jobs=2)
    proc = subprocess.run([sys.executable, "-m", "dogbreed.cli", "tune", "run", "--data", str(dogs_slice),
                           "--config", str(cfg), "--job-name", "tune-scratch"], cwd=scratch, capture_output=True,
                          text=True, env=os.environ.copy(), timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert list(scratch.iterdir()) == []
    assert (dogbreed_home / "mlartifacts").is_dir()


def test_tune_stop_and_resume_never_repeats_a_point(dogs_slice, tmp_path):
    from dogbreed.tune.trials import load_study

    cfg = _tune_yaml(tmp_path, static_hyperparameters={"epochs": 40})
    proc = _popen("tune", "run", "--data", str(dogs_slice), "--config", str(cfg), "--job-name", "tune-stop")
    _wait_for(lambda: len([r for r in records.list_records(parent="tune-stop") if r.ended]) >= 2, 300,
              "two trials")
    r = run_cli("tune", "stop", "tune-stop")
    assert r.returncode == 0, r.stderr
    proc.wait(timeout=120)
    assert records.load("tune-stop").status == "Stopped"
    assert run_cli("tune", "resume", "tune-stop", timeout=900).returncode == 0
    rec = records.load("tune-stop")
    assert rec.status == "Completed"
    study = load_study("tune-stop", rec.extra["storage"])
    points = [tuple(sorted(t.params.items())) for t in study.trials
              if t.state.is_finished() and t.user_attrs.get("rerun_of") is None and t.state.name == "COMPLETE"]
    assert len(points) == len(set(points)) >= 5

"""Tuning jobs on a real 5-breed slice: strategies, early stopping, warm start, crash and resume, parallel trials."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml

from conftest import run_cli
from dogbreed.config import UserError
from dogbreed.jobs import records
from dogbreed.tune.config import parse_tuning_config
from dogbreed.tune.start import TuningJobSpec, start_tuning_job
from dogbreed.tune.trials import INTERRUPTED, WARM

SEED_RANGES = {  # the seed notebook's tuning job
    "learning_rate": {"type": "Continuous", "min": 0.001, "max": 0.1, "scaling": "Logarithmic"},
    "optimizer": {"type": "Categorical", "values": ["adam", "sgd", "rmsprop"]},
    "momentum": {"type": "Continuous", "min": 0.5, "max": 0.99, "scaling": "ReverseLogarithmic"},
    "eps": {"type": "Continuous", "min": 1e-9, "max": 1e-6},
    "weight_decay": {"type": "Continuous", "min": 0.0, "max": 0.01},
}


def _config(**kw) -> dict:
    doc = {"strategy": "Bayesian", "max_jobs": 3, "static_hyperparameters": {"epochs": 3},
           "hyperparameter_ranges": SEED_RANGES}
    doc.update(kw)
    return doc


def _study(name: str) -> optuna.Study:
    rec = records.load(name)
    return optuna.load_study(study_name=name, storage=rec.extra["storage"])


@pytest.mark.parametrize("strategy", ["Bayesian", "Random", "Hyperband"])
def test_strategies_run_real_trials(dogs_slice, strategy):
    name = f"tune-{strategy.lower()}"
    register_as = "tuned-dogs" if strategy == "Bayesian" else None
    rec = start_tuning_job(TuningJobSpec(name, str(dogs_slice), parse_tuning_config(_config(strategy=strategy)),
                                         register_as=register_as))
    assert rec.status == "Completed", rec.failure_reason
    jobs = [records.load(f"{name}-{i:03d}") for i in range(3)]
    assert all(j.parent == name and j.status in ("Completed", "Stopped") for j in jobs)
    assert rec.extra["best_objective_value"] >= 0.8
    if register_as:  # the best job's model is in the registry, only when asked for
        assert rec.extra["registered_model"]["name"] == register_as
        assert rec.extra["registered_model"]["job"] == rec.extra["best_training_job"]
    else:
        assert rec.extra["registered_model"] is None
    # A tuning job is a parent MLflow run; its trials' runs are nested under it.
    from dogbreed.jobs.tracking import client

    assert all(client().get_run(j.mlflow_run_id).data.tags["mlflow.parentRunId"] == rec.mlflow_run_id
               for j in jobs)
    d = records.job_dir(name)
    for f in ("analytics.csv", "analytics.json", "objective_over_time.png"):
        assert (d / f).exists()


def test_grid_runs_every_point_once(dogs_slice):
    cfg = _config(strategy="Grid", max_jobs=10, hyperparameter_ranges={
        "optimizer": {"type": "Categorical", "values": ["adam", "sgd"]},
        "mini_batch_size": {"type": "Integer", "min": 16, "max": 17}})
    rec = start_tuning_job(TuningJobSpec("tune-grid", str(dogs_slice), parse_tuning_config(cfg)))
    assert rec.status == "Completed"
    seen = sorted((t.params["optimizer"], t.params["mini_batch_size"]) for t in _study("tune-grid").trials)
    assert seen == [("adam", 16), ("adam", 17), ("sgd", 16), ("sgd", 17)]


def test_early_stopping_stops_a_bad_trial_early(dogs_slice):
    # A head learning from scratch: a tiny learning rate cannot keep up with the others and gets pruned.
    cfg = _config(strategy="Grid", max_jobs=4, early_stopping="Median", seed=3,
                  static_hyperparameters={"epochs": 8, "imagenet_head_init": False},
                  hyperparameter_ranges={"learning_rate": {"type": "Categorical",
                                                           "values": [0.05, 0.03, 0.02, 0.000001]}})
    rec = start_tuning_job(TuningJobSpec("tune-prune", str(dogs_slice), parse_tuning_config(cfg)))
    assert rec.status == "Completed"
    trials = {t.params["learning_rate"]: t for t in _study("tune-prune").trials}
    order = [t.params["learning_rate"] for t in sorted(trials.values(), key=lambda t: t.number)]
    assert order.index(0.000001) >= 2, f"the bad trial must not be among the first two: {order}"
    bad = trials[0.000001]
    assert bad.state == optuna.trial.TrialState.PRUNED
    job = records.load(bad.user_attrs["job_name"])
    assert job.status == "Stopped" and "pruned" in job.failure_reason
    assert len(job.history) < 8  # stopped before its last epoch
    rows = json.loads(run_cli("tune", "describe", "tune-prune", "--json").stdout)["training_jobs"]
    assert {r["TrainingJobStatus"] for r in rows} == {"Completed", "Stopped"}


def test_warm_start_uses_parent_trials(dogs_slice):
    start_tuning_job(TuningJobSpec("tune-parent", str(dogs_slice), parse_tuning_config(_config(strategy="Random"))))
    child = _config(max_jobs=2, warm_start={"type": "IdenticalDataAndAlgorithm", "parents": ["tune-parent"]})
    rec = start_tuning_job(TuningJobSpec("tune-child", str(dogs_slice), parse_tuning_config(child)))
    assert rec.status == "Completed" and rec.extra["warm_start_trials"] == 3
    study = _study("tune-child")
    warm = [t for t in study.trials if t.user_attrs.get(WARM) == "tune-parent"]
    parent_values = sorted(t.value for t in _study("tune-parent").trials)
    assert sorted(t.value for t in warm) == parent_values
    # Only its own training jobs count toward max_jobs and appear in its table.
    rows = json.loads(run_cli("tune", "describe", "tune-child", "--json").stdout)["training_jobs"]
    assert sorted(r["TrainingJobName"] for r in rows) == ["tune-child-003", "tune-child-004"]
    # TransferLearning accepts other static hyperparameters and narrower ranges.
    ranges = {**SEED_RANGES, "learning_rate": {"type": "Continuous", "min": 0.001, "max": 0.01,
                                               "scaling": "Logarithmic"}}
    tl = _config(max_jobs=1, static_hyperparameters={"epochs": 2}, hyperparameter_ranges=ranges,
                 warm_start={"type": "TransferLearning", "parents": ["tune-parent"]})
    rec = start_tuning_job(TuningJobSpec("tune-transfer", str(dogs_slice), parse_tuning_config(tl)))
    inside = [t for t in _study("tune-parent").trials if 0.001 <= t.params["learning_rate"] <= 0.01]
    assert rec.extra["warm_start_trials"] == len(inside)
    with pytest.raises(UserError, match="IdenticalDataAndAlgorithm needs the same"):
        bad = _config(static_hyperparameters={"epochs": 2},
                      warm_start={"type": "IdenticalDataAndAlgorithm", "parents": ["tune-parent"]})
        start_tuning_job(TuningJobSpec("tune-bad-ws", str(dogs_slice), parse_tuning_config(bad)))
    with pytest.raises(UserError, match="has another objective"):
        other = _config(objective={"metric": "validation:loss", "type": "Minimize"},
                        warm_start={"type": "TransferLearning", "parents": ["tune-parent"]})
        start_tuning_job(TuningJobSpec("tune-bad-obj", str(dogs_slice), parse_tuning_config(other)))
    with pytest.raises(UserError, match="warm-start parent 'ghost' does not exist"):
        ghost = _config(warm_start={"type": "TransferLearning", "parents": ["ghost"]})
        start_tuning_job(TuningJobSpec("tune-ghost", str(dogs_slice), parse_tuning_config(ghost)))


def test_sigkill_then_resume_loses_nothing_and_runs_nothing_twice(dogs_slice, tmp_path, dogbreed_home):
    cfg = tmp_path / "tune.yaml"
    cfg.write_text(yaml.safe_dump(_config(strategy="Random", max_jobs=6, static_hyperparameters={"epochs": 30})))
    proc = subprocess.Popen([sys.executable, "-m", "dogbreed.cli", "tune", "run", "--data", str(dogs_slice), "--config",
                             str(cfg), "--job-name", "tune-crash"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=os.environ.copy())
    log = dogbreed_home / "jobs" / "tune-crash" / "tuning.log"
    deadline = time.time() + 300
    while time.time() < deadline:  # kill in the middle of the third trial's training
        if log.exists() and "epoch 3 [head]" in log.read_text().split("trial 2 started")[-1] \
                and "trial 2 started" in log.read_text():
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = _study("tune-crash")
    done_before = {t.user_attrs["job_name"] for t in before.trials if t.state.is_finished()}
    assert len(done_before) == 2
    # Whoever reads the record next sees that its process is gone.
    crashed = records.load("tune-crash")
    assert crashed.status == "Failed" and "process ended without finishing" in crashed.failure_reason
    r = run_cli("tune", "resume", "tune-crash")
    assert r.returncode == 0, r.stderr
    after = _study("tune-crash")
    own = [t for t in after.trials if not t.user_attrs.get(INTERRUPTED)]
    interrupted = [t for t in after.trials if t.user_attrs.get(INTERRUPTED)]
    assert len(own) == 6 and all(t.state.is_finished() for t in own)
    assert len(interrupted) == 1  # the trial that was running, marked...
    rerun = [t for t in own if t.user_attrs.get("rerun_of") == interrupted[0].number]
    assert len(rerun) == 1 and rerun[0].params == interrupted[0].params  # ...and run again
    # ...from the interrupted trial's last checkpoint (the kill came after its third epoch), not from scratch
    continued = records.load(rerun[0].user_attrs["job_name"]).extra["continued_from"]
    assert continued["epoch"] >= 2 and interrupted[0].user_attrs["job_name"] in continued["checkpoint"]
    names = [t.user_attrs["job_name"] for t in own]
    assert len(set(names)) == 6 and done_before <= set(names)  # finished trials kept, none rerun
    # The seeded sampler moved on: no point evaluated before the crash is drawn again.
    points = [tuple(sorted(t.params.items())) for t in own if t.user_attrs.get("rerun_of") is None]
    assert len(set(points)) == len(points)
    assert records.load(interrupted[0].user_attrs["job_name"]).status == "Failed"
    assert records.load("tune-crash").status == "Completed"
    assert run_cli("tune", "resume", "tune-crash").returncode == 2  # already complete


def test_parallel_trials_in_worker_processes(dogs_slice):
    cfg = _config(strategy="Random", max_jobs=4, max_parallel_jobs=2)
    rec = start_tuning_job(TuningJobSpec("tune-parallel", str(dogs_slice), parse_tuning_config(cfg)))
    assert rec.status == "Completed" and rec.extra["trial_counts"] == {"COMPLETE": 4}
    jobs = [records.load(f"tune-parallel-{i:03d}") for i in range(4)]
    overlapping = any(a.start_time < b.end_time and b.start_time < a.end_time
                      for i, a in enumerate(jobs) for b in jobs[i + 1:])
    assert overlapping  # two trials ran at the same time


def test_two_stage_fine_tunes_the_best(dogs_slice):
    cfg = _config(strategy="Random", max_jobs=2, two_stage={
        "top": 1, "hyperparameters": {"train_mode": "last_blocks", "trainable_blocks": 1, "epochs": 1,
                                      "head_epochs": 2, "learning_rate": 0.0001}})
    rec = start_tuning_job(TuningJobSpec("tune-2stage", str(dogs_slice), parse_tuning_config(cfg)))
    assert rec.status == "Completed"
    [ft] = rec.extra["second_stage"]
    job = records.load(ft["job"])
    assert job.status == "Completed" and job.hyperparameters["train_mode"] == "last_blocks"


def test_cli_describe_table_csv(dogs_slice):
    start_tuning_job(TuningJobSpec("tune-describe", str(dogs_slice), parse_tuning_config(_config())))
    r = run_cli("tune", "describe", "tune-describe")
    assert r.returncode == 0, r.stderr
    header = r.stdout.splitlines()[3].split()
    assert header == ["learning_rate", "optimizer", "momentum", "eps", "weight_decay", "TrainingJobName",
                      "TrainingJobStatus", "FinalObjectiveValue", "TrainingStartTime", "TrainingEndTime",
                      "TrainingElapsedTimeSeconds"]
    csv_out = run_cli("tune", "describe", "tune-describe", "--csv").stdout.splitlines()
    assert csv_out[0].startswith("learning_rate,optimizer") and len(csv_out) == 4
    values = [float(line.split(",")[7]) for line in csv_out[1:]]
    assert values == sorted(values, reverse=True)  # best first


BAD = [
    ({"hyperparameter_ranges": {"learning_rate": {"min": 0.1, "max": 0.01}}}, "min 0.1 is above max 0.01"),
    ({"hyperparameter_ranges": {"weight_decay": {"min": 0, "max": 0.1, "scaling": "Logarithmic"}}},
     "logarithmic scaling of 'weight_decay' needs a range above 0"),
    ({"hyperparameter_ranges": {"dropout_rate": {"min": 0, "max": 1}}}, "unknown hyperparameter 'dropout_rate'"),
    ({"strategy": "Genetic"}, "unknown strategy 'Genetic'"),
    ({"strategy": "Grid"}, "Grid search needs categorical or integer ranges"),
    ({"objective": {"metric": "validation:f1"}}, "objective metric 'validation:f1' is never recorded"),
    ({"max_jobs": 2, "max_parallel_jobs": 3}, "max_parallel_jobs (3) is above max_jobs (2)"),
    ({"warm_start": {"type": "TransferLearning", "parents": ["ghost"]}}, "warm-start parent 'ghost' does not exist"),
]


@pytest.mark.parametrize("change, message", BAD)
def test_cli_bad_tuning_configs_fail_before_any_trial(dogs_slice, tmp_path, change, message):
    cfg = tmp_path / "tune.yaml"
    cfg.write_text(yaml.safe_dump(_config(**change)))
    r = run_cli("tune", "run", "--data", str(dogs_slice), "--config", str(cfg), "--job-name", "never-tuned")
    assert r.returncode == 2 and message in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (Path(os.environ["DOGBREED_HOME"]) / "jobs" / "never-tuned").exists()


def test_ray_executor_on_a_two_node_cluster(dogs_slice, ray_cluster):
    cfg = _config(strategy="Random", max_jobs=2, max_parallel_jobs=2)
    rec = start_tuning_job(TuningJobSpec("tune-ray", str(dogs_slice), parse_tuning_config(cfg), executor="ray",
                                         ray_address=ray_cluster))
    assert rec.status == "Completed" and rec.extra["trial_counts"] == {"COMPLETE": 2}
    nodes = {t.user_attrs["node"] for t in _study("tune-ray").trials}
    assert len(nodes) == 2  # one trial on each node: each asked for the node's one CPU


@pytest.mark.parametrize("criteria, reason", [
    ({"target_objective_value": 0.9}, "target objective value 0.9 reached"),
    ({"max_jobs_without_improvement": 1}, "no improvement over 1 jobs"),
])
def test_completion_criteria_end_the_search_early(dogs_slice, criteria, reason):
    # On 5 breeds the first trial already reaches 100%: nothing can beat it.
    name = f"tune-cc-{len(reason)}"
    cfg = _config(strategy="Random", max_jobs=6, completion_criteria=criteria)
    rec = start_tuning_job(TuningJobSpec(name, str(dogs_slice), parse_tuning_config(cfg)))
    assert rec.status == "Completed" and rec.extra["completion_reason"] == reason
    assert sum(rec.extra["trial_counts"].values()) < 6

"""Debugger and profiler rules on real training (a 5-breed slice of real photos), not synthetic numbers."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import run_cli
from dogbreed.config import Hyperparameters, UserError
from dogbreed.debug.monitor import DebuggerConfig
from dogbreed.jobs import records
from dogbreed.train.job import TrainingJobSpec, run_training_job
from dogbreed.train.trainer import Callback

TENSOR_RULES = {"VanishingGradient", "ExplodingTensor", "LossNotDecreasing", "Overfit", "Overtraining",
                "PoorWeightInitialization", "DeadRelu", "SaturatedActivation", "WeightUpdateRatio", "ClassImbalance",
                "StalledTraining", "AllZero", "UnchangedTensor", "TensorVariance", "CheckInputImages", "Confusion"}


def _run(name, data, hp, callbacks=(), **debug):
    rec = run_training_job(TrainingJobSpec(name, str(data), hp, progress=False, track=False,
                                           debugger=DebuggerConfig(interval=1, **debug)), callbacks=list(callbacks))
    return rec, {k for k, v in rec.extra["rules"].items() if v == "IssuesFound"}


def test_sound_default_run_trips_no_tensor_rule(dogs_slice):
    rec, triggered = _run("dbg-sound", dogs_slice, Hyperparameters(epochs=10))
    assert rec.status == "Completed"
    assert not (triggered & TENSOR_RULES), triggered
    d = records.job_dir("dbg-sound") / "debug"
    for f in ("tensors.parquet", "steps.parquet", "system.parquet", "rules/ExplodingTensor.json"):
        assert (d / f).exists()
    report = json.loads((d / "rules" / "Overfit.json").read_text())
    assert set(report) >= {"RuleTriggered", "Violations", "Details", "Datapoints", "RuleParameters"}


@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
def test_learning_rate_10_trips_exploding_tensor(dogs_slice, optimizer):
    rec, triggered = _run(f"dbg-lr10-{optimizer}", dogs_slice,
                          Hyperparameters(preset="fast", epochs=5, learning_rate=10, optimizer=optimizer))
    assert "ExplodingTensor" in triggered


def test_zero_learning_rate_trips_loss_not_decreasing(dogs_slice):
    # learning_rate must be > 0 (a bad-input rule of training jobs): 1e-12 is zero for all practical purposes.
    rec, triggered = _run("dbg-lr0", dogs_slice, Hyperparameters(epochs=10, learning_rate=1e-12))
    assert "LossNotDecreasing" in triggered
    assert "ExplodingTensor" not in triggered


def test_many_epochs_on_few_photos_trip_overfit(dogs_slice):
    hp = Hyperparameters(epochs=60, imagenet_head_init=False, label_smoothing=0, learning_rate=0.05, weight_decay=0)
    rec, triggered = _run("dbg-overfit", dogs_slice, hp)
    assert {"Overfit", "Overtraining"} & triggered


class ScaleWeights(Callback):
    """A deliberately bad initialisation: every trainable weight 300 times too large."""

    def on_train_start(self, trainer):
        with torch.no_grad():
            for p in trainer.model.parameters():
                p.mul_(300.0)


def test_bad_initialisation_trips_poor_weight_initialization(dogs_slice):
    rec, triggered = _run("dbg-badinit", dogs_slice, Hyperparameters(epochs=3), [ScaleWeights()])
    assert "PoorWeightInitialization" in triggered


def test_rule_action_stops_the_job(dogs_slice):
    rec, triggered = _run("dbg-stop", dogs_slice, Hyperparameters(epochs=10, learning_rate=10),
                          rules=("ExplodingTensor:action=stop",))
    assert rec.status == "Stopped" and "stopped by rule ExplodingTensor" in rec.failure_reason
    assert len(rec.history) < 10


FINE_TUNING = Hyperparameters(train_mode="last_blocks", trainable_blocks=1, head_epochs=2, epochs=1, mini_batch_size=16,
                              learning_rate=1e-4)


def test_fine_tuning_records_activations_and_step_split(dogs_slice):
    rec, triggered = _run("dbg-ft", dogs_slice, FINE_TUNING, profile_steps="1-2")
    assert rec.status == "Completed"
    assert not (triggered & TENSOR_RULES), triggered
    import pandas as pd

    d = records.job_dir("dbg-ft") / "debug"
    t = pd.read_parquet(d / "tensors.parquet")
    assert {"activation_zero_fraction", "activation_saturated_fraction", "grad_norm", "update_ratio",
            "predicted_class_count"} <= set(t["stat"])
    steps = pd.read_parquet(d / "steps.parquet")
    assert (steps[steps.stage == "finetune"][["forward_s", "backward_s"]] > 0).all().all()
    assert (records.job_dir("dbg-ft") / "profiler" / "trace.json").stat().st_size > 1000


def test_debug_cli_reruns_rules_with_other_parameters(dogs_slice):
    if not (records.job_dir("dbg-sound") / "job.json").exists():
        _run("dbg-sound", dogs_slice, Hyperparameters(epochs=10))
    r = run_cli("debug", "dbg-sound", "--rule", "LossNotDecreasing:min_delta_percentage=99,min_t=1000", "--json")
    assert r.returncode == 0, r.stderr
    verdicts = {x["RuleName"]: x["RuleTriggered"] for x in json.loads(r.stdout)}
    assert verdicts["LossNotDecreasing"] is True and verdicts["ExplodingTensor"] is False


@pytest.mark.parametrize("args, message", [
    (["debug", "dbg-sound", "--rule", "Bogus"], "unknown rule 'Bogus'"),
    (["debug", "dbg-sound", "--rule", "Overfit:colour=red"], "unknown parameter 'colour' of rule Overfit"),
    (["report", "no-such-job"], "no job named 'no-such-job'"),
])
def test_debug_bad_input(dogs_slice, args, message):
    r = run_cli(*args)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr


def test_negative_interval_is_refused(dogs_slice):
    r = run_cli("train", "--data", str(dogs_slice), "--job-name", "never-dbg", "--debug-interval", "-1")
    assert r.returncode == 2 and "debugger interval must be a positive number" in r.stderr
    with pytest.raises(UserError, match="profiler interval"):
        DebuggerConfig(profiler_interval_ms=-5).validate()


def _open_in_chromium(path, screenshot):
    from playwright.sync_api import sync_playwright

    errors = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"])
        page = browser.new_page(viewport={"width": 1200, "height": 1600})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"file://{path}")
        widths = page.evaluate("Array.from(document.images).map(i => i.complete ? i.naturalWidth : 0)")
        page.screenshot(path=str(screenshot), full_page=True)
        browser.close()
    return errors, widths


def test_report_html_in_headless_chromium(dogs_slice, tmp_path):
    if not (records.job_dir("dbg-sound") / "job.json").exists():
        _run("dbg-sound", dogs_slice, Hyperparameters(epochs=10))
    r = run_cli("report", "dbg-sound", "--json")
    assert r.returncode == 0, r.stderr
    path = json.loads(r.stdout)["report"]
    text = open(path).read()
    assert "ExplodingTensor" in text and "Gradient norms by layer" in text and "Step time breakdown" in text
    errors, widths = _open_in_chromium(path, tmp_path / "report.png")
    assert errors == [] and len(widths) >= 4 and all(w > 100 for w in widths)
    assert (tmp_path / "report.png").stat().st_size > 20000


def _tuning_job(data):
    from dogbreed.tune.config import parse_tuning_config
    from dogbreed.tune.start import TuningJobSpec, start_tuning_job

    if not (records.job_dir("dbg-tune") / "job.json").exists():
        cfg = {"strategy": "Random", "max_jobs": 2, "static_hyperparameters": {"epochs": 3},
               "hyperparameter_ranges": {"learning_rate": {"min": 0.0001, "max": 0.01}}}
        start_tuning_job(TuningJobSpec("dbg-tune", str(data), parse_tuning_config(cfg)))


def test_tuning_report_compares_trials(dogs_slice, tmp_path):
    _tuning_job(dogs_slice)
    r = run_cli("report", "dbg-tune", "--json")
    assert r.returncode == 0, r.stderr
    path = json.loads(r.stdout)["report"]
    assert "dbg-tune-000" in open(path).read() and "dbg-tune-001" in open(path).read()
    errors, widths = _open_in_chromium(path, tmp_path / "tune.png")
    assert errors == [] and len(widths) >= 2 and all(w > 100 for w in widths)


# -- the profiler report's sections, on the jobs above (run again only when a test is picked alone) -------------

REPORT_SECTIONS = ("Job summary", "Rules", "Loss and accuracy", "Step durations", "Step time breakdown", "Data loading",
                   "System usage", "Framework metrics", "Gradient norms by layer", "Confusion matrix", "Final metrics")


def _report(name, data, hp, **debug):
    from dogbreed.debug.report import write_report

    if not (records.job_dir(name) / "job.json").exists():
        _run(name, data, hp, **debug)
    return write_report(name).read_text()


def test_report_sections_of_a_head_only_job(dogs_slice):
    text = _report("dbg-sound", dogs_slice, Hyperparameters(epochs=10))
    assert [f"<h2>{s}</h2>" in text for s in REPORT_SECTIONS] == [True] * len(REPORT_SECTIONS)
    # Where the time went: the head trains on features extracted once, then the job evaluates and saves.
    for phase in ("initialisation", "data preparation", "feature extraction", "training loop: head",
                  "evaluation: head", "finalisation"):
        assert f"<td>{phase}</td>" in text, phase
    assert "p95 ms" in text and "p99 ms" in text and "outlier limit" in text  # step durations per stage
    assert "<h3>node " in text and "CPU core 0" in text and "disk read" in text  # system usage per node
    assert "no torch.profiler trace" in text and "--profile-steps" in text
    assert 'alt="validation confusion matrix"' in text and 'alt="job phases on a timeline"' in text
    assert "CheckInputImages" in text and "not judged here:" in text


def test_report_sections_of_a_fine_tuning_job(dogs_slice):
    text = _report("dbg-ft", dogs_slice, FINE_TUNING, profile_steps="1-2")
    assert [f"<h2>{s}</h2>" in text for s in REPORT_SECTIONS] == [True] * len(REPORT_SECTIONS)
    for phase in ("training loop: head", "between stages", "training loop: finetune", "evaluation: finetune"):
        assert f"<td>{phase}</td>" in text, phase
    # torch.profiler's trace of steps 1-2 of the unfrozen stage: operators, and forward against backward.
    assert "Top operators by self time" in text and "<td>backward</td>" in text and "aten::" in text
    # Layers go by the names timm gives them, in both stages, and steps count on across the stages.
    import pandas as pd

    t = pd.read_parquet(records.job_dir("dbg-ft") / "debug" / "tensors.parquet")
    names = set(t[t.stat == "grad_norm"].name)
    assert "classifier.weight" in names and any(n.startswith("blocks.") and ".conv_pw." in n for n in names)
    assert not any(n[0].isdigit() or n.startswith("model.") for n in names), names
    steps = pd.read_parquet(records.job_dir("dbg-ft") / "debug" / "steps.parquet")
    assert steps.step.is_unique
    assert steps[steps.stage == "finetune"].step.min() > steps[steps.stage == "head"].step.max()


def test_report_of_a_tuning_job_compares_trials_step_by_step(dogs_slice):
    _tuning_job(dogs_slice)
    from dogbreed.debug.report import write_report

    text = write_report("dbg-tune").read_text()
    assert "<h2>Trials compared step by step</h2>" in text and 'alt="training loss by step, every trial"' in text
    # The two trials share seed and batches: the first loss (before any update) agrees, the second does not.
    assert "IssuesFound" in text and "first at step 2: loss" in text

"""Rules judged on real training: no false alarm on the README's main job (the default recipe)."""

from __future__ import annotations

import json

import torch

from conftest import SLICE_CLASSES, make_slice
from dogbreed.config import Hyperparameters
from dogbreed.debug.monitor import DebuggerConfig
from dogbreed.debug.rules import LossNotDecreasing
from dogbreed.debug.hooks import DebugData
from dogbreed.jobs import records
from dogbreed.train.job import TrainingJobSpec, run_training_job


def test_default_recipe_trips_no_rule(tmp_path_factory):
    # The README's main job is `dogbreed train --data ... --job-name ...` with every default (preset balanced,
    # Lite2 at 292 px): here on 4 real breeds x 12 photos, so extraction stays short.
    data = make_slice(tmp_path_factory.mktemp("dogs4"), SLICE_CLASSES[:4], 12, 6)
    rec = run_training_job(TrainingJobSpec("rules-default", str(data), Hyperparameters(), progress=False,
                                           track=False, debugger=DebuggerConfig()))
    assert rec.status == "Completed"
    triggered = {k: v for k, v in rec.extra["rules"].items() if v == "IssuesFound"}
    assert triggered == {}, triggered
    # Rules about a GPU cannot look at anything on a CPU-only machine: they say so rather than "NoIssuesFound".
    if not torch.cuda.is_available():
        gpu_rules = {"LowGPUUtilization", "BatchSize", "GPUMemoryIncrease", "CPUBottleneck"}
        assert {k: rec.extra["rules"][k] for k in gpu_rules} == dict.fromkeys(gpu_rules, "NotJudged")
        report = json.loads((records.job_dir("rules-default") / "debug" / "rules" / "BatchSize.json").read_text())
        assert report["Status"] == "NotJudged" and not report["RuleTriggered"] and "no GPU" in report["Details"]


def _steps(stage_losses):
    steps, n = [], 0
    for stage, losses in stage_losses:
        for loss in losses:
            n += 1
            steps.append({"step": n, "epoch": 1, "stage": stage, "loss": loss})
    return DebugData(steps=steps)


def test_loss_not_decreasing_judges_each_stage_apart():
    rule = LossNotDecreasing()
    rng = __import__("random").Random(0)
    # A head stage whose loss falls 1.5% against a floor (below the 2% a plain rule asks, but well above the noise),
    # then a fine-tuning stage starting higher (another loss: no augmentation-free features) and falling.
    head = [0.45 - 0.007 * i / 40 + rng.gauss(0, 0.001) for i in range(40)]
    finetune = [0.9 - 0.3 * i / 40 + rng.gauss(0, 0.01) for i in range(40)]
    violations, _, details = rule.check(_steps([("head", head), ("finetune", finetune)]))
    assert violations == 0, details
    # A stage that stays flat (noise only) is named, with its numbers.
    flat = [0.9 + rng.gauss(0, 0.01) for _ in range(40)]
    violations, datapoints, details = rule.check(_steps([("head", head), ("finetune", flat)]))
    assert violations == 1 and datapoints == 80
    assert "stage finetune NOT DECREASING" in details and "stage head:" in details

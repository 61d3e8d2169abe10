"""Rules judged on real training: each rule fires on the situation it exists for, built for real (a network pushed
into dead units, a slow batch source, a layer left out of the optimizer, ...), and the default recipe trips none.

Most situations are built in a second on tiny networks driven by dogbreed's own Trainer with the debugger's
callbacks (a DebugSession), as a training job drives them; no statistic is written by hand.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from conftest import SHARED_DOGS, SLICE_CLASSES, make_slice
from dogbreed.config import Hyperparameters
from dogbreed.debug.hooks import DebugData
from dogbreed.debug.monitor import DebuggerConfig, DebugSession
from dogbreed.debug.rules import LossNotDecreasing
from dogbreed.jobs import records
from dogbreed.train.job import TrainingJobSpec, run_training_job
from dogbreed.train.trainer import Callback, Trainer, TrainerConfig

GPU_RULES = {"LowGPUUtilization", "BatchSize", "GPUMemoryIncrease", "CPUBottleneck"}
HAS_NVML = __import__("importlib.util").util.find_spec("pynvml") is not None


def test_default_recipe_trips_no_rule(tmp_path_factory):
    # The README's main job is `dogbreed train --data ... --job-name ...` with every default (preset balanced,
    # Lite2 at 292 px): here on 4 real breeds x 12 photos, so extraction stays short.
    data = make_slice(tmp_path_factory.mktemp("dogs4"), SLICE_CLASSES[:4], 12, 6)
    rec = run_training_job(TrainingJobSpec("rules-default", str(data), Hyperparameters(), progress=False,
                                           track=False, debugger=DebuggerConfig()))
    assert rec.status == "Completed"
    triggered = {k: v for k, v in rec.extra["rules"].items() if v == "IssuesFound"}
    assert triggered == {}, triggered
    # The rules added after smdebug's judged this job too (the head trains on features, not images).
    assert {rec.extra["rules"][k] for k in ("AllZero", "UnchangedTensor", "TensorVariance")} == {"NoIssuesFound"}
    assert "Confusion" not in rec.extra["rules"]  # on request only: alike breeds are confused by nature
    assert rec.extra["rules"]["CheckInputImages"] == "NotJudged"
    # Rules about a GPU cannot look at anything on a CPU-only machine: they say so rather than "NoIssuesFound".
    if not torch.cuda.is_available():
        assert {k: rec.extra["rules"][k] for k in GPU_RULES} == dict.fromkeys(GPU_RULES, "NotJudged")
        report = json.loads((records.job_dir("rules-default") / "debug" / "rules" / "BatchSize.json").read_text())
        assert report["Status"] == "NotJudged" and not report["RuleTriggered"] and "no GPU" in report["Details"]


def _steps(stage_losses, finished=True, steps_per_epoch=20):
    steps, n = [], 0
    for stage, losses in stage_losses:
        for i, loss in enumerate(losses):
            n += 1
            steps.append({"step": n, "epoch": 1 + i // steps_per_epoch, "stage": stage, "loss": loss})
    return DebugData(steps=steps, meta={"job_end": 1.0} if finished else {})


def test_loss_not_decreasing_judges_each_stage_apart():
    rule = LossNotDecreasing()
    rng = __import__("random").Random(0)
    # A head stage whose loss falls 1.5% against a floor (below the 2% a plain rule asks, but well above the noise),
    # then a fine-tuning stage starting higher (another loss: no augmentation-free features) and falling.
    head = [0.45 - 0.007 * i / 40 + rng.gauss(0, 0.001) for i in range(40)]
    finetune = [0.9 - 0.3 * i / 40 + rng.gauss(0, 0.01) for i in range(40)]
    found = rule.check(_steps([("head", head), ("finetune", finetune)]))
    assert found.violations == 0, found.details
    # A stage that stays flat (noise only) is named, with its numbers and the steps of the windows compared.
    flat = [0.9 + rng.gauss(0, 0.01) for _ in range(40)]
    found = rule.check(_steps([("head", head), ("finetune", flat)]))
    assert found.violations == 1 and found.datapoints == 80
    assert "stage finetune NOT DECREASING" in found.details and "stage head:" in found.details
    assert min(found.steps) == 41 and max(found.steps) == 80
    # While a stage runs, its first epochs are not judged: the README's main job (a head starting at ImageNet's
    # rows, its loss near the floor) once warned "triggered at epoch 1" and then trained to 87.5%.
    found = rule.check(_steps([("head", head), ("finetune", flat)], finished=False))
    assert found.violations == 0 and "stage finetune: 2 epoch(s) so far" in found.details
    # From its third epoch on, a running stage is named when its loss has not fallen at all; a slow fall passes
    # until the stage is over (then the stricter test above applies).
    rising = [0.9 + 0.002 * i / 60 + rng.gauss(0, 0.0005) for i in range(60)]
    found = rule.check(_steps([("head", head), ("finetune", rising)], finished=False))
    assert found.violations == 1 and "stage finetune NOT DECREASING" in found.details
    slow = [0.9 - 0.004 * i / 60 + rng.gauss(0, 0.002) for i in range(60)]
    assert rule.check(_steps([("head", head), ("finetune", slow)], finished=False)).violations == 0


# -- real situations on tiny networks ---------------------------------------------------------------------------


@dataclass
class Batches:
    """A batch source over tensors, in a fixed order. `delay_s`: a sleep before each batch (a slow disk);
    `stall_at` = (i, seconds): a sleep before the i-th batch of each epoch (a hung reader); `prep_work`: matrix
    products on the CPU for each batch (heavy decoding)."""
    x: torch.Tensor
    labels: torch.Tensor
    batch_size: int = 16
    delay_s: float = 0.0
    stall_at: tuple[int, float] | None = None
    prep_work: int = 0

    def __len__(self) -> int:
        return -(-len(self.labels) // self.batch_size)

    def batches(self, epoch: int = 0):
        for i, start in enumerate(range(0, len(self.labels), self.batch_size)):
            if self.delay_s:
                time.sleep(self.delay_s)
            if self.stall_at and i == self.stall_at[0]:
                time.sleep(self.stall_at[1])
            if self.prep_work:
                a = torch.randn(self.prep_work, self.prep_work)
                for _ in range(4):
                    a = (a @ a).tanh_()
            yield self.x[start:start + self.batch_size], self.labels[start:start + self.batch_size]


def blobs(n_per_class=(40, 40, 40, 40), dim: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Points around one centre per class (the same centres whatever the seed, which draws the points), shuffled:
    a task a small network learns in a few epochs."""
    centres = torch.randn(len(n_per_class), dim, generator=torch.Generator().manual_seed(1234)) * 3
    g = torch.Generator().manual_seed(seed)
    y = torch.cat([torch.full((n,), c) for c, n in enumerate(n_per_class)])
    x = centres[y] + torch.randn(len(y), dim, generator=g)
    order = torch.randperm(len(y), generator=g)
    return x[order], y[order]


def mlp(dim: int = 16, hidden: int = 32, classes: int = 4, act: type[nn.Module] = nn.ReLU, depth: int = 2,
        bias: bool = True) -> nn.Sequential:
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for i in range(depth):
        layers += [nn.Linear(dim if i == 0 else hidden, hidden, bias=bias), act()]
    return nn.Sequential(*layers, nn.Linear(hidden, classes, bias=bias))


def debug_run(tmp_path: Path, model: nn.Module, train: Batches, valid: Batches | None = None, *, epochs: int = 3,
              lr: float = 0.05, params=None, rules: tuple[str, ...] = (), callbacks=(), before_training=None,
              device: str = "cpu", interval: int = 1):
    """Trains `model` with the Trainer and the debugger attached as a job attaches them; returns the verdicts.
    One thread: on a busy machine a thread pool waiting for its threads makes a tiny network's step 100 times
    slower, at random, which would blur the timings the profiler rules judge."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        # Confusion runs on request only (--rule Confusion): the situations here judge it too
        asked = rules if any(r.startswith("Confusion") for r in rules) else ("Confusion", *rules)
        session = DebugSession(DebuggerConfig(interval=interval, rules=asked, profiler_interval_ms=50), tmp_path)
        session.start()
        if before_training:
            before_training()
        opt = torch.optim.SGD(model.parameters() if params is None else params, lr=lr)
        trainer = Trainer(model, train, valid, opt, TrainerConfig(epochs=epochs, device=device),
                          callbacks=[*session.callbacks("train"), *callbacks])
        trainer.fit()
        return {r.rule: r for r in session.finish()}
    finally:
        torch.set_num_threads(threads)


def fired(results) -> set[str]:
    return {name for name, r in results.items() if r.triggered}


@pytest.fixture(scope="module")
def blob_data():
    x, y = blobs()
    vx, vy = blobs(seed=1)
    return Batches(x, y), Batches(vx, vy, 64)


# The rules the situations below trip: each judges the healthy baseline and finds nothing.
SITUATION_RULES = {"AllZero", "UnchangedTensor", "TensorVariance", "Confusion", "VanishingGradient", "DeadRelu",
                   "SaturatedActivation", "WeightUpdateRatio", "ClassImbalance", "StalledTraining", "IOBottleneck",
                   "StepOutlier", "MaxInitializationTime", "ExplodingTensor", "LossNotDecreasing",
                   "PoorWeightInitialization"}


def test_healthy_tiny_network_trips_no_rule(tmp_path, blob_data):
    # The baseline every situation below departs from: the same network and data, sound settings.
    results = debug_run(tmp_path, mlp(), *blob_data, epochs=4, lr=0.1)
    assert not fired(results), {n: results[n].details for n in fired(results)}
    assert {results[n].status for n in SITUATION_RULES} == {"NoIssuesFound"}
    assert results["CheckInputImages"].status == "NotJudged"  # no image reached this network


def test_tiny_initial_weights_trip_vanishing_gradient(tmp_path, blob_data):
    # Weights 1000 times too small in a deep tanh network without biases: signal and gradients die out.
    model = mlp(act=nn.Tanh, depth=4, bias=False)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1e-3)
    results = debug_run(tmp_path, model, *blob_data, epochs=2)
    assert "VanishingGradient" in fired(results), results["VanishingGradient"].details
    assert results["VanishingGradient"].steps[:3] == [1, 2, 3]


def test_large_negative_bias_trips_dead_relu(tmp_path, blob_data):
    model = mlp()
    with torch.no_grad():
        model[0].bias.fill_(-100.0)  # every unit of the first layer below zero for every input
        model[2].bias.fill_(-100.0)
    results = debug_run(tmp_path, model, *blob_data, epochs=2)
    assert "DeadRelu" in fired(results)
    assert "2 of 2 activation layers" in results["DeadRelu"].details


def test_large_weights_trip_saturated_activation(tmp_path, blob_data):
    model = mlp(act=nn.Tanh)
    with torch.no_grad():
        model[0].weight.mul_(50.0)
        model[2].weight.mul_(50.0)
    results = debug_run(tmp_path, model, *blob_data, epochs=2)
    assert "SaturatedActivation" in fired(results), results["SaturatedActivation"].details


def test_tiny_learning_rate_trips_weight_update_ratio_and_unchanged_tensor(tmp_path, blob_data):
    results = debug_run(tmp_path, mlp(), *blob_data, epochs=2, lr=1e-12)
    assert {"WeightUpdateRatio", "UnchangedTensor"} <= fired(results)
    assert "below 1e-08" in results["WeightUpdateRatio"].details


def test_layer_left_out_of_the_optimizer_trips_unchanged_tensor(tmp_path, blob_data):
    # The first layer still requires (and gets) gradients, but only the last layer is given to the optimizer.
    model = mlp()
    results = debug_run(tmp_path, model, *blob_data, epochs=2, params=model[4].parameters(), lr=0.1)
    assert "UnchangedTensor" in fired(results)
    details = results["UnchangedTensor"].details
    assert "0.weight" in details and "2.bias" in details and "4.weight" not in details


def test_zero_initialised_layer_trips_all_zero(tmp_path, blob_data):
    # A layer initialised to zeros behind a ReLU: its output is 0, ReLU passes no gradient, it stays zero.
    model = mlp(depth=1)
    with torch.no_grad():
        model[0].weight.zero_()
        model[0].bias.zero_()
    results = debug_run(tmp_path, model, *blob_data, epochs=2)
    assert "AllZero" in fired(results)
    assert "0.weight (weight)" in results["AllZero"].details and "0.weight (grad)" in results["AllZero"].details
    # The next layer's weights are not zero, but get no gradient either: their input is all zeros.
    assert "2.weight (grad)" in results["AllZero"].details and "2.weight (weight)" not in results["AllZero"].details


@pytest.mark.parametrize("scale, words", [(1e3, "above 1e+06"), (1e-7, "below 1e-12")])
def test_exploded_or_collapsed_variance_trips_tensor_variance(tmp_path, blob_data, scale, words):
    model = mlp()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(scale)
    results = debug_run(tmp_path, model, *blob_data, epochs=1, lr=1e-9)
    assert "TensorVariance" in fired(results), results["TensorVariance"].details
    assert words in results["TensorVariance"].details


def test_ten_to_one_labels_trip_class_imbalance(tmp_path):
    x, y = blobs((110, 10, 10))
    results = debug_run(tmp_path, mlp(classes=3), Batches(x, y), epochs=1)
    assert "ClassImbalance" in fired(results)
    assert "11.0x" in results["ClassImbalance"].details


def test_mislabelled_class_trips_confusion(tmp_path):
    # Class 2's training examples carry class 1's label (two folders merged): on validation, with the true
    # labels, class 2 is predicted as class 1. With the right labels the same network confuses nothing.
    x, y = blobs((40, 40, 40))
    vx, vy = blobs((20, 20, 20), seed=1)
    wrong = torch.where(y == 2, torch.tensor(1), y)
    results = debug_run(tmp_path / "wrong", mlp(classes=3), Batches(x, wrong), Batches(vx, vy, 64), lr=0.1)
    assert "Confusion" in fired(results)
    assert "2: 20 of 20 predicted as 1" in results["Confusion"].details and results["Confusion"].epochs == [3]
    right = debug_run(tmp_path / "right", mlp(classes=3), Batches(x, y), Batches(vx, vy, 64), lr=0.1)
    assert right["Confusion"].status == "NoIssuesFound", right["Confusion"].details


def test_hung_batch_source_trips_stalled_training(tmp_path, blob_data):
    train, valid = blob_data
    hung = Batches(train.x, train.labels, stall_at=(3, 1.5))
    results = debug_run(tmp_path, mlp(), hung, valid, epochs=1, interval=10,
                        rules=("StalledTraining:threshold_seconds=1",))
    assert "StalledTraining" in fired(results)
    assert results["StalledTraining"].steps == [4]


def test_slow_batch_source_trips_io_bottleneck(tmp_path, blob_data):
    train, valid = blob_data
    # 100 ms to read each batch, a few ms to train on it: the steps wait for data most of their time.
    results = debug_run(tmp_path, mlp(), Batches(train.x, train.labels, delay_s=0.1), valid, epochs=1, interval=10)
    assert "IOBottleneck" in fired(results), results["IOBottleneck"].details
    assert len(results["IOBottleneck"].steps) >= 5  # the steps that waited more than they computed


class SlowForward(nn.Module):
    """Forward of 20 ms, and of a second every `every`-th training call (a periodic stall: a checkpoint, a GC).
    The contrast is wide so that a busy machine's jitter does not hide the stalls."""

    def __init__(self, every: int):
        super().__init__()
        self.every, self.calls = every, 0

    def forward(self, x):
        if self.training:
            self.calls += 1
            time.sleep(1.0 if self.calls % self.every == 0 else 0.02)
        return x


def test_much_slower_steps_trip_step_outlier(tmp_path, blob_data):
    train, valid = blob_data
    model = nn.Sequential(SlowForward(every=16), mlp())
    results = debug_run(tmp_path, model, Batches(train.x, train.labels, batch_size=5), valid, epochs=1, interval=10)
    assert "StepOutlier" in fired(results), results["StepOutlier"].details
    assert results["StepOutlier"].steps == [16, 32]


def test_long_initialisation_trips_max_initialization_time(tmp_path, blob_data):
    # 1.5 s between the job's start and its first step, against a threshold of 1.2 s (the default is 20 minutes).
    results = debug_run(tmp_path, mlp(), *blob_data, epochs=1, before_training=lambda: time.sleep(1.5),
                        rules=("MaxInitializationTime:threshold_minutes=0.02",))
    assert "MaxInitializationTime" in fired(results)
    assert "(threshold 0.02 min)" in results["MaxInitializationTime"].details


def test_gpu_rules_on_cpu_heavy_data_preparation(tmp_path, blob_data):
    # Decoding-like CPU work on every batch keeps the CPU busy. Without a GPU nothing waits for it: CPUBottleneck
    # and the GPU rules say NotJudged (in the verdict and its JSON report), never NoIssuesFound.
    train, valid = blob_data
    heavy = Batches(train.x, train.labels, prep_work=400)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    results = debug_run(tmp_path, mlp(), heavy, valid, epochs=2, device=device)
    if device == "cpu":
        assert {n: results[n].status for n in GPU_RULES} == dict.fromkeys(GPU_RULES, "NotJudged")
        assert "CPU at or over 90%" in results["CPUBottleneck"].details
        saved = json.loads((tmp_path / "debug" / "rules" / "LowGPUUtilization.json").read_text())
        assert saved["Status"] == "NotJudged" and not saved["RuleTriggered"]
    else:  # the GPU idles while the CPU prepares batches
        assert results["CPUBottleneck"].status != "NotJudged"
        assert results["BatchSize"].status == ("IssuesFound" if HAS_NVML else "NotJudged"), results["BatchSize"].details


class LeakGPUMemory(Callback):
    """Keeps 8 MB of GPU memory per step, as code that holds on to tensors does."""

    def __init__(self):
        self.kept = []

    def on_step_end(self, trainer, step):
        self.kept.append(torch.ones(2 * 2**20, device="cuda"))
        time.sleep(0.02)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_gpu_memory_leak_and_idle_gpu_trip_gpu_rules(tmp_path, blob_data):
    train, valid = blob_data
    slow = Batches(train.x, train.labels, delay_s=0.05)
    results = debug_run(tmp_path, mlp(), slow, valid, epochs=3, device="cuda", callbacks=[LeakGPUMemory()])
    assert "GPUMemoryIncrease" in fired(results), results["GPUMemoryIncrease"].details
    # Utilisation needs pynvml: without it, the rules that judge it say so.
    expected = "IssuesFound" if HAS_NVML else "NotJudged"
    assert {n: results[n].status for n in ("LowGPUUtilization", "BatchSize")} == dict.fromkeys(
        ("LowGPUUtilization", "BatchSize"), expected)


# -- input images: a few real photos -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def photos():
    """48 real photos of 4 breeds at 32 x 32, as uint8 N x 3 x H x W, with their labels."""
    images, labels = [], []
    for c, breed in enumerate(SLICE_CLASSES[:4]):
        for f in sorted((SHARED_DOGS / "train" / breed).iterdir())[:12]:
            im = Image.open(f).convert("RGB").resize((32, 32))
            images.append(torch.from_numpy(np.array(im)).permute(2, 0, 1))
            labels.append(c)
    return torch.stack(images), torch.tensor(labels)


def tiny_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))


NORMALISATIONS = {"imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),  # most timm backbones
                  "lite": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))}  # EfficientNet-Lite, the presets' backbones


@pytest.mark.parametrize("scaling, sign", [("0-255", "mean"), ("0-1", "not centred"), ("imagenet", None),
                                           ("lite", None)])
def test_unnormalised_photos_trip_check_input_images(tmp_path, photos, scaling, sign):
    images, labels = photos
    x = images.float()
    if scaling != "0-255":
        x = x / 255
    if scaling in NORMALISATIONS:  # as the backbones expect
        mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in NORMALISATIONS[scaling])
        x = (x - mean) / std
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    # 11 epochs of 48 photos: the 500 images smdebug's rule wants before it judges.
    results = debug_run(tmp_path, tiny_cnn(), Batches(x[order], labels[order]), epochs=11, lr=1e-4)
    verdict = results["CheckInputImages"]
    assert verdict.datapoints == 528
    assert verdict.triggered == (sign is not None), verdict.details
    assert sign is None or sign in verdict.details.split(":")[0]


# -- across runs ---------------------------------------------------------------------------------------------------


def test_similar_across_runs_compares_two_trials(tmp_path, blob_data):
    # Two trials with the same seed and data order: a rerun of the same settings agrees at every recorded step;
    # another learning rate parts at the second step (the first loss is computed before any update).
    debug_run(tmp_path / "base", mlp(), *blob_data, epochs=1, lr=0.1)
    other = tmp_path / "base" / "debug"
    same = debug_run(tmp_path / "same", mlp(), *blob_data, epochs=1, lr=0.1,
                     rules=(f"SimilarAcrossRuns:other_trial={other}",))
    assert same["SimilarAcrossRuns"].status == "NoIssuesFound", same["SimilarAcrossRuns"].details
    changed = debug_run(tmp_path / "changed", mlp(), *blob_data, epochs=1, lr=0.3,
                        rules=(f"SimilarAcrossRuns:other_trial={other},collection_names=losses",))
    verdict = changed["SimilarAcrossRuns"]
    assert verdict.triggered and verdict.steps[0] == 2 and "first at step 2: loss" in verdict.details
    # Without another trial it cannot judge, and it is not among the rules every job runs.
    assert "SimilarAcrossRuns" not in same or same["SimilarAcrossRuns"].parameters["other_trial"]
    alone = debug_run(tmp_path / "alone", mlp(), *blob_data, epochs=1)
    assert "SimilarAcrossRuns" not in alone

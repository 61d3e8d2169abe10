"""Debugger rules: what the recorded tensors, losses, epochs and classes say about training (smdebug's
debugger rules)."""

from __future__ import annotations

import math
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from statistics import mean, pstdev
from typing import Any, ClassVar

from dogbreed.config import UserError
from dogbreed.debug.hooks import DebugData
from dogbreed.debug.rule_base import CannotJudge, Finding, Rule


def _stat(data: DebugData, stat: str) -> list[dict[str, Any]]:
    return [r for r in data.tensors if r["stat"] == stat]


def _layer_share_finding(data: DebugData, stat: str, threshold: float, max_layer_fraction: float, layer_kind: str,
                         condition: str) -> Finding:
    """A verdict on the share of layers whose `stat` is at or over `threshold` at the last step that recorded it:
    a violation when more than `max_layer_fraction` of them are."""
    rows = _stat(data, stat)
    step = max((r["step"] for r in rows), default=None)
    layers = {r["name"]: r["value"] for r in rows if r["step"] == step}
    if not layers:
        return Finding(0, 0, f"no {layer_kind} layers recorded", ())
    over = sorted(n for n, v in layers.items() if v >= threshold)
    bad = len(over) / len(layers) > max_layer_fraction
    return Finding(len(over) if bad else 0, len(layers),
                   f"{len(over)} of {len(layers)} {layer_kind} layers {condition} for >= {threshold:.0%} of units at "
                   f"step {step}" + (f" ({', '.join(over[:5])})" if over else ""), (step,))


def _examples(rows: list[dict[str, Any]], n: int = 3) -> str:
    return (" (e.g. " + ", ".join(f"{r['name']} at step {r['step']}: {r['value']:.3g}" for r in rows[:n]) + ")"
            if rows else "")



COLLECTIONS = {"weights": "weight", "gradients": "grad", "activations": "activation"}


@dataclass
class _TensorSelection:
    """smdebug's way of choosing tensors: collections (weights, gradients, activations) and a regex on names."""
    collection_names: str = "weights,gradients"
    tensor_regex: str = ""

    def rows(self, data: DebugData, stat: str) -> list[dict[str, Any]]:
        """Recorded rows of `<collection>_<stat>` for the chosen tensors, skipping each stage's first recorded step
        (weights before any update: a zero-initialised bias is no fault)."""
        prefixes = []
        for c in filter(None, (c.strip() for c in self.collection_names.split(","))):
            if c not in COLLECTIONS:
                raise UserError(f"unknown collection {c!r} (known: {', '.join(COLLECTIONS)})")
            prefixes.append(f"{COLLECTIONS[c]}_{stat}")
        pattern = re.compile(self.tensor_regex) if self.tensor_regex else None
        first = {}
        for r in data.tensors:
            first[r["stage"]] = min(first.get(r["stage"], r["step"]), r["step"])
        return [r for r in data.tensors if r["stat"] in prefixes and r["step"] > first[r["stage"]]
                and (pattern is None or pattern.search(r["name"]))]


@dataclass
class VanishingGradient(Rule):
    name: ClassVar[str] = "VanishingGradient"
    recommendation: ClassVar[str] = ("Gradients have all but vanished: raise the learning rate, use an optimizer "
                                     "with adaptive steps (adam), check the loss is connected to the parameters.")
    threshold: float = 1e-7
    min_fraction_of_steps: float = 0.5

    def check(self, data: DebugData) -> Finding:
        by_step: dict[int, list[float]] = defaultdict(list)
        for r in _stat(data, "grad_mean_abs"):
            by_step[r["step"]].append(r["value"])
        vanished = [s for s, vals in by_step.items() if max(vals) < self.threshold]
        bad = len(by_step) and len(vanished) / len(by_step) >= self.min_fraction_of_steps
        return Finding(len(vanished) if bad else 0, len(by_step),
                       f"{len(vanished)} of {len(by_step)} recorded steps had every layer's mean |gradient| below "
                       f"{self.threshold:g}", tuple(vanished))


@dataclass
class ExplodingTensor(Rule):
    """NaN or Inf in the loss, weights or gradients, as smdebug's rule; and, since float32 rarely overflows within a
    short run, a loss or gradient norm grown `max_growth`-fold over its first recorded value (0 turns that off)."""
    name: ClassVar[str] = "ExplodingTensor"
    recommendation: ClassVar[str] = ("Values exploded (NaN, Inf, or a loss/gradients grown by orders of magnitude): "
                                     "lower the learning rate, clip gradients, or train in float32.")
    only_nan: bool = False
    max_growth: float = 100.0

    def check(self, data: DebugData) -> Finding:
        bad_loss = [s["step"] for s in data.steps if
                    (math.isnan(s["loss"]) if self.only_nan else not math.isfinite(s["loss"]))]
        bad_tensors = [r for r in data.tensors if r["stat"] in ("grad_nonfinite", "weight_nonfinite") and r["value"]]
        notes = [f"non-finite loss at {len(bad_loss)} step(s), non-finite weights or gradients in "
                 f"{len(bad_tensors)} record(s)"]
        grown = 0
        where = bad_loss + [r["step"] for r in bad_tensors]
        if self.max_growth:
            finite = [s for s in data.steps if math.isfinite(s["loss"])]
            if finite and finite[0]["loss"] > 0:
                peak = max(finite, key=lambda s: s["loss"])
                if peak["loss"] > self.max_growth * finite[0]["loss"]:
                    grown += 1
                    where.append(peak["step"])
                    notes.append(f"loss grew from {finite[0]['loss']:.3g} to {peak['loss']:.3g} (step {peak['step']})")
            first: dict[str, float] = {}
            worst = (1.0, "", 0)
            for r in _stat(data, "grad_norm"):
                f = first.setdefault(r["name"], r["value"])
                if f > 0 and math.isfinite(r["value"]) and r["value"] / f > worst[0]:
                    worst = (r["value"] / f, r["name"], r["step"])
            if worst[0] > self.max_growth:
                grown += 1
                where.append(worst[2])
                notes.append(f"gradient norm of {worst[1]} grew {worst[0]:.0f}-fold (step {worst[2]})")
        n = len(bad_loss) + len(bad_tensors) + grown
        return Finding(n, len(data.steps) + len(data.tensors), "; ".join(notes), tuple(where))


@dataclass
class LossNotDecreasing(Rule):
    """Judges each stage apart (head training and fine-tuning optimise different losses) on the loss the optimiser
    sees, comparing the mean of its first and last `window_fraction` of steps (at least `window` steps each).

    The head's loss has a floor (label smoothing, the anchor term), so a sound stage can fall by only a few percent:
    a stage passes when its loss fell by `min_delta_percentage`, or fell by more than `min_t` standard errors of the
    step-to-step noise (a real decrease, however small against the floor).

    While a stage is still running it is only flagged when its loss has not fallen at all: a head that starts at
    ImageNet's rows falls by a fraction of a percent an epoch, which takes the whole stage to tell from the noise
    (the 120-breed main job: 0.5% and 0.7 standard errors after 3 epochs, 3.8% and 8.8 at the end)."""
    name: ClassVar[str] = "LossNotDecreasing"
    recommendation: ClassVar[str] = ("The training loss is not going down: check the learning rate is above zero "
                                     "and not too small, that labels match images, and that layers are trainable.")
    window: int = 5
    window_fraction: float = 0.25
    min_delta_percentage: float = 2.0
    min_t: float = 3.0
    min_steps: int = 10
    min_epochs: int = 3  # while a stage runs, it is judged from its third epoch on

    def check(self, data: DebugData) -> Finding:
        by_stage: dict[str, list[float]] = defaultdict(list)
        steps_of: dict[str, list[int]] = defaultdict(list)
        epochs_of: dict[str, set[int]] = defaultdict(set)
        for s in data.steps:
            if math.isfinite(s["loss"]):
                by_stage[s.get("stage") or "train"].append(s["loss"])
                steps_of[s.get("stage") or "train"].append(s["step"])
                epochs_of[s.get("stage") or "train"].add(s.get("epoch", 0))
        running = None if "job_end" in data.meta else (data.steps[-1].get("stage") or "train") if data.steps else None
        notes, violations, judged, where = [], 0, 0, []
        for stage, losses in by_stage.items():
            in_progress = stage == running
            if in_progress and len(epochs_of[stage]) < self.min_epochs:
                notes.append(f"stage {stage}: {len(epochs_of[stage])} epoch(s) so far, judged from epoch "
                             f"{self.min_epochs} on")
                continue
            w = max(self.window, int(len(losses) * self.window_fraction))
            if len(losses) < max(self.min_steps, 2 * w):
                notes.append(f"stage {stage}: only {len(losses)} steps, too few to judge")
                continue
            judged += len(losses)
            head, tail = losses[:w], losses[-w:]
            first, last = mean(head), mean(tail)
            drop = (first - last) / abs(first) * 100 if first else 0.0
            se = math.sqrt((pstdev(head) ** 2 + pstdev(tail) ** 2) / w)
            t = (first - last) / se if se > 0 else (math.inf if first > last else 0.0)
            bad = drop <= 0 if in_progress else drop < self.min_delta_percentage and t < self.min_t
            violations += bad
            if bad:  # the two windows compared
                where += steps_of[stage][:w] + steps_of[stage][-w:]
            needs = ("while it runs, needs any fall" if in_progress else
                     f"needs {self.min_delta_percentage}% or {self.min_t} standard errors")
            notes.append(f"stage {stage}{' NOT DECREASING' if bad else ''}: mean loss of its first {w} steps "
                         f"{first:.4f}, of its last {w} {last:.4f}, {drop:.1f}% lower and {t:.1f} standard errors "
                         f"({needs})")
        return Finding(violations, judged, "; ".join(notes) or "no steps recorded", tuple(where))


def _epoch_losses(data: DebugData) -> list[tuple[int, float, float]]:
    return [(int(e["epoch"]), e["train:loss"], e["validation:loss"]) for e in data.epochs
            if "train:loss" in e and "validation:loss" in e]


@dataclass
class Overfit(Rule):
    name: ClassVar[str] = "Overfit"
    recommendation: ClassVar[str] = ("Validation loss is far above training loss and the gap keeps growing: add data "
                                     "or augmentation (augmentation_type=crop_color), label smoothing, weight decay, "
                                     "or stop earlier (early_stopping=true).")
    ratio_threshold: float = 1.0
    patience: int = 3
    start_epoch: int = 2

    def check(self, data: DebugData) -> Finding:
        rows = [r for r in _epoch_losses(data) if r[0] >= self.start_epoch]
        run, worst, violations, epochs = 0, 0.0, 0, []
        prev_gap = None
        for epoch, train, val in rows:
            gap = (val - train) / max(train, 1e-12)
            growing = prev_gap is None or gap >= prev_gap
            run = run + 1 if gap > self.ratio_threshold and growing else 0
            if run >= self.patience:
                violations += 1
                epochs.append(epoch)
            worst, prev_gap = max(worst, gap), gap
        return Finding(violations, len(rows),
                       f"largest (validation - training) / training loss ratio {worst:.2f} (threshold "
                       f"{self.ratio_threshold}, for {self.patience} epochs in a row while growing)",
                       epochs=tuple(epochs))


@dataclass
class Overtraining(Rule):
    name: ClassVar[str] = "Overtraining"
    recommendation: ClassVar[str] = ("Validation loss has risen well above its best while training loss still falls: "
                                     "fewer epochs or early_stopping=true would give a better model sooner.")
    patience: int = 5
    min_rise: float = 0.05  # absolute rise of validation loss above its best that counts
    min_rise_fraction: float = 0.25  # and relative rise

    def check(self, data: DebugData) -> Finding:
        rows = _epoch_losses(data)
        best, best_at, violations, worst, epochs = math.inf, None, 0, 0.0, []
        for i, (epoch, train, val) in enumerate(rows):
            if val < best:
                best, best_at = val, i
                continue
            rise = val - best
            worst = max(worst, rise)
            risen = rise > self.min_rise and rise > self.min_rise_fraction * best
            if risen and i - best_at >= self.patience and train < rows[best_at][1]:
                violations += 1
                epochs.append(epoch)
        return Finding(violations, len(rows),
                f"best validation loss {best:.4f} at epoch {rows[best_at][0] if best_at is not None else '-'}, "
                f"largest rise above it {worst:.4f}; {violations} epoch(s) at least {self.patience} past the best, "
                f"risen by over {self.min_rise} and {self.min_rise_fraction:.0%}, with training loss still lower",
                epochs=tuple(epochs))


@dataclass
class PoorWeightInitialization(Rule):
    name: ClassVar[str] = "PoorWeightInitialization"
    recommendation: ClassVar[str] = ("The network started badly: an initial loss far above chance level, or "
                                     "activations whose scale differs wildly between layers. Use pretrained "
                                     "weights or a standard initialisation (He/Xavier).")
    loss_factor: float = 3.0
    activation_std_ratio: float = 1000.0

    def check(self, data: DebugData) -> Finding:
        n_classes = int(data.meta.get("num_classes") or 0)
        first_stage = data.steps[0]["stage"] if data.steps else None
        losses = [s["loss"] for s in data.steps if s["stage"] == first_stage][:1]  # before any update
        violations, notes = 0, []
        if losses and n_classes > 1:
            chance = math.log(n_classes)
            initial = mean(losses) if all(math.isfinite(v) for v in losses) else math.inf
            if initial > self.loss_factor * chance:
                violations += 1
            notes.append(f"initial loss {initial:.3f} vs chance level ln({n_classes}) = {chance:.3f}")
        first_step = min((r["step"] for r in _stat(data, "activation_std")), default=None)
        stds = [r["value"] for r in _stat(data, "activation_std") if r["step"] == first_step]
        if len(stds) >= 2:
            lo, hi = min(stds), max(stds)
            ratio = hi / lo if lo > 0 else math.inf
            if ratio > self.activation_std_ratio:
                violations += 1
            notes.append(f"activation std spread across layers {ratio:.3g}")
        first = [data.steps[0]["step"]] if data.steps else []
        return Finding(violations, len(losses) + len(stds), "; ".join(notes) or "no data from the first steps",
                       tuple(first + ([first_step] if first_step is not None else [])))


@dataclass
class DeadRelu(Rule):
    name: ClassVar[str] = "DeadRelu"
    recommendation: ClassVar[str] = ("Many ReLU units output only zeros: lower the learning rate, check the "
                                     "initialisation, or use LeakyReLU/SiLU.")
    threshold: float = 0.95  # zero fraction that makes a layer dead
    max_dead_layer_fraction: float = 0.25

    def check(self, data: DebugData) -> Finding:
        return _layer_share_finding(data, "activation_zero_fraction", self.threshold, self.max_dead_layer_fraction,
                                    "activation", "output zeros")


@dataclass
class SaturatedActivation(Rule):
    name: ClassVar[str] = "SaturatedActivation"
    recommendation: ClassVar[str] = ("tanh/sigmoid/ReLU6 units sit at their limits, where gradients vanish: lower "
                                     "the learning rate or normalise inputs.")
    threshold: float = 0.5
    max_saturated_layer_fraction: float = 0.25

    def check(self, data: DebugData) -> Finding:
        return _layer_share_finding(data, "activation_saturated_fraction", self.threshold,
                                    self.max_saturated_layer_fraction, "saturating activation", "sit at a limit")


@dataclass
class WeightUpdateRatio(Rule):
    name: ClassVar[str] = "WeightUpdateRatio"
    recommendation: ClassVar[str] = ("Updates are far too large (or zero) relative to the weights: adjust the "
                                     "learning rate; about 1e-3 per step is typical.")
    large_threshold: float = 10.0
    small_threshold: float = 1e-8
    min_step: int = 2

    def check(self, data: DebugData) -> Finding:
        rows = [r for r in _stat(data, "update_ratio") if r["step"] >= self.min_step]
        large = [r for r in rows if r["value"] > self.large_threshold]
        small = [r for r in rows if r["value"] < self.small_threshold]
        return Finding(len(large) + len(small), len(rows),
                       f"{len(large)} update/weight ratio(s) above {self.large_threshold:g}, {len(small)} below "
                       f"{self.small_threshold:g}" + _examples(large + small), tuple(r["step"] for r in large + small))


@dataclass
class ClassImbalance(Rule):
    name: ClassVar[str] = "ClassImbalance"
    recommendation: ClassVar[str] = ("Some classes have far more training images than others, or the model predicts "
                                     "one class for almost everything: collect more images of the rare classes, or "
                                     "reweight the loss.")
    threshold_imbalance: float = 10.0
    max_single_class_prediction_fraction: float = 0.9

    def check(self, data: DebugData) -> Finding:
        counts = [c for c in (data.meta.get("label_counts") or {}).values() if c]
        notes, violations = [], 0
        if counts:
            ratio = max(counts) / min(counts)
            notes.append(f"largest/smallest class {ratio:.1f}x")
            violations += ratio > self.threshold_imbalance
        preds: dict[int, dict[str, float]] = defaultdict(dict)
        for r in _stat(data, "predicted_class_count"):
            preds[r["step"]][r["name"]] = r["value"]
        where = []
        if preds and len(counts) > 1:
            last = preds[max(preds)]
            frac = max(last.values()) / sum(last.values())
            notes.append(f"most predicted class takes {frac:.0%} of the last recorded batch (step {max(preds)})")
            one_class = frac > self.max_single_class_prediction_fraction and len(last) == 1 and sum(last.values()) > 8
            violations += one_class
            where += [max(preds)] if one_class else []
        return Finding(int(violations), len(counts) + len(preds), "; ".join(notes) or "no label counts recorded",
                       tuple(where))


@dataclass
class StalledTraining(Rule):
    name: ClassVar[str] = "StalledTraining"
    recommendation: ClassVar[str] = "No step finished for a long time: look for a hung data loader or a deadlock."
    threshold_seconds: float = 1800.0

    def check(self, data: DebugData) -> Finding:
        times = [s["time"] for s in data.steps]
        gaps = [b - a for a, b in zip(times, times[1:])]
        worst = max(gaps, default=0.0)
        stalled = [data.steps[i + 1]["step"] for i, g in enumerate(gaps) if g > self.threshold_seconds]
        return Finding(len(stalled), len(times),
                       f"longest time between two steps {worst:.1f} s (threshold {self.threshold_seconds:g} s)"
                       + (f"; steps that came late: {', '.join(map(str, stalled[:10]))}" if stalled else ""),
                       tuple(stalled))


@dataclass
class AllZero(_TensorSelection, Rule):
    """smdebug's AllZero: tensors whose values are (almost) all zero, e.g. a layer initialised to zeros behind a
    ReLU, which then never receives a gradient. Judged after the first update of each stage."""
    name: ClassVar[str] = "AllZero"
    recommendation: ClassVar[str] = ("A tensor is all zeros: initialise the layer randomly (He/Xavier) rather than "
                                     "with zeros, and check the loss reaches it (a detached branch, a mask never set).")
    threshold: float = 100.0  # percent of the values that are zero

    def check(self, data: DebugData) -> Finding:
        rows = self.rows(data, "zero_fraction")
        if not rows:
            raise CannotJudge("no tensor's zeros were recorded (no recorded step of a trained layer)")
        zero = [r for r in rows if r["value"] * 100 >= self.threshold]
        tensors = sorted({f"{r['name']} ({r['stat'].split('_')[0]})" for r in zero})
        return Finding(len(tensors), len(rows),
                       f"{len(tensors)} tensor(s) with >= {self.threshold:g}% zeros in {len(zero)} of {len(rows)} "
                       f"records" + (f": {', '.join(tensors[:5])}" if tensors else ""), tuple(r["step"] for r in zero))


@dataclass
class UnchangedTensor(Rule):
    """smdebug's UnchangedTensor: trainable weights that no longer change, judged on each recorded update's size
    relative to the weights (|update| <= rtol |weights| is numpy.allclose's test, taken on norms), over the last
    `num_steps` recorded updates of a stage: e.g. a layer left out of the optimizer, or a learning rate of zero."""
    name: ClassVar[str] = "UnchangedTensor"
    recommendation: ClassVar[str] = ("Weights that receive gradients do not change: check every trainable layer is "
                                     "given to the optimizer and that its learning rate is not zero.")
    num_steps: int = 3
    rtol: float = 1e-5
    tensor_regex: str = ""

    def check(self, data: DebugData) -> Finding:
        pattern = re.compile(self.tensor_regex) if self.tensor_regex else None
        series: dict[tuple[str, str], list[tuple[int, float]]] = defaultdict(list)
        for r in _stat(data, "update_ratio"):
            if pattern is None or pattern.search(r["name"]):
                series[(r["stage"], r["name"])].append((r["step"], r["value"]))
        judged = {k: v[-self.num_steps:] for k, v in series.items() if len(v) >= self.num_steps}
        unchanged = {k: v for k, v in judged.items() if all(x <= self.rtol for _, x in v)}
        names = sorted(f"{name} ({stage})" for stage, name in unchanged)
        return Finding(len(unchanged), len(judged),
                       f"{len(unchanged)} of {len(judged)} trainable tensors unchanged (update <= {self.rtol:g} of the "
                       f"weights) over their last {self.num_steps} recorded steps"
                       + (f": {', '.join(names[:5])}" if names else "")
                       + ("" if judged else f" (fewer than {self.num_steps} recorded updates per tensor)"),
                       tuple(step for v in unchanged.values() for step, _ in v))


@dataclass
class TensorVariance(_TensorSelection, Rule):
    """smdebug's TensorVariance: tensors whose variance is very low (a layer whose output no longer varies: no
    signal passes) or very high (on the way to exploding). Judged after the first update of each stage."""
    name: ClassVar[str] = "TensorVariance"
    recommendation: ClassVar[str] = ("A tensor's variance collapsed or blew up: use a standard initialisation "
                                     "(He/Xavier) or pretrained weights, normalise inputs, lower the learning rate.")
    collection_names: str = "weights,activations"
    max_threshold: float = 1e6
    min_threshold: float = 1e-12

    def check(self, data: DebugData) -> Finding:
        rows = self.rows(data, "std")
        low = [r for r in rows if r["value"] ** 2 < self.min_threshold]
        high = [r for r in rows if not r["value"] ** 2 <= self.max_threshold]  # NaN counts as high
        tensors = sorted({r["name"] for r in low + high})
        return Finding(len(tensors), len(rows),
                       f"{len(low)} record(s) with variance below {self.min_threshold:g}, {len(high)} above "
                       f"{self.max_threshold:g}" + (f", in {', '.join(tensors[:5])}" if tensors else ""),
                       tuple(r["step"] for r in low + high))


@dataclass
class CheckInputImages(Rule):
    """smdebug's CheckInputImages: the images the model is fed are not normalised as backbones expect: e.g. pixels
    left in 0..255, or scaled to 0..1 but not centred. Judged over every image of the image-training steps, once
    `threshold_samples` images were seen, on three signs: a mean far from 0; no negative value at all (any
    normalisation of photos makes dark pixels negative); a spread far from 1.

    smdebug's threshold_mean is 0.2; here 1.0: correctly normalised photos of a dataset brighter or darker than
    ImageNet have a mean beyond 0.2, while 0..1 images, which smdebug's 0.2 is there to catch, are caught by their
    lack of negative values."""
    name: ClassVar[str] = "CheckInputImages"
    recommendation: ClassVar[str] = ("Input images are not normalised: subtract the backbone's mean and divide by its "
                                     "std (dogbreed's preprocessing does; a custom data pipeline must too).")
    threshold_mean: float = 1.0
    threshold_samples: int = 500
    check_centred: bool = True
    min_std: float = 0.2
    max_std: float = 5.0

    def check(self, data: DebugData) -> Finding:
        batches: dict[int, dict[str, float]] = defaultdict(dict)
        for r in data.tensors:
            if r["name"] == "input" and r["stat"].startswith("input_"):
                batches[r["step"]][r["stat"]] = r["value"]
        batches = {s: b for s, b in batches.items() if {"input_mean", "input_std", "input_images"} <= set(b)}
        seen = int(sum(b["input_images"] for b in batches.values()))
        if not batches:
            raise CannotJudge("not judged: no image batch reached the model (a head-only job trains on cached "
                              "features)")
        if seen < self.threshold_samples:
            raise CannotJudge(f"not judged: {seen} images seen, fewer than threshold_samples="
                              f"{self.threshold_samples}")
        # The pooled mean and spread of all pixels, from each batch's mean and std weighted by its images.
        mu = sum(b["input_mean"] * b["input_images"] for b in batches.values()) / seen
        second = sum((b["input_std"] ** 2 + b["input_mean"] ** 2) * b["input_images"] for b in batches.values())
        sd = math.sqrt(max(second / seen - mu * mu, 0.0))
        lo = min(b.get("input_min", math.nan) for b in batches.values())
        hi = max(b.get("input_max", math.nan) for b in batches.values())
        signs = {"mean": abs(mu) > self.threshold_mean, "not centred": self.check_centred and lo >= 0,
                 "spread": not self.min_std <= sd <= self.max_std}
        found = [k for k, bad in signs.items() if bad]
        return Finding(len(found), seen,
                       (f"NOT NORMALISED ({', '.join(found)}): " if found else "") +
                       f"{seen} images: mean {mu:.3f} (|mean| up to {self.threshold_mean:g}), values {lo:.3g} to "
                       f"{hi:.3g}, std {sd:.3f} (expected {self.min_std:g}-{self.max_std:g})",
                       tuple(batches) if found else ())


def _class_names(data: DebugData, n: int) -> list[str]:
    names = list((data.meta.get("label_counts") or {}).keys())
    return names if len(names) >= n and not all(k.isdigit() for k in names) else [str(i) for i in range(n)]


@dataclass
class Confusion(Rule):
    """smdebug's Confusion, per class on the last epoch's validation predictions: a class mostly predicted as one
    other class (`max_off_diag` of its images or more), or (when `min_diag` > 0) recognised too rarely. smdebug's
    min_diag 0.9 would fail most small datasets, so it is off unless set."""
    name: ClassVar[str] = "Confusion"
    recommendation: ClassVar[str] = ("A class is mostly predicted as another: check its training images carry the "
                                     "right label (two folders swapped or merged?), and add images that tell the two "
                                     "apart.")
    min_diag: float = 0.0
    max_off_diag: float = 0.5
    min_samples: int = 3  # validation images a class needs to be judged

    def check(self, data: DebugData) -> Finding:
        if not data.confusion:
            raise CannotJudge("not judged: no validation predictions recorded (no validation data)")
        last = max(r["epoch"] for r in data.confusion)
        rows = [r for r in data.confusion if r["epoch"] == last]
        n = max(max(r["label"], r["predicted"]) for r in rows) + 1
        names = _class_names(data, n)
        counts = [[0] * n for _ in range(n)]
        for r in rows:
            counts[r["label"]][r["predicted"]] += r["count"]
        notes, judged = [], 0
        for i, row in enumerate(counts):
            total = sum(row)
            if total < self.min_samples:
                continue
            judged += 1
            j = max((k for k in range(n) if k != i), key=lambda k: row[k])
            if row[j] / total >= self.max_off_diag and row[j] > row[i]:
                notes.append(f"{names[i]}: {row[j]} of {total} predicted as {names[j]}")
            elif self.min_diag and row[i] / total < self.min_diag:
                notes.append(f"{names[i]}: only {row[i]} of {total} right")
        return Finding(len(notes), judged,
                       (f"epoch {last}: " + "; ".join(notes)) if notes else
                       f"epoch {last}: no class of {judged} mostly predicted as another (max_off_diag "
                       f"{self.max_off_diag:g})", epochs=(last,))


def load_trial(other: str) -> DebugData:
    """Another run's recorded data: a debug folder, a job's folder, or a job's name."""
    p = Path(other)
    for d in (p, p / "debug"):
        if (d / "meta.json").exists():
            return DebugData.load(d)
    from dogbreed.jobs import records

    return DebugData.load(records.job_dir(other) / "debug")


@dataclass
class SimilarAcrossRuns(Rule):
    """smdebug's SimilarAcrossRuns: compares this run's recorded losses and tensors with another run's
    (`other_trial`: a job name or debug folder) at the steps both recorded, and fires where they differ. Trials of
    a tuning job share seed and batch order, so their losses part only where a hyperparameter acts; a rerun of the
    same settings should not part at all. Not among the default rules: it needs another trial."""
    name: ClassVar[str] = "SimilarAcrossRuns"
    recommendation: ClassVar[str] = ("The two runs differ: for a rerun of the same settings, look for randomness "
                                     "(seed, data order, non-deterministic kernels); for tuning trials, the first "
                                     "step that differs is where the hyperparameters start to matter.")
    other_trial: str = ""
    collection_names: str = "losses,weights,gradients"
    tensor_regex: str = ""
    rtol: float = 1e-5
    atol: float = 1e-8

    def _values(self, data: DebugData) -> dict[tuple[int, str, str], float]:
        chosen = {c.strip() for c in self.collection_names.split(",") if c.strip()}
        unknown = chosen - {"losses", *COLLECTIONS}
        if unknown:
            raise UserError(f"unknown collection {sorted(unknown)[0]!r} (known: losses, {', '.join(COLLECTIONS)})")
        pattern = re.compile(self.tensor_regex) if self.tensor_regex else None
        out: dict[tuple[int, str, str], float] = {}
        if "losses" in chosen and (pattern is None or pattern.search("loss")):
            out.update({(s["step"], "loss", "loss"): s["loss"] for s in data.steps})
        prefixes = tuple(f"{COLLECTIONS[c]}_" for c in chosen if c in COLLECTIONS)
        for r in data.tensors:
            if r["stat"].startswith(prefixes) and (pattern is None or pattern.search(r["name"])):
                out[(r["step"], r["name"], r["stat"])] = r["value"]
        return out

    def check(self, data: DebugData) -> Finding:
        if not self.other_trial:
            raise CannotJudge("not judged: no other_trial to compare with")
        mine, theirs = self._values(data), self._values(load_trial(self.other_trial))
        common = sorted(set(mine) & set(theirs))
        if not common:
            raise CannotJudge(f"not judged: no step recorded in both this run and {self.other_trial}")
        differ = [k for k in common if not math.isclose(mine[k], theirs[k], rel_tol=self.rtol, abs_tol=self.atol)
                  and not (math.isnan(mine[k]) and math.isnan(theirs[k]))]
        first = differ[0] if differ else None
        what = first and (first[1] if first[1] == first[2] else f"{first[1]} {first[2]}")
        detail = (f"{len(differ)} of {len(common)} values recorded by both runs differ; first at step {first[0]}: "
                  f"{what} {mine[first]:.6g} vs {theirs[first]:.6g} in {self.other_trial}"
                  if first else f"all {len(common)} values recorded by both runs agree with {self.other_trial}")
        return Finding(len(differ), len(common), detail, tuple(k[0] for k in differ))

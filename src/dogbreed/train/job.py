"""A training job, end to end: check the data, build the model, train in stages, evaluate, save, record.

The default recipe is built for a CPU: the backbone's features are computed once (and cached), a head that starts
from the matching ImageNet classifier rows is trained on them in seconds, and only if asked are the last blocks or the
whole network fine-tuned on images afterwards.
"""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn

from dogbreed.config import Hyperparameters, UserError
from dogbreed.data.batches import BatchSource
from dogbreed.data.cache import CachedSplit, load_or_build
from dogbreed.data.check import CheckReport, build_report
from dogbreed.data.layout import DatasetLayout, discover, readable_label, resolve_location
from dogbreed.models.artifact import ModelCard, save_model
from dogbreed.models.imagenet import init_head_from_imagenet
from dogbreed.models.registry import BackboneSpec, create_model, get_backbone
from dogbreed.train import records
from dogbreed.train.callbacks import DataWaitMeter, EarlyStopping, EpochLog, ProgressBar
from dogbreed.train.evaluate import Evaluation, evaluate_logits, write_evaluation
from dogbreed.train.features import FeatureBatches, extract_features, flip_predict, mean_over_views, weights_id
from dogbreed.train.records import COMPLETED, FAILED, STOPPED, JobRecord
from dogbreed.train.trainer import Callback, Trainer, TrainerConfig, autocast

log = logging.getLogger("dogbreed")


@dataclass(frozen=True)
class TrainingJobSpec:
    name: str
    data: str
    hyperparameters: Hyperparameters = field(default_factory=Hyperparameters)
    on_bad_file: str = "error"  # error | skip
    device: str | None = None  # None: cuda when present, else cpu
    parent: str | None = None  # tuning job
    track: bool = True  # MLflow
    progress: bool = True
    debugger: Any = None  # dogbreed.debug.monitor.DebuggerConfig; None: the default (on, every rule)


@dataclass
class PreparedData:
    layout: DatasetLayout
    report: CheckReport
    splits: dict[str, CachedSplit]
    class_folders: list[str]
    class_labels: list[str]
    skipped: list[dict]


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


# -- data ---------------------------------------------------------------------------------------------------


def prepare_data(location: str, hp: Hyperparameters, spec: BackboneSpec, on_bad_file: str,
                 progress: bool = True) -> PreparedData:
    """Decodes (or loads from cache) every split and applies the data check; raises UserError on problems."""
    if on_bad_file not in ("error", "skip"):
        raise UserError(f"--on-bad-file must be error or skip, not {on_bad_file!r}")
    layout = discover(resolve_location(location))
    index = layout.class_index()
    splits, scans = {}, {}
    for name, split in layout.splits.items():
        with _progress(len(split.files), f"decoding {name}", progress) as tick:
            cached = load_or_build(split, spec.preprocessing, index, hp.num_workers, tick)
        splits[name], scans[name] = cached, list(cached.scans)
    report = build_report(layout, scans)
    if report.structural_problems:
        first = report.structural_problems[0]
        more = len(report.structural_problems) - 1
        raise UserError(f"classes differ between splits: {first}" + (f" (and {more} more)" if more else "")
                        + f"; run `dogbreed data check {location}`")
    skippable = report.problems
    if skippable and on_bad_file == "error":
        raise UserError(f"data has {len(skippable)} problem(s), first: {skippable[0]}; fix them, or pass "
                        f"--on-bad-file skip (see `dogbreed data check {location}`)")
    skipped = report.bad_files
    if skippable:
        log.warning("skipping %d bad file(s); %d image(s) found in several splits kept", len(skipped),
                    len(report.cross_split_duplicates))
        for b in skipped:
            log.warning("skipped %s/%s: %s", b["split"], b["path"], b["reason"])
    folders = list(layout.classes)
    return PreparedData(layout, report, splits, folders, [readable_label(c) for c in folders], skipped)


@contextlib.contextmanager
def _progress(total: int, desc: str, enabled: bool) -> Iterator:
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, unit="img", leave=False, disable=None if enabled else True)
    try:
        yield bar.update
    finally:
        bar.close()


# -- model ---------------------------------------------------------------------------------------------------


class PartlyFrozen(nn.Module):
    """Wraps a model whose early part is frozen; that part stays in eval mode (BatchNorm statistics kept)."""

    def __init__(self, model: nn.Module, frozen: list[nn.Module]):
        super().__init__()
        self.model = model
        self._frozen = frozen

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def train(self, mode: bool = True) -> "PartlyFrozen":
        super().train(mode)
        for m in self._frozen:
            m.eval()
        return self


def _units(model: nn.Module) -> list[tuple[nn.Module, bool]]:
    """The model's modules in forward order, nested Sequentials expanded; the flag marks blocks."""
    out: list[tuple[nn.Module, bool]] = []

    def walk(m: nn.Module, in_sequential: bool) -> None:
        if isinstance(m, nn.Sequential):
            for child in m.children():
                walk(child, True)
        else:
            out.append((m, in_sequential))

    for _, child in model.named_children():
        walk(child, False)
    return out


def freeze_for_mode(model: nn.Module, train_mode: str, trainable_blocks: int) -> nn.Module:
    """Freezes all but what `train_mode` trains; returns the module to train."""
    if train_mode == "full":
        for p in model.parameters():
            p.requires_grad_(True)
        return model
    units = _units(model)
    block_positions = [i for i, (_, is_block) in enumerate(units) if is_block]
    if train_mode == "last_blocks" and block_positions:
        first_trainable = block_positions[max(0, len(block_positions) - trainable_blocks)]
    else:  # head only: everything before the classifier
        first_trainable = len(units)
    classifier = model.get_classifier()
    frozen = []
    for i, (m, _) in enumerate(units):
        trainable = i >= first_trainable or m is classifier
        for p in m.parameters():
            p.requires_grad_(trainable)
        if not trainable:
            frozen.append(m)
    for p in classifier.parameters():
        p.requires_grad_(True)
    return PartlyFrozen(model, frozen)


class AnchoredLoss(nn.Module):
    """Cross-entropy plus an L2 pull of the head towards its starting weights (L2-SP).

    With 60 photos per breed, a head started from the ImageNet rows overfits when trained freely; anchoring it
    keeps what ImageNet knew and learns only what the new data supports.
    """

    def __init__(self, head: nn.Linear, strength: float, label_smoothing: float):
        super().__init__()
        self.ce = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
        self.head, self.strength = head, strength
        self.start = [p.detach().clone() for p in (head.weight, head.bias)]

    def forward(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        loss = self.ce(logits, y)
        if self.strength:
            pull = sum(((p - p0) ** 2).sum() for p, p0 in zip((self.head.weight, self.head.bias), self.start))
            loss = loss + self.strength / 2 * pull
        return loss


def make_optimizer(params: list[nn.Parameter], hp: Hyperparameters, lr: float) -> torch.optim.Optimizer:
    betas = (hp.beta_1, hp.beta_2)
    if hp.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=hp.momentum, weight_decay=hp.weight_decay, nesterov=False)
    if hp.optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, betas=betas, eps=hp.eps, weight_decay=hp.weight_decay)
    if hp.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=betas, eps=hp.eps, weight_decay=hp.weight_decay)
    return torch.optim.RMSprop(params, lr=lr, momentum=hp.momentum, eps=hp.eps, weight_decay=hp.weight_decay)


def make_scheduler(opt: torch.optim.Optimizer, hp: Hyperparameters, epochs: int) -> Any:
    if hp.lr_scheduler == "cosine" and epochs > 0:
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    if hp.lr_scheduler == "step":
        milestones = hp.decay_epochs() or [max(1, epochs // 3), max(2, 2 * epochs // 3)]
        return torch.optim.lr_scheduler.MultiStepLR(opt, milestones=milestones, gamma=hp.lr_scheduler_factor)
    return None


# -- the job ---------------------------------------------------------------------------------------------------


class TrainingRun:
    """One job's state while it runs; `run_training_job` is the entry point."""

    def __init__(self, spec: TrainingJobSpec, extra_callbacks: list[Callback]):
        self.spec, self.hp = spec, spec.hyperparameters
        self.extra_callbacks = extra_callbacks
        self.device = spec.device or default_device()
        self.backbone = get_backbone(self.hp.backbone_name)
        self.record: JobRecord | None = None
        self.tracker = None
        self.dir: Path | None = None
        self.data_wait = DataWaitMeter()
        self.debug = None  # DebugSession

    def preflight(self) -> tuple[nn.Module, Any]:
        """Checks that cost little and need no record: data folder layout, weights availability."""
        discover(resolve_location(self.spec.data))
        return create_model(self.backbone, 1, pretrained=bool(self.hp.use_pretrained_model),
                            weights_file=self.hp.weights_file)

    def history_sink(self, metrics: dict[str, float]) -> None:
        assert self.record is not None
        self.record = records.update(self.record, history=[*self.record.history, metrics])
        if self.tracker:
            self.tracker.log_metrics({k: v for k, v in metrics.items() if k not in ("epoch", "stage")},
                                     step=int(metrics["epoch"]))

    def callbacks(self, stage: str) -> list[Callback]:
        cbs: list[Callback] = [EpochLog(self.history_sink)]
        if self.spec.progress:
            cbs.append(ProgressBar())
        if self.hp.early_stopping:
            cbs.append(EarlyStopping(self.hp.early_stopping_min_epochs, self.hp.early_stopping_patience,
                                     self.hp.early_stopping_tolerance))
        if stage == "finetune":
            cbs.append(self.data_wait)
        if self.debug is not None:
            cbs += self.debug.callbacks(stage)
        return cbs + self.extra_callbacks

    def run(self, data: PreparedData, model: nn.Module, imagenet_head: Any) -> tuple[nn.Module, dict[str, Any]]:
        hp, prep = self.hp, self.backbone.preprocessing
        classes = list(zip(data.class_folders, data.class_labels))
        model.reset_classifier(len(classes))
        anchor = 0.0  # only a head that starts from ImageNet rows has a start worth staying near
        if imagenet_head is not None and hp.imagenet_head_init and imagenet_head[0].shape[0] == 1000:
            matched = init_head_from_imagenet(model.get_classifier(), imagenet_head, classes)
            log.info("head initialised from ImageNet rows for %d of %d classes", matched, len(classes))
            anchor = hp.head_anchor if matched else 0.0
        torch.manual_seed(hp.seed)
        extra: dict[str, Any] = {}
        wid = weights_id(self.backbone.name, hp.weights_file, bool(hp.use_pretrained_model), hp.seed)
        head_epochs = hp.epochs if hp.train_mode == "head" else hp.head_epochs
        features: dict[str, np.ndarray] = {}
        stopped: str | None = None
        epochs_done = 0
        if head_epochs > 0:
            for name in ("train", "valid"):
                with _progress(len(data.splits[name].labels), f"features {name}", self.spec.progress) as tick:
                    features[name] = extract_features(model, data.splits[name], prep, wid,
                                                      batch_size=max(hp.mini_batch_size, 32), device=self.device,
                                                      precision_dtype=hp.precision_dtype, on_progress=tick)
            head = model.get_classifier()
            head_model = nn.Sequential(nn.Dropout(0.2), head)  # shares `head`: trained in place
            lr = hp.learning_rate if hp.train_mode == "head" else hp.head_learning_rate
            opt = make_optimizer(list(head.parameters()), hp, lr)
            trainer = Trainer(
                head_model,
                FeatureBatches(features["train"], data.splits["train"].labels, hp.mini_batch_size, train=True,
                               seed=hp.seed),
                FeatureBatches(features["valid"], data.splits["valid"].labels, 512),
                opt, TrainerConfig(epochs=head_epochs, stage="head", top_k=hp.top_k,
                                   precision_dtype="float32", device=self.device),
                loss_fn=AnchoredLoss(head, anchor, hp.label_smoothing),
                scheduler=make_scheduler(opt, hp, head_epochs), predict=mean_over_views(hp.test_time_flip),
                callbacks=self.callbacks("head"))
            trainer.fit()
            epochs_done = len(trainer.state.history)
            stopped = trainer.state.stop_reason
        if hp.train_mode != "head" and hp.epochs > 0 and not _stop_is_final(stopped):
            trainable = freeze_for_mode(model, hp.train_mode, hp.trainable_blocks)
            params = [p for p in trainable.parameters() if p.requires_grad]
            opt = make_optimizer(params, hp, hp.learning_rate)
            train_split, valid_split = data.splits["train"], data.splits["valid"]
            trainer = Trainer(
                trainable.to(memory_format=torch.channels_last),
                BatchSource(train_split.images, train_split.labels, prep, hp.mini_batch_size, train=True,
                            augmentation=hp.augmentation_type, seed=hp.seed),
                BatchSource(valid_split.images, valid_split.labels, prep, max(hp.mini_batch_size, 32)),
                opt, TrainerConfig(epochs=hp.epochs, stage="finetune", top_k=hp.top_k,
                                   precision_dtype=hp.precision_dtype, device=self.device,
                                   epoch_offset=epochs_done),
                loss_fn=AnchoredLoss(model.get_classifier(), anchor, hp.label_smoothing),
                scheduler=make_scheduler(opt, hp, hp.epochs), predict=flip_predict(hp.test_time_flip),
                callbacks=self.callbacks("finetune"))
            trainer.fit()
            stopped = trainer.state.stop_reason
            features = {}  # the backbone changed: cached features no longer describe it
            extra["data_wait_share"] = self.data_wait.share
            extra["train_images_per_s"] = self.data_wait.images_per_s
        extra["stop_reason"] = stopped
        return model, {"features": features, **extra}

    def final_evaluation(self, model: nn.Module, data: PreparedData, features: dict[str, np.ndarray]
                         ) -> list[Evaluation]:
        hp, prep = self.hp, self.backbone.preprocessing
        model = model.to(self.device).eval()
        out = []
        for name in ("valid", "test"):
            if name not in data.splits:
                continue
            split = data.splits[name]
            if features and hp.train_mode == "head":
                # The backbone is unchanged, so its cached features give exactly the model's outputs.
                if name not in features:
                    with _progress(len(split.labels), f"features {name}", self.spec.progress) as tick:
                        features[name] = extract_features(
                            model, split, prep, weights_id(self.backbone.name, hp.weights_file,
                                                           bool(hp.use_pretrained_model), hp.seed),
                            batch_size=64, device=self.device, precision_dtype=hp.precision_dtype, on_progress=tick)
                log_probs = predict_features(model.get_classifier(), features[name], hp.test_time_flip)
            else:
                log_probs = predict_images(model, split.images, prep, hp.test_time_flip, self.device,
                                           hp.precision_dtype)
            ev = evaluate_logits(log_probs, torch.from_numpy(split.labels), data.class_labels, name, hp.top_k)
            write_evaluation(ev, data.class_labels, self.dir / "evaluation")
            log.info("%s: accuracy %.4f, top-%d accuracy %.4f", name, ev.accuracy, ev.top_k, ev.top_k_accuracy)
            out.append(ev)
        return out


@torch.no_grad()
def predict_features(head: nn.Module, features: np.ndarray, use_flip: bool) -> torch.Tensor:
    return mean_over_views(use_flip)(head.eval(), torch.from_numpy(features))


@torch.no_grad()
def predict_images(model: nn.Module, images: np.ndarray, prep: Any, use_flip: bool, device: str = "cpu",
                   precision_dtype: str = "float32", batch_size: int = 64) -> torch.Tensor:
    """Log-probabilities for cached square uint8 images, with the evaluation crop."""
    model = model.to(device, memory_format=torch.channels_last).eval()
    predict = flip_predict(use_flip)
    source = BatchSource(images, np.zeros(len(images), dtype=np.int64), prep, batch_size)
    outs = []
    for x, _ in source.batches():
        with autocast(device, precision_dtype):
            outs.append(predict(model, x.to(device)).float().cpu())
    return torch.cat(outs) if outs else torch.zeros(0, 0)


def _stop_is_final(reason: str | None) -> bool:
    """Early stopping of the head warm-up only ends the warm-up; any other stop request ends the job."""
    return bool(reason) and not reason.startswith("early stopping")


def run_training_job(spec: TrainingJobSpec, callbacks: list[Callback] | None = None) -> JobRecord:
    """Runs a job to its end and returns its final record. UserErrors found before the job exists propagate;
    once the record exists, every ending (Completed, Failed, Stopped) is recorded rather than raised."""
    records.validate_name(spec.name)
    if records.job_dir(spec.name).exists():
        raise UserError(f"job name {spec.name!r} is already used; pick another --job-name")
    from dogbreed.debug.monitor import DebuggerConfig, DebugSession

    debug_config = spec.debugger or DebuggerConfig()
    debug_config.validate()
    run = TrainingRun(spec, list(callbacks or []))
    model, imagenet_head = run.preflight()
    hp = spec.hyperparameters
    run.record = records.create(JobRecord(name=spec.name, kind="training", hyperparameters=hp.to_dict(),
                                          data={"location": spec.data}, parent=spec.parent,
                                          extra={"device": run.device, "backbone": run.backbone.name}))
    run.dir = records.job_dir(spec.name)
    handler = attach_log(run.dir / "train.log")
    log.info("training job %s started on %s: backbone %s, train_mode %s", spec.name, run.device,
             run.backbone.name, hp.train_mode)
    if debug_config.enabled:
        run.debug = DebugSession(debug_config, run.dir)
        run.debug.start()
    status, reason = COMPLETED, None
    with _sigterm_as_interrupt():
        try:
            if spec.track:
                from dogbreed.train.tracking import MlflowTracker

                run.tracker = MlflowTracker()
                run_id = run.tracker.start(spec.name, "training", hp.to_dict(),
                                           tags={"dogbreed.parent": spec.parent or ""})
                run.record = records.update(run.record, mlflow_run_id=run_id)
            data = prepare_data(spec.data, hp, run.backbone, spec.on_bad_file, spec.progress)
            run.record = records.update(run.record, data={
                "location": spec.data, "root": str(data.layout.root), "num_classes": len(data.class_folders),
                "num_training_samples": int(len(data.splits["train"].labels)),
                "counts": {k: int(len(v.labels)) for k, v in data.splits.items()},
                "content_keys": {k: v.key for k, v in data.splits.items()}, "skipped_files": len(data.skipped)})
            if run.debug is not None:
                run.debug.data.meta.update({"num_classes": len(data.class_folders), "label_counts": {
                    c: int(n) for c, n in data.report.counts.get("train", {}).items()}})
            if run.tracker:
                run.tracker.log_metrics({"num_classes": len(data.class_folders),
                                         "num_training_samples": len(data.splits["train"].labels)}, 0)
            model, info = run.run(data, model, imagenet_head)
            evaluations = run.final_evaluation(model, data, info.pop("features"))
            final: dict[str, float] = {}
            for ev in evaluations:
                final.update(ev.metrics())
            for k in ("train:loss", "train:accuracy", "train:top_k_accuracy"):
                if run.record.history and k in run.record.history[-1]:
                    final[k] = run.record.history[-1][k]
            final.update({k: v for k, v in info.items() if isinstance(v, float)})
            card = ModelCard(backbone=run.backbone.name, timm_name=run.backbone.timm_name,
                             class_folders=data.class_folders, class_labels=data.class_labels,
                             preprocessing=run.backbone.preprocessing, test_time_flip=hp.test_time_flip,
                             hyperparameters=hp.to_dict(), metrics=final,
                             lineage={"job": spec.name, "data": run.record.data.get("content_keys", {}),
                                      "data_location": spec.data})
            save_model(run.dir / "model", model, card)
            (run.dir / "metrics.json").write_text(json.dumps(final, indent=1))
            if run.tracker:
                run.tracker.log_metrics(final, step=len(run.record.history))
            stop_reason = info.get("stop_reason")
            if stop_reason and _stop_is_final(stop_reason):
                status, reason = STOPPED, stop_reason
            run.record = records.update(run.record, metrics=final, extra={**run.record.extra, **info})
        except KeyboardInterrupt:
            status, reason = STOPPED, "stopped by the user (interrupt)"
            log.warning("job %s stopped by the user", spec.name)
        except UserError as e:
            status, reason = FAILED, str(e)
            log.error("job %s failed: %s", spec.name, e)
        except Exception as e:  # recorded, with the traceback in the job's log
            status, reason = FAILED, f"{type(e).__name__}: {e}"
            log.error("job %s failed: %s\n%s", spec.name, reason, traceback.format_exc())
        finally:
            if run.debug is not None:
                try:
                    results = run.debug.finish()
                    run.record = records.update(run.record, extra={
                        **run.record.extra, "rules": {r.rule: r.status for r in results}})
                    for r in results:
                        if r.triggered:
                            log.warning("rule %s: IssuesFound: %s", r.rule, r.details)
                except Exception as e:  # the debugger must never cost a job its result
                    log.warning("debugger could not finish for %s: %s", spec.name, e)
            run.record = records.update(run.record, status=status, failure_reason=reason, end_time=time.time())
            log.info("training job %s %s in %.1f s", spec.name, status, run.record.elapsed_s)
            if run.tracker:
                try:
                    run.tracker.finish(status, reason, run.dir)
                except Exception as e:  # tracking must never turn a finished job into a crash
                    log.warning("MLflow tracking failed at the end of %s: %s", spec.name, e)
            detach_log(handler)
    return run.record


def attach_log(path: Path) -> logging.Handler:
    """Copies dogbreed's log lines into a job's own log file until `detach_log`."""
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    handler.setLevel(logging.INFO)
    log.addHandler(handler)
    if log.level == logging.NOTSET or log.level > logging.INFO:
        log.setLevel(logging.INFO)
    return handler


def detach_log(handler: logging.Handler) -> None:
    log.removeHandler(handler)
    handler.close()


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM stops a job like Ctrl-C does (status Stopped) when the job runs in the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)

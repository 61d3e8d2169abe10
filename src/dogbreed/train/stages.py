"""The recipe's training stages on prepared data: the head on cached backbone features, then (train_mode
last_blocks or full) the unfrozen part on images; and the final evaluation.

Knows nothing of records, tracking or logs: whatever a job wants to know happens in the callbacks it passes in.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from dogbreed.config import Hyperparameters
from dogbreed.data.batches import BatchSource
from dogbreed.models.imagenet import attach_imagenet_head, init_head_from_imagenet
from dogbreed.models.inference import average_softmax, predict_probabilities
from dogbreed.models.registry import BackboneSpec
from dogbreed.progress import progress
from dogbreed.train.callbacks import DataWaitMeter
from dogbreed.train.data_prep import PreparedData
from dogbreed.train.evaluate import Evaluation, evaluate_logits, write_evaluation
from dogbreed.train.features import FeatureBatches, extract_features, flip_predict, mean_over_views, weights_id
from dogbreed.train import presets
from dogbreed.train.parallel import SINGLE, WorkerGroup
from dogbreed.train.checkpoint import Checkpoint, Checkpointer, CheckpointStore, restore
from dogbreed.train.calibration import Calibration, calibrate, expected_calibration_error
from dogbreed.train.callbacks import StopWatcher
from dogbreed.train.holdout import holdout_mask
from dogbreed.train.recipe import AnchoredLoss, freeze_for_mode, make_optimizer, make_scheduler
from dogbreed.train.trainer import Callback, Trainer, TrainerConfig

log = logging.getLogger("dogbreed")


def stop_is_final(reason: str | None) -> bool:
    """Early stopping of the head warm-up only ends the warm-up; any other stop request ends the job."""
    return bool(reason) and not reason.startswith("early stopping")


class StagedTraining:
    def __init__(self, hp: Hyperparameters, backbone: BackboneSpec, device: str,
                 callbacks_for: Callable[[str], list[Callback]], show_progress: bool = True,
                 check: Callable[[], None] = lambda: None, initial_weights: str | None = None,
                 checkpoints: CheckpointStore | None = None, resume: Checkpoint | None = None,
                 group: WorkerGroup = SINGLE):
        self.hp, self.backbone, self.device = hp, backbone, device
        self.callbacks_for, self.show_progress, self.check = callbacks_for, show_progress, check
        self.initial_weights = initial_weights  # SHA-256 of an incremental job's starting model
        self.data_wait = DataWaitMeter()
        self.checkpoints, self.resume = checkpoints, resume
        self.group = group  # data-parallel workers (dogbreed.train.distributed); a group of one otherwise

    def _stage_callbacks(self, stage: str, stages_done: dict[str, int]) -> list[Callback]:
        """The job's callbacks for a stage, then the checkpoint writer (last: it saves what the others decided)."""
        cbs = self.callbacks_for(stage)
        if self.checkpoints is not None:
            cbs.append(Checkpointer(self.checkpoints, self.hp.checkpoint_frequency, stages_done,
                                    writer=self.group.is_main))
        return cbs

    def _restore_or_skip(self, trainer: Trainer) -> bool:
        """Resuming: puts the stage's trainer where its checkpoint left it. False when the checkpoint is of a
        later stage (this one had finished: what it trained is part of that stage's checkpoint, so it is
        skipped)."""
        ckpt = self.resume
        if ckpt is None or ckpt.stage == trainer.config.stage:
            if ckpt is not None:
                restore(trainer, ckpt)
                log.info("resumed stage %s after epoch %d from checkpoint %d", ckpt.stage, ckpt.stage_epoch,
                         ckpt.sequence)
            return True
        log.info("stage %s finished before the checkpoint (%d epochs): skipped", trainer.config.stage,
                 ckpt.stages_done.get(trainer.config.stage, 0))
        return False

    def _weights_id(self) -> str:
        hp = self.hp
        if self.initial_weights:  # the backbone is the earlier job's, not ImageNet's
            return f"{self.backbone.name}|model|{self.initial_weights}"
        return weights_id(self.backbone.name, hp.weights_file, bool(hp.use_pretrained_model), hp.seed)

    def _features(self, model: nn.Module, data: PreparedData, name: str, batch_size: int) -> np.ndarray:
        split = data.splits[name]
        if self.group.size > 1:  # each worker extracts a block of the photos (cached apart), then all have all
            lo, hi = self.group.block(len(split.labels))
            part = dataclasses.replace(split, key=f"{split.key}|block{lo}-{hi}", images=split.images[lo:hi],
                                       labels=split.labels[lo:hi])
            return self.group.gather_blocks(self._split_features(model, part, name, batch_size), len(split.labels))
        return self._split_features(model, split, name, batch_size)

    def _split_features(self, model: nn.Module, split: Any, name: str, batch_size: int) -> np.ndarray:
        with progress(len(split.labels), f"features {name}", self.show_progress) as tick:
            def on_progress(n: int) -> None:
                tick(n)
                self.check()

            if self.hp.preset_value("crop_views") or self._last_block_epochs() or not self.hp.use_flip:
                return presets.split_view_features(model, split, name == "train", self.backbone.preprocessing,
                                                   self._weights_id(), self.hp, self.device, on_progress).features
            return extract_features(model, split, self.backbone.preprocessing, self._weights_id(),
                                    batch_size=batch_size, device=self.device,
                                    precision_dtype=self.hp.precision_dtype, on_progress=on_progress)

    def _last_block_epochs(self) -> int:
        return int(self.hp.preset_value("last_block_epochs") or 0) if self.hp.train_mode == "head" else 0

    def run(self, data: PreparedData, model: nn.Module, imagenet_head: Any, keep_head: bool = False
            ) -> tuple[nn.Module, dict[str, Any]]:
        """`keep_head`: the model already has a head for these classes (incremental training): it is trained on
        from where it is, and pulled towards it as towards ImageNet's rows."""
        hp, prep = self.hp, self.backbone.preprocessing
        classes = list(zip(data.class_folders, data.class_labels))
        anchor = 0.0  # only a head that starts from known-good rows has a start worth staying near
        if keep_head:
            anchor = hp.preset_value("head_anchor")
        else:
            model.reset_classifier(len(classes))
        if not keep_head and imagenet_head is not None and hp.imagenet_head_init and imagenet_head[0].shape[0] == 1000:
            matched = init_head_from_imagenet(model.get_classifier(), imagenet_head, classes)
            log.info("head initialised from ImageNet rows for %d of %d classes", matched, len(classes))
            anchor = hp.preset_value("head_anchor") if matched else 0.0
        torch.manual_seed(hp.seed)
        info: dict[str, Any] = {}
        head_epochs = hp.epochs if hp.train_mode == "head" else hp.head_epochs
        features: dict[str, np.ndarray] = {}
        stopped: str | None = None
        epochs_done = 0
        # A held-out part of train/ sets the temperature and thresholds. Head mode: a probe head fitted without it
        # judges it, and the job's head then trains on all of train/; other modes train without it.
        train_labels = data.splits["train"].labels
        held = holdout_mask(train_labels, hp.holdout_fraction, hp.seed)
        fit = ~held if hp.train_mode != "head" else np.ones(len(train_labels), dtype=bool)
        holdout_logits: torch.Tensor | None = None
        if head_epochs > 0:
            for name in ("train", "valid"):
                features[name] = self._features(model, data, name, max(hp.mini_batch_size, 32))
            head = model.get_classifier()
            head_model = nn.Sequential(nn.Dropout(0.2), head)  # shares `head`: trained in place
            lr = hp.learning_rate if hp.train_mode == "head" else hp.head_learning_rate
            start_head = copy.deepcopy(head)  # the probe below starts where the job's head started
            opt = make_optimizer(list(head.parameters()), hp, lr)
            group = self.group
            trainer = Trainer(
                group.wrap(head_model, self.device),
                FeatureBatches(features["train"] if fit.all() else features["train"][fit], train_labels[fit],
                               group.batch_size(hp.mini_batch_size), train=True, seed=hp.seed, shard=group.shard),
                FeatureBatches(features["valid"], data.splits["valid"].labels, 512, shard=group.shard),
                opt, TrainerConfig(epochs=head_epochs, stage="head", top_k=hp.top_k,
                                   precision_dtype="float32", device=self.device),
                loss_fn=AnchoredLoss(head, anchor, hp.label_smoothing),
                scheduler=make_scheduler(opt, hp, head_epochs), predict=mean_over_views(hp.use_flip),
                callbacks=self._stage_callbacks("head", {}), sum_over_workers=group.sum)
            if self._restore_or_skip(trainer):
                trainer.fit()
                epochs_done = len(trainer.state.history)
                stopped = trainer.state.stop_reason
            else:
                epochs_done = self.resume.stages_done.get("head", 0)
            if hp.train_mode == "head" and held.any() and epochs_done and not stop_is_final(stopped):
                # After the job's head (whose epochs the log shows), as many epochs without the held-out photos
                probe = presets.fit_head_copy(start_head, features["train"][~held], train_labels[~held], hp,
                                              anchor, epochs_done, lr, [StopWatcher(self.check)])
                holdout_logits = presets.head_view_logits(
                    probe, presets.served_views(features["train"][held], hp.use_flip))
        dog_scores = None
        if self._last_block_epochs() and head_epochs > 0 and not stop_is_final(stopped):
            holdout_logits, dog_scores, stopped = presets.last_block_stage(
                model, data, features, held, imagenet_head, hp, self._last_block_epochs(), epochs_done,
                self.callbacks_for("last_block"), self._view_features, self.device)
        if hp.train_mode != "head" and hp.epochs > 0 and not stop_is_final(stopped):
            trainable = freeze_for_mode(model, hp.train_mode, hp.trainable_blocks)
            params = [p for p in trainable.parameters() if p.requires_grad]
            opt = make_optimizer(params, hp, hp.learning_rate)
            train_split, valid_split = data.splits["train"], data.splits["valid"]
            group = self.group
            trainer = Trainer(
                group.wrap(trainable.to(memory_format=torch.channels_last), self.device),
                BatchSource(train_split.images[np.flatnonzero(fit)] if held.any() else train_split.images,
                            train_split.labels[fit], prep, group.batch_size(hp.mini_batch_size), train=True,
                            augmentation=hp.augmentation_type, seed=hp.seed, shard=group.shard),
                BatchSource(valid_split.images, valid_split.labels, prep, max(hp.mini_batch_size, 32),
                            shard=group.shard),
                opt, TrainerConfig(epochs=hp.epochs, stage="finetune", top_k=hp.top_k,
                                   precision_dtype=hp.precision_dtype, device=self.device,
                                   epoch_offset=epochs_done),
                loss_fn=AnchoredLoss(model.get_classifier(), anchor, hp.label_smoothing),
                scheduler=make_scheduler(opt, hp, hp.epochs), predict=flip_predict(hp.use_flip),
                callbacks=[self.data_wait, *self._stage_callbacks("finetune", {"head": epochs_done})],
                sum_over_workers=group.sum)
            self._restore_or_skip(trainer)
            trainer.fit()
            stopped = trainer.state.stop_reason
            features = {}  # the backbone changed: cached features no longer describe it
            info["data_wait_share"] = self.data_wait.share
            info["train_images_per_s"] = self.data_wait.images_per_s
        info["stop_reason"] = stopped
        info["features"] = features
        info["calibration"] = self._calibrate(model, data, features, held, holdout_logits, imagenet_head,
                                              dog_scores)
        return model, info

    def _view_features(self, model: nn.Module, data: PreparedData, name: str) -> Any:
        """A split's cached views with the last block's input (`last_block_epochs` fine-tuning reads them)."""
        split = data.splits[name]
        with progress(len(split.labels), f"features {name}", self.show_progress) as tick:
            return presets.split_view_features(model, split, name == "train", self.backbone.preprocessing,
                                               self._weights_id(), self.hp, self.device, tick)

    def _calibrate(self, model: nn.Module, data: PreparedData, features: dict[str, np.ndarray], held: np.ndarray,
                   holdout_logits: torch.Tensor | None, imagenet_head: Any,
                   dog_scores: np.ndarray | None = None) -> Calibration | None:
        """Temperature and thresholds from the held-out photos; keeps the ImageNet classifier in the model for
        the dog score (when the backbone came with one)."""
        hp, split = self.hp, data.splits["train"]
        if imagenet_head is not None and imagenet_head[0].shape[0] == 1000 and not presets.has_dog_head(model):
            attach_imagenet_head(model, imagenet_head)
        if not held.any() or (hp.train_mode == "head" and holdout_logits is None):  # no probe: nothing unseen
            return None
        if holdout_logits is None or "train" not in features:  # the backbone was trained: judge by images
            holdout_logits, dog_scores = presets.image_logits_and_dog_scores(
                model, split.images[np.flatnonzero(held)], self.backbone.preprocessing, hp.use_flip, self.device)
        elif dog_scores is None:  # head mode: the frozen backbone's cached features give the dog scores
            dog_scores = presets.feature_dog_scores(imagenet_head or presets.kept_imagenet_head(model),
                                                    presets.served_views(features["train"], hp.use_flip))
        calibration = calibrate(holdout_logits, torch.from_numpy(split.labels[held]), dog_scores)
        log.info("calibrated on %d held-out photos of train/: temperature %.3f, ECE %.4f -> %.4f; not-a-dog "
                 "threshold %.3f", calibration.holdout_photos, calibration.temperature,
                 calibration.holdout_ece_before, calibration.holdout_ece_after, calibration.dog_threshold)
        return calibration

    def final_evaluation(self, model: nn.Module, data: PreparedData, features: dict[str, np.ndarray],
                         out_dir: Path, temperature: float = 1.0) -> list[Evaluation]:
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
                    features[name] = self._features(model, data, name, 64)
                probs = head_probabilities(model.get_classifier(), features[name], hp.use_flip, temperature)
                raw = head_probabilities(model.get_classifier(), features[name], hp.use_flip)
            else:
                probs = predict_probabilities(model, split.images, prep, hp.use_flip, self.device,
                                              hp.precision_dtype, temperature=temperature)
                raw = probs if temperature == 1.0 else predict_probabilities(
                    model, split.images, prep, hp.use_flip, self.device, hp.precision_dtype)
            log_probs = probs.clamp_min(1e-12).log()
            labels = torch.from_numpy(split.labels)
            ev = evaluate_logits(log_probs, labels, data.class_labels, name, hp.top_k,
                                 calibration_error=expected_calibration_error(probs, labels),
                                 calibration_error_uncalibrated=expected_calibration_error(raw, labels))
            write_evaluation(ev, data.class_labels, out_dir)
            log.info("%s: accuracy %.4f, top-%d accuracy %.4f", name, ev.accuracy, ev.top_k, ev.top_k_accuracy)
            out.append(ev)
        return out


@torch.no_grad()
def head_probabilities(head: nn.Module, features: np.ndarray, use_flip: bool, temperature: float = 1.0
                       ) -> torch.Tensor:
    """Probabilities of a head on cached features (N x views x D): the same numbers as the whole model's."""
    head = head.eval()
    x = torch.from_numpy(features)
    views = range(x.shape[1]) if use_flip else range(1)
    return average_softmax([head(x[:, v]) for v in views], temperature)

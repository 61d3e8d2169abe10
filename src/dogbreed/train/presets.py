"""What the quality presets add to the staged recipe: augmented views for the head, a held-out part of train/
with a probe head fitted without it, and the calibration (temperature, not-a-dog and uncertain thresholds) set on
it. The preset tables themselves live in `dogbreed.config.PRESETS` (hyperparameters must be known before any of
this is imported).
"""

from __future__ import annotations

import copy
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from dogbreed.config import Hyperparameters
from dogbreed.data.cache import CachedSplit
from dogbreed.models.imagenet import DOG_CLASSES, attach_imagenet_head, last_layers_copy
from dogbreed.models.inference import IMAGENET_HEAD, ServedModel, dog_probability
from dogbreed.preprocessing import Preprocessing, to_input
from dogbreed.train.calibration import Calibration
from dogbreed.train.features import FeatureBatches
from dogbreed.train.recipe import AnchoredLoss, make_optimizer, make_scheduler
from dogbreed.train.trainer import Callback, Trainer, TrainerConfig
from dogbreed.train.view_features import ViewFeatures, extract_view_features, view_names


def split_view_features(model: nn.Module, split: CachedSplit, training: bool, prep: Preprocessing,
                        weights_key: str, hp: Hyperparameters, device: str,
                        on_progress: Callable[[int], None] | None) -> ViewFeatures:
    """N x V x D features: for training photos the centre, its mirror and the preset's random resized crops; for
    evaluation only the views the served model sees (the mirror only with test-time flip)."""
    if training:
        views = view_names(int(hp.preset_value("crop_views")))
    else:
        views = view_names(0) if hp.use_flip else view_names(0)[:1]
    return extract_view_features(model, split.images, weights_key, split.key, prep, views, seed=hp.seed,
                                 keep_activations=bool(hp.preset_value("last_block_epochs")), device=device,
                                 precision_dtype=hp.precision_dtype, on_progress=on_progress)


def served_views(features: np.ndarray, use_flip: bool) -> np.ndarray:
    """The views a served model sees of each photo: the centre crop, and its mirror with test-time flip."""
    return features[:, :2] if use_flip else features[:, :1]


def fit_head_copy(head: nn.Linear, features: np.ndarray, labels: np.ndarray, hp: Hyperparameters, anchor: float,
                  epochs: int, lr: float, callbacks: list[Callback]) -> nn.Linear:
    """A copy of `head` trained as the job's head stage trains it (same loss, optimizer, schedule, dropout)."""
    probe = copy.deepcopy(head)
    torch.manual_seed(hp.seed)
    opt = make_optimizer(list(probe.parameters()), hp, lr)
    Trainer(nn.Sequential(nn.Dropout(0.2), probe),
            FeatureBatches(np.ascontiguousarray(features), labels, hp.mini_batch_size, train=True, seed=hp.seed),
            None, opt, TrainerConfig(epochs=epochs, stage="holdout-probe", top_k=hp.top_k),
            loss_fn=AnchoredLoss(probe, anchor, hp.label_smoothing), scheduler=make_scheduler(opt, hp, epochs),
            callbacks=callbacks).fit()
    return probe.eval()


@torch.no_grad()
def head_view_logits(head: nn.Module, features: np.ndarray) -> torch.Tensor:
    """N x V x C logits of a head on cached features of V views."""
    x = torch.from_numpy(np.ascontiguousarray(features))
    return torch.stack([head.eval()(x[:, v]) for v in range(x.shape[1])], 1)


def kept_imagenet_head(model: nn.Module) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(weight, bias) of the ImageNet classifier a model keeps on its pooled features (incremental training)."""
    kept = getattr(model, IMAGENET_HEAD, None)
    if kept is None or kept.top is not None:
        return None
    return kept.classifier.weight.detach(), kept.classifier.bias.detach()


@torch.no_grad()
def feature_dog_scores(imagenet_head: tuple[torch.Tensor, torch.Tensor] | None, features: np.ndarray
                       ) -> np.ndarray:
    """Dog probability of each photo from cached features (views averaged), by the ImageNet classifier; none
    without one."""
    if imagenet_head is None or imagenet_head[0].shape[0] != 1000:
        return np.zeros(0, np.float32)
    weight, bias = imagenet_head
    x = torch.from_numpy(np.ascontiguousarray(features))
    classes = torch.tensor(DOG_CLASSES)
    scores = [dog_probability(x[:, v] @ weight.T + bias, classes) for v in range(x.shape[1])]
    return (sum(scores) / len(scores)).numpy()


@torch.no_grad()
def image_logits_and_dog_scores(model: nn.Module, squares: np.ndarray, prep: Preprocessing, use_flip: bool,
                                device: str, batch_size: int = 64) -> tuple[torch.Tensor, np.ndarray]:
    """N x V x C logits and N dog scores of images, for a model whose backbone was trained (no cached features)."""
    model = model.to(device).eval()
    served = ServedModel(model, use_flip, dog_classes=list(DOG_CLASSES))
    n_views, n_classes = (2 if use_flip else 1), model.get_classifier().out_features
    logits, dogs = [torch.zeros(0, n_views, n_classes)], [np.zeros(0, np.float32)]
    for start in range(0, len(squares), batch_size):
        x = to_input(squares[start:start + batch_size], prep).to(device)
        views = [x, x.flip(3)] if use_flip else [x]
        logits.append(torch.stack([model(v).float().cpu() for v in views], 1))
        if served.with_dog:
            dogs.append(served(x)[1].float().cpu().numpy())
    return torch.cat(logits), np.concatenate(dogs)


def last_block_stage(model: nn.Module, data: Any, features: dict[str, np.ndarray], held: np.ndarray,
                     imagenet_head: Any, hp: Hyperparameters, epochs: int, epoch_offset: int,
                     callbacks: list[Callback], view_features: Callable[[nn.Module, Any, str], ViewFeatures],
                     device: str) -> tuple[torch.Tensor, np.ndarray, str | None]:
    """Fine-tuning of the last block on its cached input after the head (`last_block_epochs`; in no preset). It
    trains without the held-out photos, which then give the calibration its logits; the dog score keeps reading the
    frozen backbone (a frozen copy of the tuned layers is kept for it). `features` of the evaluation splits are
    replaced by the tuned model's. Returns (held-out logits, dog scores of train/, stop reason)."""
    from dogbreed.train.partial_features import finetune_last_block, refeaturize

    dog_scores = np.zeros(0, np.float32)
    if imagenet_head is not None and imagenet_head[0].shape[0] == 1000:
        dog_scores = feature_dog_scores(imagenet_head, served_views(features["train"], hp.use_flip))
        attach_imagenet_head(model, imagenet_head, last_layers_copy(model))
    train = view_features(model, data, "train").activations
    valid = view_features(model, data, "valid").activations
    labels = data.splits["train"].labels
    trainer = finetune_last_block(model, train, labels, ~held, hp, epochs, callbacks, epoch_offset,
                                  valid=(valid, data.splits["valid"].labels), device=device)
    features["valid"] = refeaturize(model, valid)
    if "test" in data.splits:
        features["test"] = refeaturize(model, view_features(model, data, "test").activations)
    n_views = 2 if hp.use_flip else 1
    held_features = refeaturize(model, np.asarray(train[np.flatnonzero(held)][:, :n_views]))
    return head_view_logits(model.get_classifier(), held_features), dog_scores, trainer.state.stop_reason


def card_fields(calibration: Calibration | None, has_dog_head: bool, preset: str) -> dict[str, Any]:
    """The model card's calibration fields (temperature, not-a-dog, uncertain)."""
    if calibration is None:
        return {"preset": preset}
    fields: dict[str, Any] = {"preset": preset, "temperature": calibration.temperature,
                              "uncertain_below": calibration.uncertain_below,
                              "calibration": calibration.to_dict()}
    if has_dog_head:
        fields["not_a_dog"] = {
            "score": "ImageNet probability of the dog classes (the backbone's own classifier)",
            "dog_classes": list(DOG_CLASSES), "threshold": calibration.dog_threshold,
            "train_photos_rejected": round(calibration.train_dog_rejected, 4)}
    return fields


def holdout_metrics(calibration: Calibration | None) -> dict[str, float]:
    """The held-out part's figures for the job's metrics (the probe head's, before the refit on all of train/)."""
    if calibration is None:
        return {}
    return {"holdout:accuracy": calibration.holdout_accuracy, "holdout:ece": calibration.holdout_ece_after,
            "holdout:ece_uncalibrated": calibration.holdout_ece_before, "temperature": calibration.temperature}


def has_dog_head(model: nn.Module) -> bool:
    return hasattr(model, IMAGENET_HEAD)

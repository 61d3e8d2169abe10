"""The pre-flight check: settings that cannot work on the data at hand, said before any compute is spent.

SageMaker has no such check; that is how the seed notebook trained ResNet-18 from random weights on 60 photos per
breed (3% validation accuracy) with weight decay tuned up to 0.99. Each warning is one line with the fix. They are
warnings, not errors: the algorithm's semantics are kept, and the user decides.
"""

from __future__ import annotations

import logging
from typing import Any

from dogbreed.config import Hyperparameters
from dogbreed.data.layout import DatasetLayout

log = logging.getLogger("dogbreed")

MIN_PHOTOS_FROM_SCRATCH = 300  # per class: below this, random initialisation stays near chance on breeds
MAX_USEFUL_WEIGHT_DECAY = 0.1
MAX_USEFUL_LR = {"adam": 0.05, "adamw": 0.05, "rmsprop": 0.05, "sgd": 1.0, "nag": 1.0}
MIN_USEFUL_LR = 1e-7


def training_warnings(hp: Hyperparameters, layout: DatasetLayout) -> list[str]:
    out: list[str] = []
    train = layout.splits.get("train")
    counts = train.class_counts() if train else {}
    per_class = sorted(counts.values())
    median = per_class[len(per_class) // 2] if per_class else 0
    backbone = hp.backbone_name
    if not hp.use_pretrained_model and median < MIN_PHOTOS_FROM_SCRATCH:
        out.append(f"use_pretrained_model=0 trains {backbone} from random weights on about {median} photos per class "
                   f"(a few hundred per class are needed): expect near-chance accuracy; set use_pretrained_model=1, "
                   "or backbone=efficientnet_lite0 (pretrained, works offline)")
    if not hp.use_pretrained_model and hp.train_mode == "head":
        out.append("train_mode=head on a randomly initialised backbone trains a classifier on random features; "
                   "set use_pretrained_model=1 or train_mode=full")
    out += hyperparameter_warnings(hp.to_dict())
    n_classes, n_train = len(layout.classes), len(train.files) if train else 0
    if hp.num_classes is not None and hp.num_classes != n_classes:
        more = "more classes declared than the data has" if hp.num_classes > n_classes else "fewer classes declared"
        out.append(f"num_classes={hp.num_classes} but the data has {n_classes} classes ({more}): the data's "
                   f"{n_classes} are used; drop num_classes or fix it")
    if hp.num_training_samples is not None and hp.num_training_samples != n_train:
        out.append(f"num_training_samples={hp.num_training_samples} but the training data has {n_train} images: the "
                   "data's count is used")
    if n_train and hp.mini_batch_size > n_train:
        out.append(f"mini_batch_size={hp.mini_batch_size} is larger than the training set ({n_train} images): every "
                   f"step uses all of it; use at most {n_train}")
    return out


def hyperparameter_warnings(values: dict[str, Any]) -> list[str]:
    """Warnings that depend on hyperparameter values alone (also used for the ends of tuning ranges)."""
    out = []
    wd = values.get("weight_decay")
    if wd is not None and float(wd) > MAX_USEFUL_WEIGHT_DECAY:
        out.append(f"weight_decay={float(wd):g} is far above useful values (1e-5 to 1e-2): it pulls every weight "
                   "towards zero faster than the data can train it; use about 1e-4")
    lr, opt = values.get("learning_rate"), values.get("optimizer", "adamw")
    if lr is not None:
        lr = float(lr)
        if lr > MAX_USEFUL_LR.get(opt, 1.0):
            out.append(f"learning_rate={lr:g} is very high for optimizer={opt}: training will likely diverge; "
                       f"use {'1e-4 to 1e-2' if opt in ('adam', 'adamw', 'rmsprop') else '1e-3 to 0.1'}")
        elif 0 < lr < MIN_USEFUL_LR:
            out.append(f"learning_rate={lr:g} is so small that the weights will barely change; use 1e-4 or more")
    eps = values.get("eps")
    if eps is not None and float(eps) == 0.0 and opt in ("adam", "adamw", "rmsprop"):
        out.append("eps=0 would divide by zero in the optimizer: it is raised to 1e-12")
    return out


def tuning_warnings(static: dict[str, Any], ranges: list[Any], objective_metric: str,
                    layout: DatasetLayout) -> list[str]:
    """For a tuning job: the static values, the ends of every range, and whether the objective is ever logged."""
    out = []
    base = Hyperparameters.from_mapping(static)
    out += [w for w in training_warnings(base, layout)
            if not any(w.startswith(f"{r.name}=") for r in ranges)]
    for r in ranges:
        if r.type == "Categorical":
            continue
        for end in (r.min, r.max):
            for w in hyperparameter_warnings({**static, r.name: end}):
                if w.startswith(f"{r.name}="):
                    out.append(f"part of the {r.name} range ({r.min:g} to {r.max:g}) cannot work: {w}")
    if objective_metric.startswith("test:") and "test" not in layout.splits:
        out.append(f"objective {objective_metric} is never logged: the data has no test split; use "
                   "validation:accuracy")
    return list(dict.fromkeys(out))


def report(warnings: list[str]) -> None:
    for w in warnings:
        log.warning("pre-flight: %s", w)

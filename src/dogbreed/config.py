"""Hyperparameters, their validation, and where dogbreed keeps its state.

Names follow the SageMaker built-in image-classification algorithm where one exists
(`mini_batch_size`, `epochs`, `learning_rate`, `optimizer`, `top_k`, `precision_dtype`, ...).
This module imports nothing else from dogbreed: everything else imports it.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping


class UserError(Exception):
    """A mistake in what the user asked for: reported as one line, never as a traceback."""


def home() -> Path:
    """Root of all dogbreed state (jobs, caches, MLflow database); `DOGBREED_HOME` or ./dogbreed-home."""
    path = Path(os.environ.get("DOGBREED_HOME") or "dogbreed-home").expanduser().resolve()
    if path.exists() and not path.is_dir():
        raise UserError(f"DOGBREED_HOME {path} is a file, not a folder: point it at a folder")
    return path


def default_tracking_uri() -> str:
    return f"sqlite:///{home() / 'mlflow.db'}"


def tracking_uri() -> str:
    """MLflow tracking URI: `MLFLOW_TRACKING_URI` when set, else SQLite under the dogbreed home."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    try:
        home().mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create the dogbreed home {home()}: {e.strerror}") from None
    return default_tracking_uri()


def _hp(default: Any, help: str, *, choices: tuple = (), low: float | None = None, high: float | None = None,
        low_open: bool = False) -> Any:
    """A hyperparameter field with its allowed values kept next to it."""
    meta = {"help": help, "choices": choices, "low": low, "high": high, "low_open": low_open}
    return field(default=default, metadata=meta)


OPTIMIZERS = ("sgd", "nag", "adam", "adamw", "rmsprop")
AUGMENTATIONS = ("none", "crop", "crop_color", "crop_color_transform")
PRECISIONS = ("float32", "bfloat16", "float16")
TRAIN_MODES = ("head", "last_blocks", "full")
SCHEDULERS = ("none", "step", "cosine")
PRESET_NAMES = ("fast", "balanced", "best")
# What each quality preset fills in for the hyperparameters left unset (None). Chosen on a held-out 25% of train/
# (120 breeds; bench/recipe_screen.py, bench/results/recipe_screen.json), never on valid/: Lite2 at 292 pixels beats
# Lite2 at its native 260 by a point (86.4% -> 87.6%) for 1.26x the pixels; at 320 (`best`) it gains another 0.4 of
# a point with a lower NLL for 1.2x the pixels of 292, one view served either way (the mirror view as well would
# double the serving cost for a similar 0.4). Both gains over 292 are within the held-out set's noise.
PRESETS: dict[str, dict[str, Any]] = {
    "fast": {"backbone": "efficientnet_lite0", "test_time_flip": True, "crop_views": 0, "last_block_epochs": 0,
             "head_anchor": 0.1},
    "balanced": {"backbone": "efficientnet_lite2", "image_shape": "3,292,292", "test_time_flip": False,
                 "crop_views": 0, "last_block_epochs": 0, "head_anchor": 0.1},
    "best": {"backbone": "efficientnet_lite2", "image_shape": "3,320,320", "test_time_flip": False, "crop_views": 0,
             "last_block_epochs": 0, "head_anchor": 0.1},
}


@dataclass(frozen=True)
class Hyperparameters:
    preset: str = _hp("balanced", "quality preset: fast, balanced or best (the recipe's backbone, views and serving "
                      "choices; hyperparameters given explicitly win)", choices=PRESET_NAMES)
    backbone: str | None = _hp(None, "registered backbone or any timm model name; empty: the preset's")
    num_layers: int | None = _hp(None, "ResNet depth, as in SageMaker (18 -> resnet18); overrides backbone",
                                 choices=(None, 18, 34, 50, 101, 152))
    use_pretrained_model: int = _hp(1, "1: start from pretrained weights (fail if unavailable); 0: random init",
                                    choices=(0, 1))
    weights_file: str | None = _hp(None, "local weights file (.safetensors or state dict) for a timm backbone")
    train_mode: str = _hp("head", "what to train: head, last_blocks or full", choices=TRAIN_MODES)
    trainable_blocks: int = _hp(2, "with train_mode=last_blocks: how many final blocks to unfreeze", low=1)
    epochs: int = _hp(10, "epochs of the trained stage (the head itself with train_mode=head)", low=0)
    head_epochs: int = _hp(10, "train_mode last_blocks/full: head-only epochs on cached features first", low=0)
    mini_batch_size: int = _hp(32, "images per step", low=1)
    learning_rate: float = _hp(1e-3, "learning rate of the trained stage", low=0.0, low_open=True)
    head_learning_rate: float = _hp(1e-3, "learning rate of the head-only epochs before unfreezing", low=0.0,
                                    low_open=True)
    optimizer: str = _hp("adamw", "sgd, nag (Nesterov), adam, adamw or rmsprop", choices=OPTIMIZERS)
    momentum: float = _hp(0.9, "momentum (sgd, nag, rmsprop)", low=0.0, high=1.0)
    eps: float = _hp(1e-8, "epsilon (adam, adamw, rmsprop); 0 is raised to 1e-12 where it would divide", low=0.0,
                     high=1.0)
    gamma: float = _hp(0.9, "rmsprop decay factor of the squared-gradient average", low=0.0, high=1.0)
    weight_decay: float = _hp(1e-4, "weight decay", low=0.0, high=1.0)
    beta_1: float = _hp(0.9, "adam beta_1", low=0.0, high=1.0)
    beta_2: float = _hp(0.999, "adam beta_2", low=0.0, high=1.0)
    label_smoothing: float = _hp(0.1, "label smoothing of the cross-entropy loss", low=0.0, high=0.99)
    augmentation_type: str = _hp("crop", "none, crop, crop_color or crop_color_transform", choices=AUGMENTATIONS)
    precision_dtype: str = _hp("float32", "float32, bfloat16 (CPU/GPU) or float16 (GPU only)", choices=PRECISIONS)
    top_k: int = _hp(5, "k of the top-k accuracy", low=1)
    lr_scheduler: str = _hp("cosine", "none, step or cosine", choices=SCHEDULERS)
    lr_scheduler_factor: float = _hp(0.1, "step scheduler: multiply the rate by this", low=0.0, low_open=True,
                                     high=1.0)
    lr_scheduler_step: str = _hp("", "step scheduler: comma-separated epochs at which to decay, e.g. '10,20'")
    early_stopping: bool = _hp(False, "stop when validation accuracy stops improving")
    early_stopping_min_epochs: int = _hp(10, "never stop before this epoch", low=0)
    early_stopping_patience: int = _hp(5, "epochs without improvement before stopping", low=1)
    early_stopping_tolerance: float = _hp(0.0, "smallest relative improvement that counts", low=0.0)
    imagenet_head_init: bool = _hp(True, "start head rows from the ImageNet classifier where class names match")
    head_anchor: float | None = _hp(None, "L2 pull of the head towards its starting (ImageNet) weights, L2-SP; 0: "
                                    "off; empty: the preset's", low=0.0)
    test_time_flip: bool | None = _hp(None, "average predictions over the image and its mirror at evaluation and "
                                      "serving; empty: the preset's")
    crop_views: int | None = _hp(None, "random resized crops per training photo whose features are cached for the "
                                 "head (besides the centre and its mirror); empty: the preset's", low=0)
    last_block_epochs: int | None = _hp(None, "train_mode=head, EfficientNet backbones: epochs fine-tuning the "
                                        "last block on its cached input after the head (0: none); empty: the "
                                        "preset's", low=0)
    holdout_fraction: float = _hp(0.15, "share of train/ held out to fit the temperature and the not-a-dog and "
                                  "uncertain thresholds (head mode: the head is then refit on all of train/)",
                                  low=0.0, high=0.5)
    seed: int = _hp(0, "random seed", low=0)
    num_workers: int = _hp(2, "processes decoding images", low=0)
    image_shape: str = _hp("", "input shape 'C,H,W' (SageMaker's); empty: the preset's, else the backbone's own size")
    resize: int | None = _hp(None, "shorter side images are resized to before the crop; empty: the backbone's own",
                             low=1)
    use_weighted_loss: bool = _hp(False, "weight the loss by inverse class frequency (for imbalanced data)")
    checkpoint_frequency: int = _hp(1, "write a resumable checkpoint every N epochs (0: only at the end)", low=0)
    num_classes: int | None = _hp(None, "SageMaker's; the data decides, a mismatch is warned about", low=1)
    num_training_samples: int | None = _hp(None, "SageMaker's; the data decides, a mismatch is warned about", low=1)
    multi_label: int = _hp(0, "SageMaker's multi_label; only 0 (one breed per photo) is supported", choices=(0,))
    kv_store: str = _hp("", "SageMaker's distributed key-value store; accepted and ignored (see instance_count)")

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            meta = f.metadata
            if meta["choices"] and value not in meta["choices"]:
                allowed = ", ".join(str(c) for c in meta["choices"] if c is not None)
                raise UserError(f"{f.name}={value!r} is not one of: {allowed}")
            if value is None or isinstance(value, (str, bool)):
                continue
            low, high = meta["low"], meta["high"]
            if low is not None and (value < low or (meta["low_open"] and value == low)):
                op = ">" if meta["low_open"] else ">="
                raise UserError(f"{f.name}={value} is out of range: it must be {op} {low}")
            if high is not None and value > high:
                raise UserError(f"{f.name}={value} is out of range: it must be <= {high}")
        if self.precision_dtype == "float16" and not _cuda_available():
            raise UserError("precision_dtype=float16 needs a GPU; use bfloat16 or float32 on CPU")
        self.decay_epochs()  # validates the string
        self.input_shape()  # validates the string

    def input_shape(self) -> tuple[int, int, int] | None:
        """(channels, height, width) from image_shape (or the preset's), or None for the backbone's own size."""
        shape = str(self.image_shape).strip() or str(PRESETS[self.preset].get("image_shape", ""))
        if not shape:
            return None
        try:
            c, h, w = (int(v) for v in shape.split(","))
        except ValueError:
            raise UserError(f"image_shape={shape!r} must look like '3,224,224'") from None
        if c != 3 or h != w or not 32 <= h <= 1024:
            raise UserError(f"image_shape={shape!r}: 3 channels and a square side of 32-1024 pixels "
                            "are supported")
        return c, h, w

    @property
    def safe_eps(self) -> float:
        """eps as optimizers use it: SageMaker allows 0, which would divide by zero."""
        return max(self.eps, 1e-12)

    def preset_value(self, name: str) -> Any:
        """The hyperparameter as the job uses it: the given value, or the preset's where none was given."""
        value = getattr(self, name)
        return PRESETS[self.preset][name] if value is None else value

    @property
    def backbone_name(self) -> str:
        return f"resnet{self.num_layers}" if self.num_layers else self.preset_value("backbone")

    @property
    def use_flip(self) -> bool:
        return bool(self.preset_value("test_time_flip"))

    def decay_epochs(self) -> list[int]:
        try:
            return [int(s) for s in str(self.lr_scheduler_step).split(",") if s.strip()]
        except ValueError:
            raise UserError(f"lr_scheduler_step={self.lr_scheduler_step!r} must be comma-separated epochs") from None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> "Hyperparameters":
        """Builds from strings or typed values (CLI, YAML, MLflow params), naming any unknown key."""
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise UserError(f"unknown hyperparameter {unknown[0]!r} (known: {', '.join(known)})")
        typed = {name: _coerce(name, known[name].type, v) for name, v in values.items()}
        return cls(**typed)

    def replace(self, **changes: Any) -> "Hyperparameters":
        return Hyperparameters.from_mapping({**self.to_dict(), **changes})


def _coerce(name: str, type_name: Any, value: Any) -> Any:
    type_name = str(type_name)
    if value is None or (isinstance(value, str) and value.lower() in ("none", "null") and "None" in type_name):
        return None
    try:
        if type_name.startswith("bool"):
            if isinstance(value, str):
                if value.lower() in ("1", "true", "yes", "on"):
                    return True
                if value.lower() in ("0", "false", "no", "off"):
                    return False
                raise ValueError
            return bool(value)
        if type_name.startswith("int"):
            if isinstance(value, bool):
                raise ValueError
            number = float(value) if isinstance(value, str) else value
            if isinstance(number, float) and not (number.is_integer() and abs(number) < 2**53):
                raise ValueError
            return int(number)
        if type_name.startswith("float"):
            if isinstance(value, bool):
                raise ValueError
            number = float(value)
            if number != number or number in (float("inf"), float("-inf")):
                raise ValueError
            return number
        return str(value)
    except (TypeError, ValueError):
        kind = {"int": "a whole number", "float": "a number", "bool": "true or false"}.get(
            type_name.split(" ")[0].split("|")[0], f"a valid {type_name.split(' ')[0]}")
        raise UserError(f"{name}={value!r} is not {kind}") from None


def load_yaml(path: str | os.PathLike) -> dict[str, Any]:
    import yaml

    p = Path(path)
    if not p.is_file():
        raise UserError(f"config file not found: {p}")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise UserError(f"config file {p} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise UserError(f"config file {p} must hold a mapping of hyperparameters")
    return data


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()

"""Backbone features of several views per photo (centre, mirror, random resized crops), cached on disk.

The richer presets train their head on a few augmented views of every training photo; computing each view once
and caching it keeps that affordable on a CPU. Optionally the activations entering the backbone's last block are
kept too, so that block (and the layers after it) can be fine-tuned without running the frozen part again.
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dogbreed.config import home
from dogbreed.devices import autocast
from dogbreed.models.inference import stem, top
from dogbreed.preprocessing import Preprocessing, to_input

CROP_SCALE = (0.35, 1.0)  # area of the square kept by a random resized crop
CROP_RATIO = (3 / 4, 4 / 3)


def view_names(augmented: int) -> tuple[str, ...]:
    """centre, mirror, then `augmented` random resized crops (each mirrored at random)."""
    return ("center", "flip", *(f"crop{i}" for i in range(augmented)))


def random_resized_crops(squares: np.ndarray, prep: Preprocessing, rng: np.random.Generator) -> torch.Tensor:
    """timm-style RandomResizedCrop + random mirror of square uint8 images -> normalised B x 3 x H x W."""
    raw = torch.from_numpy(np.ascontiguousarray(squares)).permute(0, 3, 1, 2).float().div_(255)
    full, size = raw.shape[-1], prep.input_size
    out = []
    for img in raw:
        area = full * full * rng.uniform(*CROP_SCALE)
        ratio = math.exp(rng.uniform(math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1])))
        w = min(full, max(8, round(math.sqrt(area * ratio))))
        h = min(full, max(8, round(math.sqrt(area / ratio))))
        top, left = int(rng.integers(0, full - h + 1)), int(rng.integers(0, full - w + 1))
        crop = img[None, :, top:top + h, left:left + w]
        crop = F.interpolate(crop, size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0]
        out.append(crop.flip(2) if rng.random() < 0.5 else crop)
    x = torch.stack(out).clamp_(0, 1)
    mean = torch.tensor(prep.mean).view(1, 3, 1, 1)
    std = torch.tensor(prep.std).view(1, 3, 1, 1)
    return x.sub_(mean).div_(std).contiguous(memory_format=torch.channels_last)


def view_batch(squares: np.ndarray, prep: Preprocessing, view: str, rng: np.random.Generator) -> torch.Tensor:
    if view == "center":
        return to_input(squares, prep)
    if view == "flip":
        return to_input(squares, prep).flip(3)
    return random_resized_crops(squares, prep, rng)


@dataclass(frozen=True)
class ViewFeatures:
    features: np.ndarray  # N x V x D float32 pooled features
    activations: np.ndarray | None  # N x V x C x h x w float16: input of the last block (memory-mapped)
    views: tuple[str, ...]


class _StemAndTop(nn.Module):
    """Pooled features, and (EfficientNets) the last block's input on the way."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.split = all(hasattr(model, a) for a in ("conv_stem", "bn1", "blocks", "conv_head", "bn2"))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.split:
            f = self.model.forward_head(self.model.forward_features(x), pre_logits=True)
            return f[:, :1], f
        a = stem(self.model, x)
        return a, top(self.model, a)


def onnx_backbone(model: nn.Module, key: str, size: int) -> Callable[[torch.Tensor, bool], tuple]:
    """The frozen backbone in ONNX Runtime (about 3x PyTorch's speed for these networks on a CPU), exported once
    per weights and input size; returns run(x, with_activations) -> (activations or None, pooled)."""
    import io
    import warnings

    import onnxruntime as ort

    digest = hashlib.sha1(f"{key}|{size}".encode()).hexdigest()[:20]
    path = home() / "cache" / "onnx-backbones" / f"{digest}.onnx"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript-based exporter needs no extra packages
            torch.onnx.export(_StemAndTop(model.float().eval()), (torch.zeros(1, 3, size, size),), buf,
                              dynamo=False, opset_version=17, input_names=["input"],
                              output_names=["activations", "features"],
                              dynamic_axes={"input": {0: "batch"}, "activations": {0: "batch"},
                                            "features": {0: "batch"}})
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_bytes(buf.getvalue())
        os.replace(tmp, path)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = torch.get_num_threads()
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    def run(x: torch.Tensor, with_activations: bool) -> tuple:
        feed = {"input": np.ascontiguousarray(x.contiguous().numpy())}
        if with_activations:
            a, f = session.run(["activations", "features"], feed)
            return a, f
        return None, session.run(["features"], feed)[0]

    return run


def _torch_backbone(model: nn.Module, device: str, precision_dtype: str) -> Callable[[torch.Tensor, bool], tuple]:
    model = model.to(device, memory_format=torch.channels_last).eval()

    def run(x: torch.Tensor, with_activations: bool) -> tuple:
        with autocast(device, precision_dtype):
            a = stem(model, x.to(device))
            f = top(model, a)
        return (a.float().cpu().numpy() if with_activations else None), f.float().cpu().numpy()

    return run


@torch.no_grad()
def extract_view_features(model: nn.Module, images: np.ndarray, weights_key: str, images_key: str,
                          prep: Preprocessing, views: tuple[str, ...], *, seed: int = 0, keep_activations: bool = False,
                          batch_size: int = 32, device: str = "cpu", precision_dtype: str = "float32",
                          on_progress: Callable[[int], None] | None = None) -> ViewFeatures:
    """Features of every view of every image, cached by the weights', the images' and the views' keys."""
    digest = hashlib.sha1(f"{weights_key}|{images_key}|{prep.key()}|{','.join(views)}|{seed}|{CROP_SCALE}".encode()).hexdigest()[:20]
    root = home() / "cache" / "view-features"
    feat_path, act_path = root / f"{digest}.npy", root / f"{digest}.act.npy"
    if feat_path.exists() and (act_path.exists() or not keep_activations):
        if on_progress:
            on_progress(len(images))
        acts = np.load(act_path, mmap_mode="r") if keep_activations else None
        return ViewFeatures(np.load(feat_path), acts, views)
    if device == "cpu" and precision_dtype == "float32":
        backbone = onnx_backbone(model, weights_key, prep.input_size)
    else:
        backbone = _torch_backbone(model, device, precision_dtype)
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    n, pid = len(images), os.getpid()
    feats = np.zeros((n, len(views), model.num_features), np.float32)
    acts = None
    for start in range(0, n, batch_size):
        squares = images[start:start + batch_size]
        for v, view in enumerate(views):
            a, f = backbone(view_batch(squares, prep, view, rng), keep_activations)
            feats[start:start + len(squares), v] = f
            if keep_activations:
                if acts is None:
                    acts = np.lib.format.open_memmap(act_path.with_suffix(f".tmp{pid}.npy"), mode="w+",
                                                     dtype=np.float16, shape=(n, len(views), *a.shape[1:]))
                acts[start:start + len(squares), v] = a.astype(np.float16)
        if on_progress:
            on_progress(len(squares))
    if keep_activations and acts is None:  # no images
        acts = np.lib.format.open_memmap(act_path.with_suffix(f".tmp{pid}.npy"), mode="w+", dtype=np.float16,
                                         shape=(0, len(views), 1, 1, 1))
    if acts is not None:
        acts.flush()
        del acts
        os.replace(act_path.with_suffix(f".tmp{pid}.npy"), act_path)
    tmp = feat_path.with_suffix(f".tmp{pid}.npy")
    np.save(tmp, feats)
    os.replace(tmp, feat_path)
    return ViewFeatures(feats, np.load(act_path, mmap_mode="r") if keep_activations else None, views)

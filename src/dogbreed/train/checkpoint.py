"""Resumable checkpoints of a training stage: the model, the optimizer, the epoch, the history and the RNG state.

Tensors go to safetensors and everything else to JSON, never pickle (a checkpoint from elsewhere must not be able
to run code). Each checkpoint is two files written under temporary names and renamed, the JSON last and naming the
SHA-256 of its tensors, so a crash mid-write leaves the previous checkpoint whole and a damaged one is refused.
The location is the job's folder or any fsspec URI (`checkpoint_uri`, SageMaker's `checkpoint_s3_uri`).
The learning-rate schedule is not stored: it is a function of the epoch and is replayed on resume.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
import warnings
from dataclasses import dataclass, field
from typing import Any

import fsspec
import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors
from torch import nn

from dogbreed.config import UserError
from dogbreed.train.trainer import Callback, Trainer

log = logging.getLogger("dogbreed")
FORMAT = 1
KEEP = 2  # checkpoints kept: the newest, and the one before in case the newest is being written


@dataclass(frozen=True)
class Checkpoint:
    """What a stage needs to go on exactly where it was after `stage_epoch` of its epochs."""
    stage: str  # head | finetune
    stage_epoch: int
    global_epoch: int
    global_step: int
    history: list[dict[str, float]]  # the stage's per-epoch metrics so far
    stages_done: dict[str, int]  # epochs of every stage up to here: {"head": 10, "finetune": 3}
    tensors: dict[str, torch.Tensor] = field(repr=False)
    meta: dict[str, Any] = field(default_factory=dict)  # optimizer param groups, non-tensor optimizer state
    sequence: int = 0

    def model_state(self) -> dict[str, torch.Tensor]:
        return {k[len("model."):]: v for k, v in self.tensors.items() if k.startswith("model.")}


class CheckpointStore:
    """The checkpoints of one job at one location (a folder or an fsspec URI)."""

    def __init__(self, location: str):
        self.location = location.rstrip("/")  # as given: workers on other nodes open the same one
        self.fs, self.root = fsspec.core.url_to_fs(self.location)

    def _path(self, name: str) -> str:
        return f"{self.root}/{name}"

    def _sequences(self) -> list[int]:
        if not self.fs.exists(self.root):
            return []
        found = []
        for path in self.fs.ls(self.root, detail=False):
            name = str(path).rstrip("/").rsplit("/", 1)[-1]
            if name.startswith("checkpoint-") and name.endswith(".json"):
                try:
                    found.append(int(name[len("checkpoint-"):-len(".json")]))
                except ValueError:
                    continue
        return sorted(found)

    def _write(self, name: str, payload: bytes) -> None:
        tmp = self._path(f".{name}.{uuid.uuid4().hex[:8]}.tmp")
        with self.fs.open(tmp, "wb") as f:
            f.write(payload)
        self.fs.mv(tmp, self._path(name))

    def save(self, ckpt: Checkpoint) -> int:
        self.fs.makedirs(self.root, exist_ok=True)
        sequences = self._sequences()
        seq = (sequences[-1] + 1) if sequences else 1
        blob = save_tensors({k: v.detach().cpu().contiguous() for k, v in ckpt.tensors.items()})
        self._write(f"checkpoint-{seq}.safetensors", blob)
        info = {"format": FORMAT, "stage": ckpt.stage, "stage_epoch": ckpt.stage_epoch,
                "global_epoch": ckpt.global_epoch, "global_step": ckpt.global_step, "history": ckpt.history,
                "stages_done": ckpt.stages_done, "meta": ckpt.meta,
                "tensors_sha256": hashlib.sha256(blob).hexdigest()}
        self._write(f"checkpoint-{seq}.json", json.dumps(info, default=_plain).encode())
        for old in sequences[:-(KEEP - 1) or None]:
            for suffix in (".json", ".safetensors"):
                self.fs.rm(self._path(f"checkpoint-{old}{suffix}"))
        return seq

    def latest(self) -> Checkpoint | None:
        sequences = self._sequences()
        if not sequences:
            return None
        seq = sequences[-1]
        where = self._path(f"checkpoint-{seq}")
        try:
            info = json.loads(self.fs.cat(where + ".json"))
            blob = self.fs.cat(where + ".safetensors")
        except (OSError, ValueError) as e:
            raise UserError(f"checkpoint {where} cannot be read ({str(e)[:80]})") from None
        if hashlib.sha256(blob).hexdigest() != info.get("tensors_sha256") or info.get("format") != FORMAT:
            raise UserError(f"checkpoint {where}.safetensors is damaged (its SHA-256 does not match)")
        return Checkpoint(info["stage"], info["stage_epoch"], info["global_epoch"], info["global_step"],
                          info["history"], info["stages_done"], load_tensors(blob), info["meta"], seq)


def _plain(o: Any) -> Any:
    if hasattr(o, "item"):
        return o.item()
    if isinstance(o, tuple):
        return list(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def trained_module(trainer: Trainer) -> nn.Module:
    """What the stage trains (the head alone on cached features: a checkpoint of kilobytes, not the backbone's
    megabytes), without a DistributedDataParallel wrapper."""
    return getattr(trainer.model, "module", trainer.model)


def capture(trainer: Trainer, stages_done: dict[str, int]) -> Checkpoint:
    """The trainer's state after its current epoch."""
    tensors = {f"model.{k}": v for k, v in trained_module(trainer).state_dict().items()}
    opt_state = trainer.optimizer.state_dict()
    plain_state: dict[str, dict[str, Any]] = {}
    for idx, values in opt_state["state"].items():
        for key, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.{idx}.{key}"] = value
            else:
                plain_state.setdefault(str(idx), {})[key] = value
    tensors["rng.torch"] = torch.get_rng_state()
    if torch.cuda.is_available() and trainer.device.type == "cuda":
        tensors["rng.cuda"] = torch.cuda.get_rng_state(trainer.device)
    meta = {"param_groups": opt_state["param_groups"], "optimizer_state": plain_state}
    if getattr(trainer, "_scaler", None) is not None:
        meta["grad_scaler"] = trainer._scaler.state_dict()
    return Checkpoint(trainer.config.stage, trainer.state.epoch, trainer.global_epoch, trainer.state.global_step,
                      list(trainer.state.history), {**stages_done, trainer.config.stage: trainer.state.epoch},
                      tensors, meta)


def restore(trainer: Trainer, ckpt: Checkpoint) -> None:
    """Puts a freshly built trainer of the same stage where the checkpoint left it."""
    trained_module(trainer).load_state_dict(ckpt.model_state())
    state: dict[Any, dict[str, Any]] = {}
    for key, value in ckpt.tensors.items():
        if key.startswith("optimizer."):
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = value
    for idx, values in ckpt.meta.get("optimizer_state", {}).items():
        state.setdefault(int(idx), {}).update(values)
    if trainer.scheduler is not None:  # replayed: it only depends on the epoch
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "scheduler.step() before optimizer.step()": intended here
            for _ in range(ckpt.stage_epoch):
                trainer.scheduler.step()
    trainer.optimizer.load_state_dict({"state": state, "param_groups": ckpt.meta["param_groups"]})
    if "grad_scaler" in ckpt.meta and getattr(trainer, "_scaler", None) is not None:
        trainer._scaler.load_state_dict(ckpt.meta["grad_scaler"])
    torch.set_rng_state(ckpt.tensors["rng.torch"])
    if "rng.cuda" in ckpt.tensors and trainer.device.type == "cuda":
        torch.cuda.set_rng_state(ckpt.tensors["rng.cuda"], trainer.device)
    trainer.state.epoch = ckpt.stage_epoch
    trainer.state.global_step = ckpt.global_step
    trainer.state.history = list(ckpt.history)


class Checkpointer(Callback):
    """Writes a checkpoint every `frequency` epochs of a stage and after its last epoch (0: only then)."""

    def __init__(self, store: CheckpointStore, frequency: int, stages_done: dict[str, int], writer: bool = True):
        self.store, self.frequency = store, frequency
        self.stages_done = stages_done
        self.writer = writer  # in a data-parallel job only one worker writes

    def on_epoch_end(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        last = trainer.state.epoch >= trainer.config.epochs or trainer.state.stop_reason is not None
        if not self.writer or not (last or (self.frequency and trainer.state.epoch % self.frequency == 0)):
            return
        ckpt = capture(trainer, self.stages_done)
        seq = self.store.save(ckpt)
        log.debug("checkpoint %d written: stage %s epoch %d", seq, ckpt.stage, ckpt.stage_epoch)

"""Export a trained classifier to ONNX (with its test-time flip and softmax inside the graph) and check parity."""

from __future__ import annotations

import hashlib
import io
import logging
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from dogbreed.config import UserError, home
from dogbreed.models.artifact import WEIGHTS, ModelCard, load_card, load_model
from dogbreed.models.inference import ServedModel

log = logging.getLogger("dogbreed")
PARITY_TOLERANCE = 1e-4


def onnx_path_for(model_dir: Path) -> Path:
    """Cached by the weights and by what the card puts into the graph (flip, temperature, dog classes)."""
    h = hashlib.sha1((Path(model_dir) / WEIGHTS).read_bytes())
    card = load_card(model_dir)
    h.update(f"{card.test_time_flip}|{card.temperature}|{card.not_a_dog.get('dog_classes')}".encode())
    return home() / "cache" / "onnx" / f"{h.hexdigest()[:20]}.onnx"


def export_onnx(model_dir: Path) -> tuple[Path, float]:
    """Exports once per model (cached by weights hash); returns the path and the parity error against PyTorch."""
    model, card = load_model(model_dir)
    served = served_model(model, card)
    path = onnx_path_for(model_dir)
    size = card.preprocessing.input_size
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        with warnings.catch_warnings():
            # The TorchScript-based exporter needs no extra packages (the dynamo one needs onnxscript).
            warnings.simplefilter("ignore")
            outputs = ["probabilities", "dog_probability"] if served.with_dog else ["probabilities"]
            torch.onnx.export(served, (torch.zeros(1, 3, size, size),), buf, dynamo=False, opset_version=17,
                              input_names=["input"], output_names=outputs,
                              dynamic_axes={"input": {0: "batch"}, **{o: {0: "batch"} for o in outputs}})
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(buf.getvalue())
        tmp.replace(path)
    error = parity_error(served, path, card)
    if error > PARITY_TOLERANCE:
        path.unlink(missing_ok=True)
        raise UserError(f"ONNX export does not match PyTorch (max probability difference {error:.2e}); "
                        "serve with --backend torch")
    log.info("exported %s to ONNX (parity: max probability difference %.1e)", model_dir, error)
    return path, error


def served_model(model: nn.Module, card: ModelCard) -> ServedModel:
    """What the endpoint runs: calibrated probabilities, and the dog probability when the card has a decision."""
    dog_classes = card.not_a_dog.get("dog_classes") if card.not_a_dog else None
    return ServedModel(model, card.test_time_flip, card.temperature, dog_classes).eval()


def parity_error(served: nn.Module, path: Path, card: ModelCard) -> float:
    import onnxruntime as ort

    size = card.preprocessing.input_size
    x = torch.from_numpy(np.random.default_rng(0).uniform(-1, 1, (3, 3, size, size)).astype(np.float32))
    with torch.no_grad():
        expected = served(x)
    expected = expected if isinstance(expected, tuple) else (expected,)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"input": x.numpy()})
    return max(float(np.abs(g - e.numpy()).max()) for g, e in zip(got, expected))

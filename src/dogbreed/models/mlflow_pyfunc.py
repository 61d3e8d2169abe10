"""A dogbreed model folder as a real MLflow model: an `MLmodel` file whose pyfunc flavour loads through this
module (MLflow's `loader_module` contract), the ONNX export alongside, and a signature taking image bytes (or
base64 strings) and returning every class's probability, or the top-k with `params={"top_k": k}`.

So `mlflow.pyfunc.load_model("models:/NAME/1").predict(pd.DataFrame({"image": [jpeg_bytes]}))` works with
MLflow's own tools (and `mlflow models serve`), while dogbreed's endpoint stays the fast path. The decode, crop
and normalisation are the shared inference transform (`dogbreed.data.images`, `dogbreed.preprocessing`), so the
predictions equal `dogbreed evaluate`'s and the endpoint's.
"""

from __future__ import annotations

import base64
import binascii
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from dogbreed.config import UserError
from dogbreed.models.artifact import load_card

MLMODEL, ONNX_FILE, INPUT = "MLmodel", "model.onnx", "image"


def write_mlflow_model(model_dir: Path) -> list[Path]:
    """Makes `model_dir` an MLflow model in place (no weights copied); returns the files it wrote."""
    import mlflow.pyfunc
    from mlflow.models import Model, ModelSignature
    from mlflow.types import ColSpec, DataType, ParamSchema, ParamSpec, Schema

    from dogbreed.models.onnx_export import export_onnx

    model_dir = Path(model_dir)
    card = load_card(model_dir)
    onnx = model_dir / ONNX_FILE
    if not onnx.exists():
        shutil.copyfile(export_onnx(model_dir)[0], onnx)
    signature = ModelSignature(
        inputs=Schema([ColSpec(DataType.binary, INPUT)]),
        outputs=Schema([ColSpec(DataType.double, label) for label in card.class_labels]),
        params=ParamSchema([ParamSpec("top_k", DataType.long, 0)]))
    model = Model(signature=signature, metadata={"dogbreed.backbone": card.backbone})
    mlflow.pyfunc.add_to_model(model, loader_module=__name__, data=".")
    model.save(str(model_dir / MLMODEL))
    return [model_dir / MLMODEL, onnx]


class BreedPyfunc:
    """What `mlflow.pyfunc.load_model` wraps: predict(DataFrame with an `image` column) -> DataFrame."""

    def __init__(self, model_dir: Path):
        import onnxruntime as ort

        self.card = load_card(model_dir)
        self.session = ort.InferenceSession(str(model_dir / ONNX_FILE), providers=["CPUExecutionProvider"])

    def predict(self, model_input: Any, params: dict[str, Any] | None = None) -> Any:
        import pandas as pd

        from dogbreed.data.images import decode_image, to_square
        from dogbreed.preprocessing import to_input

        images = model_input[INPUT] if isinstance(model_input, pd.DataFrame) else model_input
        squares = [to_square(decode_image(_image_bytes(v), self.card.preprocessing.resize_size).image,
                             self.card.preprocessing) for v in images]
        x = np.ascontiguousarray(to_input(np.stack(squares), self.card.preprocessing).numpy())
        probs = self.session.run(None, {"input": x})[0][:, :self.card.num_classes]
        top_k = int((params or {}).get("top_k") or 0)
        if not top_k:
            return pd.DataFrame(probs.astype(np.float64), columns=self.card.class_labels)
        order = np.argsort(-probs, axis=1)[:, :top_k]
        return pd.DataFrame({"labels": [[self.card.class_labels[i] for i in row] for row in order],
                             "probabilities": [[float(p[i]) for i in row] for p, row in zip(probs, order)]})


def _image_bytes(value: Any) -> bytes:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    try:
        return base64.b64decode(str(value), validate=True)
    except (binascii.Error, ValueError):
        raise UserError("an image must be bytes or a base64 string") from None


def _load_pyfunc(data_path: str) -> BreedPyfunc:
    """MLflow's loader_module entry point."""
    return BreedPyfunc(Path(data_path))

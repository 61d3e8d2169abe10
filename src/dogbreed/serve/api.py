"""The breed-classifier API, in LitServe's shape: setup (load at start-up, not import), decode, predict, encode.

The same decode and crop as offline evaluation (`dogbreed.data.images`), so the endpoint's predictions equal
`dogbreed evaluate`'s.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from dogbreed.data.images import ImageError, decode_image, to_square
from dogbreed.models.artifact import ModelCard, load_card
from dogbreed.preprocessing import to_input

log = logging.getLogger("dogbreed")
MIN_SIDE = 16  # smaller images carry no breed information; refuse rather than guess


class BreedClassifierAPI:
    def __init__(self, model_dir: Path, backend: str = "auto", device: str | None = None,
                 onnx_path: Path | None = None, threads: int | None = None):
        self.model_dir, self.backend, self.device = Path(model_dir), backend, device
        self.onnx_path, self.threads = onnx_path, threads
        self.card: ModelCard | None = None
        self._run = None

    # -- setup ------------------------------------------------------------------------------------------------
    def setup(self) -> "BreedClassifierAPI":
        import torch

        self.card = load_card(self.model_dir)
        backend = self.backend
        if backend == "auto":
            backend = "torch" if (self.device or "").startswith("cuda") or torch.cuda.is_available() else "onnx"
        self.backend = backend
        if backend == "onnx":
            import onnxruntime as ort

            from dogbreed.models.onnx_export import export_onnx

            path = self.onnx_path or export_onnx(self.model_dir)[0]
            opts = ort.SessionOptions()
            if self.threads:
                opts.intra_op_num_threads = self.threads
            session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
            self._run = lambda x: np.column_stack(session.run(None, {"input": x}))
        else:
            from dogbreed.models.artifact import load_model
            from dogbreed.models.onnx_export import served_model

            device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
            model, card = load_model(self.model_dir)
            served = served_model(model, card).to(device)

            def run(x: np.ndarray) -> np.ndarray:
                with torch.no_grad():
                    out = served(torch.from_numpy(x).to(device))
                out = out if isinstance(out, tuple) else (out,)
                return np.column_stack([o.float().cpu().numpy() for o in out])

            self._run = run
        log.info("model %s loaded (%s backend, %d classes)", self.model_dir, backend, self.card.num_classes)
        return self

    # -- the four steps ----------------------------------------------------------------------------------------
    def decode(self, data: bytes) -> np.ndarray:
        """Bytes -> the square uint8 array; raises ImageError with a short reason."""
        assert self.card is not None
        decoded = decode_image(data, self.card.preprocessing.resize_size)
        if min(decoded.width, decoded.height) < MIN_SIDE:
            raise ImageError(f"image too small ({decoded.width}x{decoded.height}); at least {MIN_SIDE}x{MIN_SIDE} "
                             "pixels")
        return to_square(decoded.image, self.card.preprocessing)

    def predict(self, squares: list[np.ndarray]) -> np.ndarray:
        """A batch of squares -> B x C class probabilities, then (models with a not-a-dog decision) one more
        column: each photo's dog probability. `encode` reads a row of it."""
        assert self.card is not None and self._run is not None
        x = to_input(np.stack(squares), self.card.preprocessing)
        return self._run(np.ascontiguousarray(x.numpy()))

    def encode(self, row: np.ndarray, top_k: int | None) -> Any:
        """All class probabilities (as SageMaker's algorithm returns), or the top-k with readable names."""
        assert self.card is not None
        probs = row[:self.card.num_classes]
        if not top_k:
            return [round(float(p), 6) for p in probs]
        order = np.argsort(-probs)[:top_k]
        return [{"label": self.card.class_labels[i], "class": self.card.class_folders[i], "index": int(i),
                 "probability": round(float(probs[i]), 6)} for i in order]

    def judge(self, row: np.ndarray) -> dict[str, Any]:
        """Is there a dog, by the backbone's ImageNet classifier, and is the breed certain (thresholds from the
        model card, set on training photos)."""
        assert self.card is not None
        probs = row[:self.card.num_classes]
        out: dict[str, Any] = {"dog": True}
        if self.card.not_a_dog and len(row) > self.card.num_classes:
            score, threshold = float(row[self.card.num_classes]), float(self.card.not_a_dog["threshold"])
            out = {"dog": score >= threshold, "dog_score": round(score, 6), "dog_threshold": threshold}
        out["uncertain"] = bool(out["dog"] and float(probs.max()) < self.card.uncertain_below)
        return out

    def response(self, rows: list[np.ndarray], top_k: int | None) -> Any:
        """The answer to one request: SageMaker's list of probabilities (one image) or lists (several); with
        top_k, {"predictions": top-k, "dog": ..., "dog_score": ..., "uncertain": ...}, each field a list
        when the request held several images."""
        if not top_k:
            results = [self.encode(r, None) for r in rows]
            return results[0] if len(results) == 1 else results
        parts = [{"predictions": self.encode(r, top_k), **self.judge(r)} for r in rows]
        if len(parts) == 1:
            return parts[0]
        return {k: [p.get(k) for p in parts] for k in parts[0]}

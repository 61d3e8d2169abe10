"""`sagemaker.pytorch` names, importable so notebooks that import them run; script mode itself is not supported:
dogbreed runs its built-in image-classification algorithm (use `dogbreed.estimator.Estimator`)."""

from __future__ import annotations

from typing import Any

from dogbreed.config import UserError


class PyTorch:
    def __init__(self, entry_point: str, framework_version: str | None = None, py_version: str | None = None,
                 source_dir: str | None = None, hyperparameters: dict[str, Any] | None = None,
                 image_uri: str | None = None, distribution: Any = None, **kwargs: Any):
        self.entry_point, self.framework_version, self.py_version = entry_point, framework_version, py_version
        self.hyperparameters = dict(hyperparameters or {})

    def fit(self, *args: Any, **kwargs: Any) -> None:
        raise UserError(f"script mode ({self.entry_point}) is not supported: dogbreed trains with its built-in "
                        "image-classification algorithm; use dogbreed.estimator.Estimator")


class PyTorchModel:
    def __init__(self, *args: Any, **kwargs: Any):
        raise UserError("PyTorchModel (script-mode serving) is not supported: deploy a trained job's model with "
                        "Estimator.deploy() or `dogbreed deploy`")



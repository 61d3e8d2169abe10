"""`image_uris.retrieve`, as in the SageMaker SDK: the one "image" dogbreed has is its image-classification
algorithm; the URI names it, and an Estimator built with it takes the algorithm's hyperparameters and defaults."""

from __future__ import annotations

import re
from typing import Any

from dogbreed.config import UserError

IMAGE_CLASSIFICATION = "dogbreed/image-classification:1"
_ALGORITHM = re.compile(r"(^|/)image-classification(:[^/]*)?$")


def retrieve(framework: str, region: str | None = None, version: str | None = None, py_version: str | None = None,
             instance_type: str | None = None, accelerator_type: str | None = None, image_scope: str | None = None,
             container_version: str | None = None, distribution: Any = None, base_framework_version: Any = None,
             training_compiler_config: Any = None, model_id: Any = None, model_version: Any = None,
             tolerate_vulnerable_model: bool = False, tolerate_deprecated_model: bool = False,
             sdk_version: Any = None, inference_tool: Any = None, serverless_inference_config: Any = None,
             **kwargs: Any) -> str:
    """The image URI of the built-in image-classification algorithm (any region, any version: there is one)."""
    if framework != "image-classification":
        raise UserError(f"framework {framework!r} has no dogbreed image: dogbreed runs the built-in "
                        "image-classification algorithm (framework='image-classification')")
    return IMAGE_CLASSIFICATION


def is_image_classification(image_uri: str | None) -> bool:
    """True for dogbreed's URI and for SageMaker's own (`...ecr.../image-classification:1`)."""
    return bool(image_uri) and bool(_ALGORITHM.search(str(image_uri)))

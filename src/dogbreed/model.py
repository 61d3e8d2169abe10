"""`Model`, as in the SageMaker SDK (`sagemaker.model.Model`): a trained model that can be deployed."""

from __future__ import annotations

import logging
import os
from typing import Any

from dogbreed.config import UserError

log = logging.getLogger("dogbreed")


class Model:
    """`model_data` is what an estimator's `model_data` gives (a job's model folder as a file:// URI), a folder
    path, `job:NAME`, or a registered model (`NAME`, `NAME:VERSION`, `NAME@ALIAS`)."""

    def __init__(self, image_uri: str | None = None, model_data: str | None = None, role: str | None = None,
                 predictor_cls: Any = None, env: dict[str, str] | None = None, name: str | None = None,
                 vpc_config: Any = None, sagemaker_session: Any = None, enable_network_isolation: bool = False,
                 model_kms_key: Any = None, image_config: Any = None, source_dir: Any = None,
                 code_location: Any = None, entry_point: Any = None, container_log_level: int = logging.INFO,
                 dependencies: Any = None, git_config: Any = None, *, job_name: str | None = None, **kwargs: Any):
        from dogbreed.session import Session

        self.image_uri, self.model_data, self.role = image_uri, model_data, role
        self.predictor_cls, self.env, self.name = predictor_cls, env, name
        self.sagemaker_session = sagemaker_session or Session()
        self.job_name = job_name
        self.endpoint_name: str | None = None

    def model_ref(self) -> str:
        if self.job_name:
            return f"job:{self.job_name}"
        if not self.model_data:
            raise UserError("Model needs model_data (a job's model folder, job:NAME, or a registered model)")
        return self.model_data

    def deploy(self, initial_instance_count: int | None = None, instance_type: str | None = None,
               serializer: Any = None, deserializer: Any = None, accelerator_type: Any = None,
               endpoint_name: str | None = None, tags: Any = None, kms_key: Any = None, wait: bool = True,
               data_capture_config: Any = None, async_inference_config: Any = None,
               serverless_inference_config: Any = None, volume_size: Any = None,
               model_data_download_timeout: Any = None, container_startup_health_check_timeout: Any = None,
               inference_recommendation_id: Any = None, explainer_config: Any = None, **kwargs: Any) -> Any:
        """Starts the endpoint in the background (`initial_instance_count` server processes on this machine) and
        returns a Predictor once it answers."""
        from dogbreed.instance_types import device_for, say_once
        from dogbreed.predictor import Predictor
        from dogbreed.serve.launch import start_endpoint
        from dogbreed.utils import name_from_base

        name = endpoint_name or self.name or name_from_base("dogbreed-endpoint")
        workers = max(1, int(initial_instance_count or 1))
        cores = os.cpu_count() or 1
        if workers > cores:
            say_once(f"initial_instance_count={workers}: {cores} server process(es) on this {cores}-core machine")
            workers = cores
        start_endpoint(self.model_ref(), name, workers=workers, device=device_for(instance_type), wait=wait)
        self.endpoint_name = name
        if wait:
            log.info("endpoint %s is in service", name)
        if self.predictor_cls is not None:
            return self.predictor_cls(name, self.sagemaker_session)
        return Predictor(name, self.sagemaker_session, serializer=serializer, deserializer=deserializer)

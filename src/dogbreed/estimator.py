"""`Estimator`, with the SageMaker SDK's signature and meaning (`sagemaker.estimator.Estimator`), running
dogbreed training jobs on this machine.

Two kinds of estimator, told apart by `image_uri`:
- SageMaker's built-in image-classification algorithm (`image_uris.retrieve("image-classification", ...)`, or a
  real ECR URI of it): hyperparameters take the algorithm's defaults (use_pretrained_model=0, num_layers=152,
  learning_rate=0.1, optimizer=sgd, ...) and meaning (the whole network is trained), so a SageMaker notebook means
  what it meant there; the pre-flight check says when that cannot work.
- dogbreed's own (no image_uri): dogbreed's defaults (a pretrained backbone and its CPU-first recipe).

What has no meaning locally (roles, VPCs, KMS keys, spot settings) is accepted and ignored, said once per process;
instance types are mapped to this machine's device; `max_run` is enforced; `output_path` is kept in the record.
"""

from __future__ import annotations

import logging
from typing import Any

from dogbreed import describe
from dogbreed.config import UserError
from dogbreed.exceptions import UnexpectedStatusException
from dogbreed.image_uris import is_image_classification
from dogbreed.instance_types import device_for, say_once
from dogbreed.jobs import names, records
from dogbreed.jobs.records import COMPLETED, ENDED, STOPPED
from dogbreed.progress import ensure_visible_logs
from dogbreed.utils import base_name_from_image

log = logging.getLogger("dogbreed")

# The image-classification algorithm's own defaults (its default-input.json) and how it trains: the whole network,
# no dogbreed recipe extras. Applied to hyperparameters the user did not set.
ALGORITHM_DEFAULTS: dict[str, Any] = {
    "use_pretrained_model": 0, "num_layers": 152, "epochs": 30, "learning_rate": 0.1, "optimizer": "sgd",
    "momentum": 0.0, "weight_decay": 0.0001, "beta_1": 0.9, "beta_2": 0.999, "eps": 1e-8, "gamma": 0.9,
    "mini_batch_size": 32, "image_shape": "3,224,224", "precision_dtype": "float32", "lr_scheduler_factor": 0.1,
    "augmentation_type": "none", "train_mode": "full", "head_epochs": 0, "label_smoothing": 0.0,
    "head_anchor": 0.0, "test_time_flip": False, "lr_scheduler": "none",
}
# SDK v1 keyword names that v2 still accepts.
V1_NAMES = {"train_instance_count": "instance_count", "train_instance_type": "instance_type",
            "train_max_run": "max_run", "train_use_spot_instances": "use_spot_instances",
            "train_max_wait": "max_wait", "train_volume_size": "volume_size", "train_volume_kms_key": "volume_kms_key"}
class TrainingJob:
    """`estimator.latest_training_job`: a training job by name."""

    def __init__(self, sagemaker_session: Any, job_name: str):
        self.sagemaker_session, self.job_name = sagemaker_session, job_name

    @property
    def name(self) -> str:
        return self.job_name

    def describe(self) -> dict[str, Any]:
        return describe.describe_training_job(self.job_name)

    def wait(self, logs: Any = "All") -> None:
        if logs not in (False, "None", None):
            self.sagemaker_session.logs_for_job(self.job_name, wait=True)
        else:
            self.sagemaker_session.wait_for_job(self.job_name)

    def stop(self) -> None:
        self.sagemaker_session.stop_training_job(self.job_name)

    def rule_job_summary(self) -> list[dict[str, Any]]:
        return self.describe().get("DebugRuleEvaluationStatuses", [])

    def __repr__(self) -> str:
        return f"TrainingJob({self.job_name!r})"


def data_from_inputs(inputs: Any, model_uri: str | None = None, model_channel_name: str = "model"
                     ) -> tuple[Any, str | None]:
    """`fit`'s inputs as dogbreed's data spec, and the model channel's model (incremental training) if any."""
    from dogbreed.inputs import channel_of

    if inputs is None:
        raise UserError("fit() needs inputs: a dataset folder or URI, or channels {'train': ..., 'validation': ...}")
    if not isinstance(inputs, dict):
        value = channel_of(inputs)
        return (value["uri"] if isinstance(value, dict) else value), model_uri
    channels = {name: channel_of(value) for name, value in inputs.items()}
    model = channels.pop(model_channel_name, None)
    if model is not None:
        model_uri = model["uri"] if isinstance(model, dict) else model
    if set(channels) == {"training"}:  # SageMaker's channel name for a single input
        only = channels["training"]
        return (only["uri"] if isinstance(only, dict) else only), model_uri
    return channels, model_uri


class Estimator:
    def __init__(self, image_uri: str | None = None, role: str | None = None, instance_count: int | None = None,
                 instance_type: str | None = None, keep_alive_period_in_seconds: int | None = None,
                 volume_size: int = 30, volume_kms_key: str | None = None, max_run: int = 24 * 60 * 60,
                 input_mode: str = "File", output_path: str | None = None, output_kms_key: str | None = None,
                 base_job_name: str | None = None, sagemaker_session: Any = None,
                 hyperparameters: dict[str, Any] | None = None, tags: Any = None, subnets: Any = None,
                 security_group_ids: Any = None, model_uri: str | None = None, model_channel_name: str = "model",
                 metric_definitions: Any = None, encrypt_inter_container_traffic: bool = False,
                 use_spot_instances: bool = False, max_wait: int | None = None, checkpoint_s3_uri: str | None = None,
                 checkpoint_local_path: str | None = None, enable_network_isolation: bool = False,
                 rules: list[Any] | None = None, debugger_hook_config: Any = None,
                 tensorboard_output_config: Any = None, enable_sagemaker_metrics: Any = None,
                 profiler_config: Any = None, disable_profiler: bool = False, environment: Any = None,
                 max_retry_attempts: int | None = None, source_dir: str | None = None, git_config: Any = None,
                 container_log_level: int = logging.INFO, code_location: str | None = None,
                 entry_point: str | None = None, dependencies: Any = None, instance_groups: Any = None,
                 training_repository_access_mode: Any = None,
                 training_repository_credentials_provider_arn: Any = None, *, device: str | None = None,
                 ray_address: str | None = None, **kwargs: Any):
        from dogbreed.session import Session

        for old, new in V1_NAMES.items():
            if old in kwargs:
                say_once(f"{old} is SDK v1's name: use {new}")
                value = kwargs.pop(old)
                if new == "instance_count":
                    instance_count = value
                elif new == "instance_type":
                    instance_type = value
                elif new == "max_run":
                    max_run = value
        if kwargs:
            say_once(f"Estimator: ignored keyword argument(s) {', '.join(sorted(kwargs))} (as SageMaker's SDK does)")
        ignored = [n for n, v in (("role", role), ("subnets", subnets), ("security_group_ids", security_group_ids),
                                  ("volume_kms_key", volume_kms_key), ("output_kms_key", output_kms_key),
                                  ("use_spot_instances", use_spot_instances), ("tags", tags)) if v]
        if ignored:
            say_once(f"{', '.join(ignored)}: accepted and ignored (no AWS account behind a local job)")
        self.image_uri = image_uri
        self.role = role
        self.instance_count = instance_count if instance_count is not None else 1
        self.instance_type = instance_type
        self.volume_size, self.max_run, self.input_mode = volume_size, max_run, input_mode
        self.output_path = output_path
        self.base_job_name = base_job_name
        self.sagemaker_session = sagemaker_session or Session()
        self._hyperparameters: dict[str, Any] = dict(hyperparameters or {})
        self.tags = tags
        self.model_uri, self.model_channel_name = model_uri, model_channel_name
        self.metric_definitions = metric_definitions
        self.checkpoint_s3_uri, self.checkpoint_local_path = checkpoint_s3_uri, checkpoint_local_path
        self.rules, self.debugger_hook_config = rules, debugger_hook_config
        self.profiler_config, self.disable_profiler = profiler_config, disable_profiler
        self.environment = environment
        self.device = device
        self.ray_address = ray_address
        self.latest_training_job: TrainingJob | None = None
        self._current_job_name: str | None = None
        self.jobs: list[TrainingJob] = []
        self.deploy_instance_type: str | None = None

    # -- hyperparameters -----------------------------------------------------------------------------------------
    @property
    def is_algorithm(self) -> bool:
        """True when this estimator runs SageMaker's image-classification algorithm (its defaults and meaning)."""
        return is_image_classification(self.image_uri)

    def training_image_uri(self) -> str:
        return self.image_uri or "dogbreed"

    def set_hyperparameters(self, **kwargs: Any) -> None:
        self._hyperparameters.update(kwargs)

    def hyperparameters(self) -> dict[str, Any]:
        return dict(self._hyperparameters)

    def effective_hyperparameters(self) -> dict[str, Any]:
        """What the job trains with: the given values over the algorithm's defaults (for the algorithm's image)."""
        values = dict(self._hyperparameters)
        if self.is_algorithm:
            defaults = dict(ALGORITHM_DEFAULTS)
            if any(k in values for k in ("backbone", "preset")):
                defaults.pop("num_layers")  # a dogbreed backbone named: the algorithm's ResNet default steps aside
            if values.get("lr_scheduler_step"):
                defaults["lr_scheduler"] = "step"
            values = {**defaults, **values}
        return values

    def resolved_hyperparameters(self) -> Any:
        from dogbreed.config import Hyperparameters

        return Hyperparameters.from_mapping(self.effective_hyperparameters())

    # -- training ------------------------------------------------------------------------------------------------
    def _base_name(self) -> str:
        return self.base_job_name or (base_name_from_image(self.image_uri) if self.image_uri else "dogbreed")

    def _record_extra(self) -> dict[str, Any]:
        return {"image_uri": self.training_image_uri(), "role": self.role, "instance_type": self.instance_type,
                "instance_count": self.instance_count, "output_path": self.output_path, "max_run": self.max_run,
                "volume_size": self.volume_size, "input_mode": self.input_mode,
                "sagemaker_hyperparameters": {k: str(v) for k, v in self._hyperparameters.items()}}

    def _debugger(self) -> Any:
        from dogbreed.debugger import debugger_config

        return debugger_config(self.rules, self.debugger_hook_config, self.profiler_config)

    def training_spec(self, inputs: Any, job_name: str | None = None) -> Any:
        """The training job this estimator's `fit(inputs)` would run."""
        from dogbreed.train.job import TrainingJobSpec

        data, initial_model = data_from_inputs(inputs, self.model_uri, self.model_channel_name)
        name = names.validate(job_name or names.unique_name(self._base_name()), "job")
        workers = int(self.instance_count or 1)
        if workers > 1:
            say_once(f"instance_count={workers}: {workers} data-parallel workers with Ray Train on "
                     f"{self.ray_address or 'a local Ray cluster started for the job'}")
        return TrainingJobSpec(name=name, data=data, hyperparameters=self.resolved_hyperparameters(),
                               device=self.device or device_for(self.instance_type), debugger=self._debugger(),
                               initial_model=initial_model, max_runtime_s=float(self.max_run) if self.max_run else None,
                               extra=self._record_extra(), instance_count=workers, ray_address=self.ray_address,
                               checkpoint_uri=self.checkpoint_s3_uri or self.checkpoint_local_path)

    def preflight(self, inputs: Any) -> list[str]:
        """dogbreed's pre-flight check alone: the warnings `fit(inputs)` would give, without training anything."""
        from dogbreed.data.layout import discover_dataset
        from dogbreed.train.preflight import report, training_warnings

        ensure_visible_logs()
        spec = self.training_spec(inputs, job_name="preflight-only")
        warnings = training_warnings(spec.hyperparameters, discover_dataset(
            spec.data, num_classes=spec.hyperparameters.num_classes))
        report(warnings)
        return warnings

    def fit(self, inputs: Any = None, wait: bool = True, logs: Any = "All", job_name: str | None = None,
            experiment_config: Any = None) -> None:
        """Runs a training job on `inputs` (a dataset folder/URI, a TrainingInput, or channels); with `wait`, here
        and now (log lines and progress in the notebook), else in a background process."""
        ensure_visible_logs()
        spec = self.training_spec(inputs, job_name)
        self._current_job_name = spec.name
        self.latest_training_job = TrainingJob(self.sagemaker_session, spec.name)
        self.jobs.append(self.latest_training_job)
        if not wait:
            from dogbreed.background import launch

            launch("training", spec)
            return
        from dogbreed.train.job import run_training_job

        record = run_training_job(spec)
        if record.status not in (COMPLETED, STOPPED):
            raise UnexpectedStatusException(
                f"Error for Training job {record.name}: {record.status}. Reason: {record.failure_reason}",
                allowed_statuses=[COMPLETED, STOPPED], actual_status=record.status)

    def logs(self) -> None:
        self._require_job()
        self.sagemaker_session.logs_for_job(self.latest_training_job.name, wait=True)

    def _require_job(self) -> None:
        if self.latest_training_job is None:
            raise ValueError("Estimator is not associated with a training job")

    @property
    def model_data(self) -> str:
        if self.latest_training_job is not None:
            name = self.latest_training_job.name
            if records.exists(name) and records.load(name).status == COMPLETED:
                return describe.model_data(name)
        log.warning("No finished training job found associated with this estimator. Please make sure this "
                    "estimator is only used for building workflow config")
        return describe.model_data(self._current_job_name or self._base_name())

    @property
    def training_job_analytics(self) -> Any:
        from dogbreed.analytics import TrainingJobAnalytics

        if self._current_job_name is None:
            raise ValueError("Estimator is not associated with a TrainingJob")
        return TrainingJobAnalytics(self._current_job_name, sagemaker_session=self.sagemaker_session)

    @classmethod
    def attach(cls, training_job_name: str, sagemaker_session: Any = None, model_channel_name: str = "model"
               ) -> "Estimator":
        """The estimator of an existing training job, found by name (from any process); waits until it ends."""
        from dogbreed.session import Session

        record = describe.training_record(training_job_name)
        extra = record.extra
        given = extra.get("sagemaker_hyperparameters")
        hyperparameters = dict(given) if given is not None else {
            k: v for k, v in record.hyperparameters.items() if v not in (None, "")}
        image = extra.get("image_uri")
        est = cls(image_uri=None if image in (None, "dogbreed") else image, role=extra.get("role"),
                  instance_count=extra.get("instance_count") or 1, instance_type=extra.get("instance_type"),
                  output_path=extra.get("output_path"), max_run=extra.get("max_run") or 86400,
                  base_job_name=_base_from(training_job_name), sagemaker_session=sagemaker_session or Session(),
                  hyperparameters=hyperparameters, model_channel_name=model_channel_name)
        est.latest_training_job = TrainingJob(est.sagemaker_session, training_job_name)
        est._current_job_name = training_job_name
        est.jobs.append(est.latest_training_job)
        if record.status not in ENDED:
            est.latest_training_job.wait(logs="None")
        record = records.load(training_job_name)
        print(f"training job {training_job_name}: {record.status}"
              + (f" ({record.failure_reason})" if record.failure_reason else ""))
        return est

    # -- deploying -----------------------------------------------------------------------------------------------
    def create_model(self, role: str | None = None, image_uri: str | None = None, predictor_cls: Any = None,
                     vpc_config_override: Any = None, **kwargs: Any) -> Any:
        from dogbreed.model import Model

        self._require_job()
        return Model(image_uri=image_uri or self.image_uri, model_data=self.model_data, role=role or self.role,
                     predictor_cls=predictor_cls, sagemaker_session=self.sagemaker_session,
                     name=kwargs.get("name"), job_name=self.latest_training_job.name)

    def deploy(self, initial_instance_count: int | None = None, instance_type: str | None = None,
               serializer: Any = None, deserializer: Any = None, accelerator_type: str | None = None,
               endpoint_name: str | None = None, use_compiled_model: bool = False, wait: bool = True,
               model_name: str | None = None, kms_key: str | None = None, data_capture_config: Any = None,
               tags: Any = None, serverless_inference_config: Any = None, async_inference_config: Any = None,
               volume_size: Any = None, model_data_download_timeout: Any = None,
               container_startup_health_check_timeout: Any = None, inference_recommendation_id: Any = None,
               **kwargs: Any) -> Any:
        """Serves the latest training job's model on an endpoint in the background; returns its Predictor once
        `/ping` answers (with `wait`)."""
        from dogbreed.utils import name_from_base

        self._require_job()
        record = records.load(self.latest_training_job.name)
        if record.status != COMPLETED:
            raise UserError(f"training job {record.name} is {record.status}: only a Completed job's model can be "
                            "deployed")
        name = endpoint_name or name_from_base(self._base_name())
        self.deploy_instance_type = instance_type
        return self.create_model(name=model_name).deploy(
            initial_instance_count=initial_instance_count, instance_type=instance_type, serializer=serializer,
            deserializer=deserializer, endpoint_name=name, wait=wait)

    def register(self, content_types: Any = None, response_types: Any = None, inference_instances: Any = None,
                 transform_instances: Any = None, model_package_name: str | None = None,
                 model_package_group_name: str | None = None, approval_status: str | None = None,
                 **kwargs: Any) -> dict[str, Any]:
        """Registers the latest training job's model in the model registry (MLflow) as a new version of
        `model_package_group_name` (default: the job's name); an approval status becomes an alias."""
        from dogbreed.jobs.model_registry import register_job

        self._require_job()
        aliases = ("approved",) if approval_status == "Approved" else ()
        info = register_job(self.latest_training_job.name, model_package_group_name or model_package_name,
                            aliases)
        log.info("registered %s:%s", info.name, info.version)
        return {"ModelPackageGroupName": info.name, "ModelPackageVersion": int(info.version),
                "ModelPackageArn": describe.arn("model-package", f"{info.name}/{info.version}"),
                "ModelApprovalStatus": approval_status or "PendingManualApproval"}

    def transformer(self, instance_count: int, instance_type: str, **kwargs: Any) -> Any:
        raise UserError("batch transform from an estimator is not supported: run `dogbreed batch-transform --model "
                        f"job:{self._current_job_name} --input DIR --output DIR`")

    def __repr__(self) -> str:
        return f"Estimator(image_uri={self.image_uri!r}, hyperparameters={self._hyperparameters!r})"


def _base_from(name: str) -> str:
    from dogbreed.utils import base_from_name

    return base_from_name(name)


EstimatorBase = Estimator

"""`HyperparameterTuner`, with the SageMaker SDK's signature and meaning (`sagemaker.tuner`), running dogbreed
tuning jobs (Optuna) on this machine, in worker processes (`max_parallel_jobs`), or on a Ray cluster
(`ray_address`, or the DOGBREED_RAY_ADDRESS environment variable).
"""

from __future__ import annotations

import logging
import os
from enum import Enum
from typing import Any

from dogbreed import describe
from dogbreed.config import UserError
from dogbreed.jobs import names
from dogbreed.jobs.names import MAX_TUNING_LENGTH
from dogbreed.parameter import CategoricalParameter, ContinuousParameter, IntegerParameter, ParameterRange
from dogbreed.progress import ensure_visible_logs
from dogbreed.utils import base_name_from_image, name_from_base

log = logging.getLogger("dogbreed")
__all__ = ["HyperparameterTuner", "WarmStartConfig", "WarmStartTypes", "ContinuousParameter", "IntegerParameter",
           "CategoricalParameter", "ParameterRange", "create_transfer_learning_tuner",
           "create_identical_dataset_and_algorithm_tuner", "TuningJobCompletionCriteriaConfig",
           "HyperbandStrategyConfig", "StrategyConfig"]
STRATEGIES = {"Bayesian": "Bayesian", "Random": "Random", "Hyperband": "Hyperband", "Grid": "Grid",
              "GridSearch": "Grid"}


class WarmStartTypes(Enum):
    IDENTICAL_DATA_AND_ALGORITHM = "IdenticalDataAndAlgorithm"
    TRANSFER_LEARNING = "TransferLearning"


class WarmStartConfig:
    def __init__(self, warm_start_type: WarmStartTypes | str, parents: Any):
        values = [t.value for t in WarmStartTypes]
        value = warm_start_type.value if isinstance(warm_start_type, WarmStartTypes) else warm_start_type
        if value not in values:
            raise ValueError(f"Invalid type: {warm_start_type}, valid warm start types are: {values}")
        if not parents:
            raise ValueError(f"Invalid parents: {parents}, parents should not be None/empty")
        self.type = WarmStartTypes(value)
        self.parents = {parents} if isinstance(parents, str) else set(parents)

    def to_input_req(self) -> dict[str, Any]:
        return {"WarmStartType": self.type.value,
                "ParentHyperParameterTuningJobs": [{"HyperParameterTuningJobName": p} for p in sorted(self.parents)]}

    @classmethod
    def from_job_desc(cls, warm_start_config: dict[str, Any] | None) -> "WarmStartConfig | None":
        if not warm_start_config:
            return None
        return cls(warm_start_config["WarmStartType"],
                   {p["HyperParameterTuningJobName"] for p in warm_start_config["ParentHyperParameterTuningJobs"]})


class TuningJobCompletionCriteriaConfig:
    def __init__(self, max_number_of_training_jobs_not_improving: int | None = None,
                 complete_on_convergence: bool | None = None, target_objective_metric_value: float | None = None):
        self.max_number_of_training_jobs_not_improving = max_number_of_training_jobs_not_improving
        self.complete_on_convergence = complete_on_convergence
        self.target_objective_metric_value = target_objective_metric_value


class HyperbandStrategyConfig:
    def __init__(self, max_resource: int | None = None, min_resource: int | None = None):
        self.max_resource, self.min_resource = max_resource, min_resource


class StrategyConfig:
    def __init__(self, hyperband_strategy_config: HyperbandStrategyConfig | None = None):
        self.hyperband_strategy_config = hyperband_strategy_config


class TuningJob:
    """`tuner.latest_tuning_job`: a tuning job by name."""

    def __init__(self, sagemaker_session: Any, name: str):
        self.sagemaker_session, self.name = sagemaker_session, name

    def wait(self) -> None:
        self.sagemaker_session.wait_for_tuning_job(self.name)

    def describe(self) -> dict[str, Any]:
        return describe.describe_tuning_job(self.name)

    def stop(self) -> None:
        self.sagemaker_session.stop_tuning_job(self.name)


class HyperparameterTuner:
    TUNING_JOB_NAME_MAX_LENGTH = MAX_TUNING_LENGTH

    def __init__(self, estimator: Any, objective_metric_name: str, hyperparameter_ranges: dict[str, Any],
                 metric_definitions: Any = None, strategy: str = "Bayesian", objective_type: str = "Maximize",
                 max_jobs: int | None = None, max_parallel_jobs: int = 1, max_runtime_in_seconds: int | None = None,
                 tags: Any = None, base_tuning_job_name: str | None = None,
                 warm_start_config: WarmStartConfig | None = None, strategy_config: StrategyConfig | None = None,
                 completion_criteria_config: TuningJobCompletionCriteriaConfig | None = None,
                 early_stopping_type: str = "Off", estimator_name: str | None = None,
                 random_seed: int | None = None, autotune: bool = False,
                 hyperparameters_to_keep_static: Any = None, *, ray_address: str | None = None,
                 register_as: str | None = None, **kwargs: Any):
        if not hyperparameter_ranges:
            raise ValueError("Need to specify hyperparameter ranges")
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, not {strategy!r}")
        if early_stopping_type not in ("Off", "Auto"):
            raise ValueError(f"early_stopping_type must be Off or Auto, not {early_stopping_type!r}")
        self.estimator = estimator
        self.objective_metric_name, self.objective_type = objective_metric_name, objective_type
        self._hyperparameter_ranges = dict(hyperparameter_ranges)
        self.metric_definitions = metric_definitions
        self.strategy = strategy
        self.max_jobs = max_jobs if max_jobs is not None else (None if STRATEGIES[strategy] == "Grid" else 1)
        self.max_parallel_jobs, self.max_runtime_in_seconds = max_parallel_jobs, max_runtime_in_seconds
        self.tags, self.base_tuning_job_name = tags, base_tuning_job_name
        self.warm_start_config, self.strategy_config = warm_start_config, strategy_config
        self.completion_criteria_config = completion_criteria_config
        self.early_stopping_type, self.random_seed = early_stopping_type, random_seed
        self.ray_address = ray_address or os.environ.get("DOGBREED_RAY_ADDRESS")
        self.register_as = register_as
        self.latest_tuning_job: TuningJob | None = None
        self._current_job_name: str | None = None

    @property
    def sagemaker_session(self) -> Any:
        return self.estimator.sagemaker_session

    def hyperparameter_ranges(self) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {"ContinuousParameterRanges": [], "CategoricalParameterRanges": [],
                                                "IntegerParameterRanges": []}
        for name, r in self._hyperparameter_ranges.items():
            out[f"{r.__name__}ParameterRanges"].append(r.as_tuning_range(name))
        return out

    def tuning_config(self) -> Any:
        """dogbreed's TuningConfig for these settings (validated: a bad range is a one-line error)."""
        from dogbreed.tune.config import parse_tuning_config

        effective = self.estimator.effective_hyperparameters()
        static = {k: v for k, v in effective.items() if k not in self._hyperparameter_ranges}
        criteria: dict[str, Any] = {}
        cc = self.completion_criteria_config
        if cc is not None and cc.target_objective_metric_value is not None:
            criteria["target_objective_value"] = cc.target_objective_metric_value
        if cc is not None and cc.max_number_of_training_jobs_not_improving is not None:
            criteria["max_jobs_without_improvement"] = cc.max_number_of_training_jobs_not_improving
        if self.max_runtime_in_seconds:
            criteria["max_runtime_seconds"] = self.max_runtime_in_seconds
        strategy = STRATEGIES[self.strategy]
        doc: dict[str, Any] = {
            "strategy": strategy, "max_parallel_jobs": self.max_parallel_jobs,
            "objective": {"metric": self.objective_metric_name, "type": self.objective_type},
            "early_stopping": self.early_stopping_type, "static_hyperparameters": static,
            "hyperparameter_ranges": {name: r.to_dogbreed() for name, r in self._hyperparameter_ranges.items()},
            "seed": int(self.random_seed or 0)}
        if self.max_jobs is not None:
            doc["max_jobs"] = self.max_jobs
        elif strategy == "Grid":
            doc["max_jobs"] = 10_000  # lowered to the grid's size when the job starts
        if criteria:
            doc["completion_criteria"] = criteria
        if self.warm_start_config is not None:
            doc["warm_start"] = {"type": self.warm_start_config.type.value,
                                 "parents": sorted(self.warm_start_config.parents)}
        if doc["max_parallel_jobs"] > doc["max_jobs"]:
            doc["max_parallel_jobs"] = doc["max_jobs"]
        return parse_tuning_config(doc)

    def fit(self, inputs: Any = None, job_name: str | None = None, include_cls_metadata: bool = False,
            estimator_kwargs: Any = None, wait: bool = True, **kwargs: Any) -> None:
        """Runs the tuning job on `inputs`; extra keyword arguments are ignored, as the SDK ignores them."""
        from dogbreed.estimator import data_from_inputs
        from dogbreed.tune.start import TuningJobSpec

        ensure_visible_logs()
        if self.estimator.latest_training_job is None:
            log.warning("No finished training job found associated with this estimator. Please make sure this "
                        "estimator is only used for building workflow config")
        data, initial_model = data_from_inputs(inputs, self.estimator.model_uri, self.estimator.model_channel_name)
        if initial_model:
            raise UserError("a model channel (incremental training) in a tuning job is not supported")
        base = self.base_tuning_job_name or (base_name_from_image(self.estimator.image_uri)
                                             if self.estimator.image_uri else "dogbreed")
        name = names.validate(job_name or name_from_base(base, max_length=MAX_TUNING_LENGTH, short=True),
                              "tuning job", MAX_TUNING_LENGTH)
        extra = {**self.estimator._record_extra(),
                 "sagemaker_static_hyperparameters": {k: str(v) for k, v in self.estimator.hyperparameters().items()
                                                      if k not in self._hyperparameter_ranges}}
        extra.pop("sagemaker_hyperparameters", None)
        spec = TuningJobSpec(name, data, self.tuning_config(), executor="ray" if self.ray_address else "local",
                             ray_address=self.ray_address, register_as=self.register_as, extra=extra)
        self._current_job_name = name
        self.latest_tuning_job = TuningJob(self.sagemaker_session, name)
        if not wait:
            from dogbreed.background import launch

            launch("tuning", spec)
            return
        from dogbreed.tune.start import start_tuning_job

        record = start_tuning_job(spec)
        if record.status == "Failed":
            from dogbreed.exceptions import UnexpectedStatusException

            raise UnexpectedStatusException(f"Error for HyperParameterTuning job {name}: Failed. Reason: "
                                            f"{record.failure_reason}", ["Completed", "Stopped"], "Failed")

    def _require_job(self) -> str:
        if self.latest_tuning_job is None:
            raise ValueError("No tuning job available")
        return self.latest_tuning_job.name

    def wait(self) -> None:
        self._require_job()
        self.latest_tuning_job.wait()

    def stop_tuning_job(self) -> None:
        self._require_job()
        self.latest_tuning_job.stop()

    def describe(self) -> dict[str, Any]:
        return describe.describe_tuning_job(self._require_job())

    def best_training_job(self) -> str:
        name = self._require_job()
        best = describe.describe_tuning_job(name).get("BestTrainingJob")
        if not best:
            raise Exception(f"Best training job not available for tuning job: {name}")  # noqa: TRY002 - the SDK's
        return best["TrainingJobName"]

    def best_estimator(self, best_training_job: dict[str, Any] | None = None) -> Any:
        name = best_training_job["TrainingJobName"] if best_training_job else self.best_training_job()
        return type(self.estimator).attach(name, sagemaker_session=self.sagemaker_session)

    def analytics(self) -> Any:
        from dogbreed.analytics import HyperparameterTuningJobAnalytics

        return HyperparameterTuningJobAnalytics(self._require_job(), self.sagemaker_session)

    def deploy(self, initial_instance_count: int | None = None, instance_type: str | None = None,
               serializer: Any = None, deserializer: Any = None, accelerator_type: Any = None,
               endpoint_name: str | None = None, wait: bool = True, model_name: str | None = None,
               kms_key: Any = None, data_capture_config: Any = None, **kwargs: Any) -> Any:
        """Deploys the best training job's model; the endpoint is named after that job unless told otherwise."""
        best = self.best_training_job()
        return self.best_estimator().deploy(initial_instance_count=initial_instance_count,
                                            instance_type=instance_type, serializer=serializer,
                                            deserializer=deserializer, endpoint_name=endpoint_name or best,
                                            wait=wait, model_name=model_name)

    @classmethod
    def attach(cls, tuning_job_name: str, sagemaker_session: Any = None, job_details: Any = None,
               estimator_cls: Any = None) -> "HyperparameterTuner":
        """The tuner of an existing tuning job, found by name (from any process)."""
        from dogbreed.estimator import Estimator
        from dogbreed.tune.config import TuningConfig

        record = describe.tuning_record(tuning_job_name)
        config = TuningConfig.from_dict(record.extra["config"])
        extra = record.extra
        image = extra.get("image_uri")
        static = extra.get("sagemaker_static_hyperparameters")
        estimator = (estimator_cls or Estimator)(
            image_uri=None if image in (None, "dogbreed") else image, role=extra.get("role"),
            instance_count=extra.get("instance_count") or 1, instance_type=extra.get("instance_type"),
            output_path=extra.get("output_path"), sagemaker_session=sagemaker_session,
            hyperparameters=dict(static) if static is not None else dict(config.static))
        ranges: dict[str, Any] = {}
        for r in config.ranges:
            if r.type == "Categorical":
                ranges[r.name] = CategoricalParameter(list(r.values))
            elif r.type == "Integer":
                ranges[r.name] = IntegerParameter(int(r.min), int(r.max), r.scaling)
            else:
                ranges[r.name] = ContinuousParameter(r.min, r.max, r.scaling)
        warm = WarmStartConfig(config.warm_start_type, set(config.warm_start_parents)) \
            if config.warm_start_type else None
        tuner = cls(estimator, config.objective_metric, ranges, strategy=config.strategy,
                    objective_type=config.objective_type, max_jobs=config.max_jobs,
                    max_parallel_jobs=config.max_parallel_jobs, warm_start_config=warm,
                    early_stopping_type="Off" if config.early_stopping == "Off" else "Auto",
                    random_seed=config.seed, ray_address=extra.get("ray_address"))
        tuner._current_job_name = tuning_job_name
        tuner.latest_tuning_job = TuningJob(estimator.sagemaker_session, tuning_job_name)
        return tuner

    def _warm_started(self, kind: WarmStartTypes, additional_parents: Any, estimator: Any = None
                      ) -> "HyperparameterTuner":
        parents = {self._require_job(), *(additional_parents or ())}
        return HyperparameterTuner(
            estimator or self.estimator, self.objective_metric_name, self._hyperparameter_ranges,
            strategy=self.strategy, objective_type=self.objective_type, max_jobs=self.max_jobs,
            max_parallel_jobs=self.max_parallel_jobs, base_tuning_job_name=self.base_tuning_job_name,
            warm_start_config=WarmStartConfig(kind, parents), early_stopping_type=self.early_stopping_type,
            random_seed=self.random_seed, ray_address=self.ray_address)

    def transfer_learning_tuner(self, additional_parents: Any = None, estimator: Any = None
                                ) -> "HyperparameterTuner":
        return self._warm_started(WarmStartTypes.TRANSFER_LEARNING, additional_parents, estimator)

    def identical_dataset_and_algorithm_tuner(self, additional_parents: Any = None) -> "HyperparameterTuner":
        return self._warm_started(WarmStartTypes.IDENTICAL_DATA_AND_ALGORITHM, additional_parents)


def create_transfer_learning_tuner(parent: str, additional_parents: Any = None, estimator: Any = None,
                                   sagemaker_session: Any = None) -> HyperparameterTuner:
    return HyperparameterTuner.attach(parent, sagemaker_session).transfer_learning_tuner(additional_parents,
                                                                                          estimator)


def create_identical_dataset_and_algorithm_tuner(parent: str, additional_parents: Any = None,
                                                 sagemaker_session: Any = None) -> HyperparameterTuner:
    return HyperparameterTuner.attach(parent, sagemaker_session).identical_dataset_and_algorithm_tuner(
        additional_parents)


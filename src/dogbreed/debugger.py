"""Debugger and profiler configuration with the SageMaker SDK's names (`sagemaker.debugger`), mapped onto
dogbreed's own debugger: every rule runs on every job anyway; a `Rule` here sets a rule's parameters and actions.

`rule_configs.loss_not_decreasing()` and friends return SageMaker's rule configuration dicts, so
`Rule.sagemaker(rule_configs.vanishing_gradient(), rule_parameters={...}, actions=rule_configs.StopTraining())`
works as written. Rules dogbreed has no counterpart for (TreeDepth, NLPSequenceRatio, ...) are skipped with a
warning.
"""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

log = logging.getLogger("dogbreed")

# smdebug's rule names (RuleConfigurationName) that dogbreed's rules answer, where the names differ.
ALIASES = {"StalledTrainingRule": "StalledTraining", "ProfilerReport": None}


def _rule_config(name: str) -> dict[str, Any]:
    return {"DebugRuleConfiguration": {"RuleConfigurationName": name, "RuleParameters": {"rule_to_invoke": name}}}


class _Action:
    def __init__(self, kind: str, **params: Any):
        self.kind, self.params = kind, params


class _RuleConfigs(SimpleNamespace):
    """`rule_configs`: zero-argument functions for debugger rules, classes for profiler rules and actions."""


def _debugger_rule(name: str):
    def make() -> dict[str, Any]:
        return _rule_config(name)

    return make


class _ProfilerRuleBase:
    def __init__(self, **rule_parameters: Any):
        self.rule_name = type(self).__name__
        self.rule_parameters = {"rule_to_invoke": self.rule_name, **rule_parameters}


_PROFILER_RULES = {n: type(n, (_ProfilerRuleBase,), {}) for n in (
    "BatchSize", "CPUBottleneck", "GPUMemoryIncrease", "IOBottleneck", "LoadBalancing", "LowGPUUtilization",
    "MaxInitializationTime", "OverallSystemUsage", "StepOutlier", "ProfilerReport")}
# smdebug_rulesconfig's function names -> rule names.
_DEBUGGER_RULES = {
    "vanishing_gradient": "VanishingGradient", "similar_across_runs": "SimilarAcrossRuns",
    "weight_update_ratio": "WeightUpdateRatio", "all_zero": "AllZero", "exploding_tensor": "ExplodingTensor",
    "unchanged_tensor": "UnchangedTensor", "loss_not_decreasing": "LossNotDecreasing",
    "check_input_images": "CheckInputImages", "dead_relu": "DeadRelu", "confusion": "Confusion",
    "tree_depth": "TreeDepth", "class_imbalance": "ClassImbalance", "overfit": "Overfit",
    "tensor_variance": "TensorVariance", "overtraining": "Overtraining",
    "poor_weight_initialization": "PoorWeightInitialization", "saturated_activation": "SaturatedActivation",
    "nlp_sequence_ratio": "NLPSequenceRatio", "stalled_training_rule": "StalledTrainingRule",
    "feature_importance_overweight": "FeatureImportanceOverweight", "create_xgboost_report": "CreateXgboostReport"}

rule_configs = _RuleConfigs(
    **{snake: _debugger_rule(name) for snake, name in _DEBUGGER_RULES.items()},
    **_PROFILER_RULES,
    StopTraining=lambda training_job_prefix=None: _Action("stop"),
    Email=lambda email_address: _Action("email", address=email_address),
    SMS=lambda phone_number: _Action("sms", number=phone_number),
    ActionList=lambda *actions: _Action("list", actions=actions),
)


class RuleBase:
    def __init__(self, name: str, parameters: dict[str, Any] | None = None, actions: Any = None):
        self.name, self.rule_parameters, self.actions = name, dict(parameters or {}), actions

    def to_dogbreed(self) -> str | None:
        """The rule as dogbreed's `Name:param=value,action=stop` spec, or None when dogbreed has no such rule."""
        from dogbreed.debug.rules import RULES

        name = ALIASES.get(self.name, self.name)
        if name is None:
            return None  # the profiler report is always written: `dogbreed report`
        if name not in RULES:
            log.warning("rule %s has no dogbreed counterpart: skipped", self.name)
            return None
        import dataclasses

        known = {f.name for f in dataclasses.fields(RULES[name])}
        params = []
        for key, value in self.rule_parameters.items():
            if key == "rule_to_invoke":
                continue
            if key in known:
                params.append(f"{key}={value}")
            else:
                log.warning("rule %s: parameter %s has no dogbreed counterpart: ignored", self.name, key)
        if _stops(self.actions):
            params.append("action=stop")
        return name + (":" + ",".join(params) if params else "")


def _stops(actions: Any) -> bool:
    if actions is None:
        return False
    if isinstance(actions, _Action):
        return actions.kind == "stop" or (actions.kind == "list" and any(_stops(a) for a in actions.params["actions"]))
    return False


class Rule(RuleBase):
    @classmethod
    def sagemaker(cls, base_config: dict[str, Any], name: str | None = None, container_local_output_path: Any = None,
                  s3_output_path: Any = None, other_trials_s3_input_paths: Any = None,
                  rule_parameters: dict[str, Any] | None = None, collections_to_save: Any = None,
                  actions: Any = None) -> "Rule":
        config = base_config["DebugRuleConfiguration"]
        if rule_parameters and "rule_to_invoke" in rule_parameters:
            raise RuntimeError("You cannot provide a 'rule_to_invoke' for SageMaker rules.")
        rule_name = config["RuleParameters"]["rule_to_invoke"]
        rule = cls(rule_name, {**config.get("RuleParameters", {}), **(rule_parameters or {})}, actions)
        rule.configuration_name = name or config["RuleConfigurationName"]
        return rule

    @classmethod
    def custom(cls, name: str, image_uri: str, instance_type: str, volume_size_in_gb: int, source: Any = None,
               rule_to_invoke: str | None = None, **kwargs: Any) -> "Rule":
        from dogbreed.config import UserError

        raise UserError("custom rule containers are not supported: dogbreed's rules run in the job itself")


class ProfilerRule(RuleBase):
    @classmethod
    def sagemaker(cls, base_config: Any, name: str | None = None, container_local_output_path: Any = None,
                  s3_output_path: Any = None) -> "ProfilerRule":
        return cls(base_config.rule_name, dict(base_config.rule_parameters))


class CollectionConfig:
    def __init__(self, name: str, parameters: dict[str, Any] | None = None):
        self.name, self.parameters = name, dict(parameters or {})


class DebuggerHookConfig:
    """`hook_parameters={"save_interval": "10"}` sets how often tensors are recorded (every N steps)."""

    def __init__(self, s3_output_path: str | None = None, container_local_output_path: str | None = None,
                 hook_parameters: dict[str, Any] | None = None,
                 collection_configs: list[CollectionConfig] | None = None):
        self.s3_output_path = s3_output_path
        self.hook_parameters = dict(hook_parameters or {})
        self.collection_configs = list(collection_configs or [])

    @property
    def interval(self) -> int | None:
        value = self.hook_parameters.get("save_interval") or self.hook_parameters.get("train.save_interval")
        return int(value) if value is not None else None


class TensorBoardOutputConfig:
    def __init__(self, s3_output_path: str, container_local_output_path: str | None = None):
        self.s3_output_path = s3_output_path


class FrameworkProfile:
    """`start_step`/`num_steps` choose the steps traced by torch.profiler."""

    def __init__(self, local_path: str = "/opt/ml/output/profiler", file_max_size: int = 10485760,
                 file_close_interval: int = 60, file_open_fail_threshold: int = 50, detailed_profiling_config: Any = None,
                 dataloader_profiling_config: Any = None, python_profiling_config: Any = None,
                 horovod_profiling_config: Any = None, smdataparallel_profiling_config: Any = None,
                 start_step: int | None = None, num_steps: int | None = None, start_unix_time: Any = None,
                 duration: Any = None):
        self.start_step, self.num_steps = start_step, num_steps

    @property
    def steps(self) -> str | None:
        if self.start_step is None:
            return None
        first = max(1, int(self.start_step))
        return f"{first}-{first + max(1, int(self.num_steps or 1)) - 1}"


class ProfilerConfig:
    def __init__(self, s3_output_path: str | None = None, system_monitor_interval_millis: int | None = None,
                 framework_profile_params: FrameworkProfile | None = None, disable_profiler: bool = False):
        self.s3_output_path = s3_output_path
        self.system_monitor_interval_millis = system_monitor_interval_millis
        self.framework_profile_params = framework_profile_params
        self.disable_profiler = disable_profiler


def report(job_name: str) -> Path:
    """Writes the job's debugger and profiler report (self-contained HTML) and returns its path."""
    from dogbreed.debug.report import write_report

    return write_report(job_name)


def debugger_config(rules: list[Any] | None, hook: DebuggerHookConfig | None, profiler: ProfilerConfig | None,
                    disabled: bool = False) -> Any:
    """dogbreed's DebuggerConfig for an estimator's rules, hook and profiler settings."""
    from dogbreed.debug.monitor import DebuggerConfig

    specs = tuple(s for s in (r.to_dogbreed() for r in (rules or [])) if s)
    kwargs: dict[str, Any] = {"rules": specs}
    if hook is not None and hook.interval:
        kwargs["interval"] = hook.interval
    if profiler is not None:
        if profiler.system_monitor_interval_millis:
            kwargs["profiler_interval_ms"] = int(profiler.system_monitor_interval_millis)
        if profiler.framework_profile_params is not None and profiler.framework_profile_params.steps:
            kwargs["profile_steps"] = profiler.framework_profile_params.steps
    return DebuggerConfig(enabled=not disabled, **kwargs)

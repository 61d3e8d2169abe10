"""The rule registry: every rule by name, the defaults a job runs, and parsing of `Name:param=value` specs.

The rules live in training_rules.py (tensors, loss, classes) and profiler_rules.py (step times, system usage), on
the base classes of rule_base.py; they are re-exported here, so `from dogbreed.debug.rules import X` keeps working.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from dogbreed.config import UserError
from dogbreed.debug.hooks import DebugData
from dogbreed.debug.profiler_rules import (FEATURE_STAGES, BatchSize, CPUBottleneck, GPUMemoryIncrease, IOBottleneck,
                                           LowGPUUtilization, MaxInitializationTime, StepOutlier)
from dogbreed.debug.rule_base import (ERROR, ISSUES, MAX_WHERE, NO_ISSUES, NOT_JUDGED, CannotJudge, Finding, Rule,
                                      RuleResult)
from dogbreed.debug.training_rules import (COLLECTIONS, AllZero, CheckInputImages, ClassImbalance, Confusion, DeadRelu,
                                           ExplodingTensor, LossNotDecreasing, Overfit, Overtraining,
                                           PoorWeightInitialization, SaturatedActivation, SimilarAcrossRuns,
                                           StalledTraining, TensorVariance, UnchangedTensor, VanishingGradient,
                                           WeightUpdateRatio, load_trial)

__all__ = [
    # base (rule_base.py)
    "NO_ISSUES", "ISSUES", "ERROR", "NOT_JUDGED", "MAX_WHERE", "CannotJudge", "Finding", "Rule", "RuleResult",
    # debugger rules (training_rules.py)
    "COLLECTIONS", "load_trial", "VanishingGradient", "ExplodingTensor", "LossNotDecreasing", "Overfit",
    "Overtraining", "PoorWeightInitialization", "DeadRelu", "SaturatedActivation", "WeightUpdateRatio",
    "ClassImbalance", "StalledTraining", "AllZero", "UnchangedTensor", "TensorVariance", "CheckInputImages",
    "Confusion", "SimilarAcrossRuns",
    # profiler rules (profiler_rules.py)
    "FEATURE_STAGES", "CPUBottleneck", "IOBottleneck", "StepOutlier", "LowGPUUtilization", "BatchSize",
    "MaxInitializationTime", "GPUMemoryIncrease",
    # the registry (here)
    "RULES", "ON_REQUEST", "TENSOR_RULES", "RuleConfig", "parse_rule", "default_rules", "evaluate_all",
]


RULES: dict[str, type[Rule]] = {r.name: r for r in (
    VanishingGradient, ExplodingTensor, LossNotDecreasing, Overfit, Overtraining, PoorWeightInitialization,
    DeadRelu, SaturatedActivation, WeightUpdateRatio, ClassImbalance, StalledTraining, AllZero, UnchangedTensor,
    TensorVariance, CheckInputImages, Confusion, SimilarAcrossRuns,
    CPUBottleneck, IOBottleneck, StepOutlier, LowGPUUtilization, BatchSize, MaxInitializationTime,
    GPUMemoryIncrease)}
# Rules that run only when asked for: they need a parameter no job has by default (another trial to compare with).
# Run only when asked for (--rule NAME): SimilarAcrossRuns needs another trial; Confusion fires on breeds that
# are alike by nature (Siberian husky and Eskimo dog in the 120-breed main job), which says nothing wrong with
# the training and would teach users to ignore rules.
ON_REQUEST = {"SimilarAcrossRuns", "Confusion"}
TENSOR_RULES = tuple(n for n, r in RULES.items() if r.kind == "debugger")


@dataclass(frozen=True)
class RuleConfig:
    rule: Rule
    stop_on_trigger: bool = False


_LIST_PARAMETERS = {"collection_names"}


def parse_rule(spec: str) -> RuleConfig:
    """`Name` or `Name:param=value,param=value,action=stop`."""
    name, _, rest = spec.partition(":")
    name = name.strip()
    if name not in RULES:
        raise UserError(f"unknown rule {name!r} (known: {', '.join(RULES)})")
    cls = RULES[name]
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    stop = False
    items: list[str] = []
    for item in filter(None, (p.strip() for p in rest.split(","))):
        # A list value holds commas (collection_names=weights,gradients): an item without '=' continues it.
        if "=" not in item and items and items[-1].split("=", 1)[0] in _LIST_PARAMETERS:
            items[-1] += "," + item
        else:
            items.append(item)
    for item in items:
        key, eq, raw = item.partition("=")
        if not eq:
            raise UserError(f"rule parameter {item!r} of {name} must look like name=value")
        if key == "action":
            if raw not in ("stop", "none"):
                raise UserError(f"rule action must be stop or none, not {raw!r}")
            stop = raw == "stop"
            continue
        if key not in fields:
            raise UserError(f"unknown parameter {key!r} of rule {name} (known: {', '.join(fields) or 'none'})")
        default = fields[key].default
        try:
            values[key] = (raw.lower() in ("1", "true", "yes")) if isinstance(default, bool) else type(default)(raw)
        except ValueError:
            raise UserError(f"rule parameter {key}={raw!r} of {name} is not a valid {type(default).__name__}") from None
    return RuleConfig(cls(**values), stop)


def default_rules() -> list[RuleConfig]:
    return [RuleConfig(cls()) for name, cls in RULES.items() if name not in ON_REQUEST]


def evaluate_all(configs: list[RuleConfig], data: DebugData) -> list[RuleResult]:
    return [c.rule.evaluate(data) for c in configs]

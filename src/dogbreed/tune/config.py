"""The tuning job's YAML, validated before any trial runs. Names follow SageMaker's HyperparameterTuningJobConfig."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from dogbreed.config import Hyperparameters, UserError

STRATEGIES = ("Bayesian", "Random", "Grid", "Hyperband")
SCALINGS = ("Auto", "Linear", "Logarithmic", "ReverseLogarithmic")
EARLY_STOPPING = ("Off", "Auto", "Median", "SuccessiveHalving")
WARM_START_TYPES = ("IdenticalDataAndAlgorithm", "TransferLearning")
# Metrics a training job records (per epoch or at the end): what an objective may name.
KNOWN_METRICS = ("validation:accuracy", "validation:top_k_accuracy", "validation:loss", "train:accuracy",
                 "train:top_k_accuracy", "train:loss", "test:accuracy", "test:top_k_accuracy", "test:loss")
PER_EPOCH_METRICS = KNOWN_METRICS[:6]


@dataclass(frozen=True)
class ParameterRange:
    name: str
    type: str  # Continuous | Integer | Categorical
    min: float | None = None
    max: float | None = None
    values: tuple[Any, ...] = ()
    scaling: str = "Auto"

    def effective_scaling(self) -> str:
        """SageMaker's Auto: logarithmic when a positive range spans two orders of magnitude or more."""
        if self.scaling != "Auto":
            return self.scaling
        if self.min is not None and self.max is not None and self.min > 0 and self.max / self.min >= 100:
            return "Logarithmic"
        return "Linear"


@dataclass(frozen=True)
class TuningConfig:
    ranges: tuple[ParameterRange, ...]
    static: dict[str, Any] = field(default_factory=dict)
    objective_metric: str = "validation:accuracy"
    objective_type: str = "Maximize"
    strategy: str = "Bayesian"
    max_jobs: int = 10
    max_parallel_jobs: int = 1
    early_stopping: str = "Off"
    target_objective_value: float | None = None
    max_jobs_without_improvement: int | None = None
    max_runtime_seconds: float | None = None
    warm_start_type: str | None = None
    warm_start_parents: tuple[str, ...] = ()
    seed: int = 0
    two_stage_top: int = 0  # fine-tune the best N configurations end to end after the search
    two_stage_overrides: dict[str, Any] = field(default_factory=dict)

    @property
    def maximize(self) -> bool:
        return self.objective_type == "Maximize"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TuningConfig":
        d = dict(d)
        d["ranges"] = tuple(ParameterRange(**{**r, "values": tuple(r.get("values", ()))}) for r in d["ranges"])
        d["warm_start_parents"] = tuple(d.get("warm_start_parents", ()))
        return cls(**d)


def parse_tuning_config(doc: dict[str, Any]) -> TuningConfig:
    """YAML mapping -> TuningConfig; every mistake is a UserError naming the field."""
    known_top = {"static_hyperparameters", "hyperparameter_ranges", "objective", "strategy", "max_jobs",
                 "max_parallel_jobs", "early_stopping", "completion_criteria", "warm_start", "seed", "two_stage"}
    unknown = sorted(set(doc) - known_top)
    if unknown:
        raise UserError(f"unknown tuning config key {unknown[0]!r} (known: {', '.join(sorted(known_top))})")
    hp_names = {f.name for f in dataclasses.fields(Hyperparameters)}
    static = dict(doc.get("static_hyperparameters") or {})
    raw_ranges = doc.get("hyperparameter_ranges") or {}
    if not isinstance(raw_ranges, dict) or not raw_ranges:
        raise UserError("hyperparameter_ranges must map at least one hyperparameter to a range")
    ranges = []
    for name, spec in raw_ranges.items():
        if name not in hp_names:
            raise UserError(f"unknown hyperparameter {name!r} in hyperparameter_ranges")
        if name in static:
            raise UserError(f"{name!r} is both static and tuned")
        ranges.append(_parse_range(name, spec))
    Hyperparameters.from_mapping(static)  # names and values of the static part
    objective = doc.get("objective") or {}
    metric = objective.get("metric", "validation:accuracy")
    if metric not in KNOWN_METRICS:
        raise UserError(f"objective metric {metric!r} is never recorded by training (known: {', '.join(KNOWN_METRICS)})")
    direction = objective.get("type", "Maximize" if "loss" not in metric else "Minimize")
    if direction not in ("Maximize", "Minimize"):
        raise UserError(f"objective type must be Maximize or Minimize, not {direction!r}")
    strategy = doc.get("strategy", "Bayesian")
    if strategy not in STRATEGIES:
        raise UserError(f"unknown strategy {strategy!r} (use {', '.join(STRATEGIES)})")
    if strategy == "Grid":
        for r in ranges:
            if r.type == "Continuous":
                raise UserError(f"Grid search needs categorical or integer ranges; {r.name!r} is continuous")
    max_jobs = _int(doc.get("max_jobs", 10), "max_jobs", 1)
    max_parallel = _int(doc.get("max_parallel_jobs", 1), "max_parallel_jobs", 1)
    if max_parallel > max_jobs:
        raise UserError(f"max_parallel_jobs ({max_parallel}) is above max_jobs ({max_jobs})")
    early = str(doc.get("early_stopping", "Off"))
    if early not in EARLY_STOPPING:
        raise UserError(f"early_stopping must be one of {', '.join(EARLY_STOPPING)}, not {early!r}")
    if early != "Off" and metric not in PER_EPOCH_METRICS:
        raise UserError(f"early_stopping needs a per-epoch objective metric; {metric!r} is only known at the end")
    cc = doc.get("completion_criteria") or {}
    unknown = sorted(set(cc) - {"target_objective_value", "max_jobs_without_improvement", "max_runtime_seconds"})
    if unknown:
        raise UserError(f"unknown completion criterion {unknown[0]!r}")
    ws = doc.get("warm_start") or {}
    ws_type, parents = None, ()
    if ws:
        ws_type = ws.get("type", "IdenticalDataAndAlgorithm")
        if ws_type not in WARM_START_TYPES:
            raise UserError(f"warm_start type must be {' or '.join(WARM_START_TYPES)}, not {ws_type!r}")
        parents = tuple(ws.get("parents") or ())
        if not parents or len(parents) > 5:
            raise UserError("warm_start parents must list 1 to 5 finished tuning jobs")
    two = doc.get("two_stage") or {}
    return TuningConfig(
        ranges=tuple(ranges), static=static, objective_metric=metric, objective_type=direction, strategy=strategy,
        max_jobs=max_jobs, max_parallel_jobs=max_parallel, early_stopping=early,
        target_objective_value=_opt_float(cc.get("target_objective_value"), "target_objective_value"),
        max_jobs_without_improvement=(_int(cc["max_jobs_without_improvement"], "max_jobs_without_improvement", 1)
                                      if "max_jobs_without_improvement" in cc else None),
        max_runtime_seconds=_opt_float(cc.get("max_runtime_seconds"), "max_runtime_seconds"),
        warm_start_type=ws_type, warm_start_parents=parents, seed=_int(doc.get("seed", 0), "seed", 0),
        two_stage_top=_int(two.get("top", 0), "two_stage.top", 0) if two else 0,
        two_stage_overrides=dict(two.get("hyperparameters") or {"train_mode": "last_blocks", "epochs": 2}) if two
        else {},
    )


def _parse_range(name: str, spec: Any) -> ParameterRange:
    if isinstance(spec, list):
        spec = {"type": "Categorical", "values": spec}
    if not isinstance(spec, dict):
        raise UserError(f"range of {name!r} must be a mapping with type and min/max or values")
    kind = spec.get("type") or ("Categorical" if "values" in spec else "Continuous")
    if kind not in ("Continuous", "Integer", "Categorical"):
        raise UserError(f"range type of {name!r} must be Continuous, Integer or Categorical, not {kind!r}")
    scaling = spec.get("scaling", "Auto")
    if scaling not in SCALINGS:
        raise UserError(f"scaling of {name!r} must be one of {', '.join(SCALINGS)}, not {scaling!r}")
    if kind == "Categorical":
        values = tuple(spec.get("values") or ())
        if not values:
            raise UserError(f"categorical range of {name!r} needs values")
        for v in values:  # each value must be a valid setting
            Hyperparameters.from_mapping({name: v})
        return ParameterRange(name, kind, values=values)
    try:
        lo, hi = float(spec["min"]), float(spec["max"])
    except (KeyError, TypeError, ValueError):
        raise UserError(f"range of {name!r} needs numeric min and max") from None
    if lo > hi:
        raise UserError(f"range of {name!r}: min {spec['min']} is above max {spec['max']}")
    r = ParameterRange(name, kind, min=lo, max=hi, scaling=scaling)
    eff = r.effective_scaling()
    if eff == "Logarithmic" and lo <= 0:
        raise UserError(f"logarithmic scaling of {name!r} needs a range above 0 (min is {spec['min']})")
    if eff == "ReverseLogarithmic" and (lo < 0 or hi >= 1):
        raise UserError(f"reverse-logarithmic scaling of {name!r} needs 0 <= min <= max < 1")
    if kind == "Integer" and (not float(lo).is_integer() or not float(hi).is_integer()):
        raise UserError(f"integer range of {name!r} needs whole min and max")
    for v in (lo, hi):  # both ends must be valid settings
        Hyperparameters.from_mapping({name: int(v) if kind == "Integer" else v})
    return r


def _int(v: Any, name: str, low: int) -> int:
    try:
        i = int(v)
    except (TypeError, ValueError):
        raise UserError(f"{name} must be an integer, not {v!r}") from None
    if i < low:
        raise UserError(f"{name} must be at least {low}")
    return i


def _opt_float(v: Any, name: str) -> float | None:
    if v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise UserError(f"{name} must be a number, not {v!r}") from None
    if not math.isfinite(f):
        raise UserError(f"{name} must be finite")
    return f

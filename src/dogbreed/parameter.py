"""Hyperparameter ranges of a tuning job, with the SageMaker SDK's classes and arguments (`sagemaker.parameter`)."""

from __future__ import annotations

from typing import Any

SCALING_TYPES = ("Auto", "Linear", "Logarithmic", "ReverseLogarithmic")


class ParameterRange:
    __name__ = "Parameter"

    def __init__(self, min_value: float, max_value: float, scaling_type: str = "Auto"):
        if scaling_type not in SCALING_TYPES:
            raise ValueError(f"scaling_type must be one of {', '.join(SCALING_TYPES)}, not {scaling_type!r}")
        self.min_value, self.max_value, self.scaling_type = min_value, max_value, scaling_type

    def is_valid(self, value: float) -> bool:
        return self.min_value <= value <= self.max_value

    def as_tuning_range(self, name: str) -> dict[str, Any]:
        return {"Name": name, "MinValue": str(self.min_value), "MaxValue": str(self.max_value),
                "ScalingType": self.scaling_type}

    def to_dogbreed(self) -> dict[str, Any]:
        """The range in dogbreed's tuning YAML form."""
        return {"type": self.__name__, "min": self.min_value, "max": self.max_value, "scaling": self.scaling_type}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.min_value!r}, {self.max_value!r}, scaling_type={self.scaling_type!r})"


class ContinuousParameter(ParameterRange):
    __name__ = "Continuous"

    def __init__(self, min_value: float, max_value: float, scaling_type: str = "Auto"):
        super().__init__(float(min_value), float(max_value), scaling_type)


class IntegerParameter(ParameterRange):
    __name__ = "Integer"

    def __init__(self, min_value: int, max_value: int, scaling_type: str = "Auto"):
        super().__init__(int(min_value), int(max_value), scaling_type)


class CategoricalParameter:
    __name__ = "Categorical"

    def __init__(self, values: Any):
        self.values = [str(v) if not isinstance(v, str) else v for v in
                       (values if isinstance(values, (list, tuple)) else [values])]

    def is_valid(self, value: Any) -> bool:
        return str(value) in self.values

    def as_tuning_range(self, name: str) -> dict[str, Any]:
        return {"Name": name, "Values": list(self.values)}

    def to_dogbreed(self) -> dict[str, Any]:
        return {"type": "Categorical", "values": list(self.values)}

    def __repr__(self) -> str:
        return f"CategoricalParameter({self.values!r})"

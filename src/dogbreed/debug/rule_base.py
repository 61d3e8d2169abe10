"""Rules, after smdebug's: each reads the recorded data, returns a verdict and fills its report.

A rule never acts. Stopping the job is an action configured beside the rule (`action=stop`), carried out by the
RuleRunner callback (monitor.py).

This module holds what every rule shares: the base class, its verdict and the exception for a rule that had nothing
to look at. The rules themselves live in training_rules.py and profiler_rules.py; rules.py is their registry.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar, NamedTuple

from dogbreed.debug.hooks import DebugData

NO_ISSUES, ISSUES, ERROR, NOT_JUDGED = "NoIssuesFound", "IssuesFound", "Error", "NotJudged"
MAX_WHERE = 50  # steps or epochs kept per verdict: enough to point at, small enough for the JSON


class CannotJudge(Exception):
    """Raised by a rule that had nothing to look at (no GPU on this machine, no image reached the model, no other
    trial named): its verdict is NotJudged, never NoIssuesFound, so a user does not read a rule that never looked
    as a clean bill."""


class Finding(NamedTuple):
    """What a rule's check found: how many violations among how many datapoints, why, and where (global steps,
    or epochs for the rules that judge epochs), so the report can point at them."""
    violations: int
    datapoints: int
    details: str
    steps: tuple[int, ...] = ()
    epochs: tuple[int, ...] = ()


@dataclass
class RuleResult:
    rule: str
    status: str
    violations: int = 0
    details: str = ""
    datapoints: int = 0
    parameters: dict[str, Any] = field(default_factory=dict)
    recommendation: str = ""
    kind: str = "debugger"
    steps: list[int] = field(default_factory=list)
    epochs: list[int] = field(default_factory=list)

    @property
    def triggered(self) -> bool:
        return self.status == ISSUES

    def to_report(self) -> dict[str, Any]:
        """The JSON SageMaker writes per rule."""
        return {"RuleName": self.rule, "RuleTriggered": self.triggered, "Status": self.status,
                "Violations": self.violations, "Details": self.details, "Datapoints": self.datapoints,
                "RuleParameters": self.parameters, "Recommendation": self.recommendation, "Kind": self.kind,
                "Steps": self.steps, "Epochs": self.epochs}


@dataclass
class Rule:
    """Base: subclasses set `name`, `recommendation` and implement `check`."""
    name: ClassVar[str] = ""
    kind: ClassVar[str] = "debugger"
    recommendation: ClassVar[str] = ""

    def evaluate(self, data: DebugData) -> RuleResult:
        params = dataclasses.asdict(self)
        try:
            found = Finding(*self.check(data))
        except CannotJudge as e:
            return RuleResult(self.name, NOT_JUDGED, details=str(e), parameters=params, kind=self.kind)
        except Exception as e:  # a broken rule is a verdict of its own, not a crashed job
            return RuleResult(self.name, ERROR, details=f"{type(e).__name__}: {e}", parameters=params,
                              kind=self.kind)
        v = int(found.violations)
        return RuleResult(self.name, ISSUES if v else NO_ISSUES, v, found.details, int(found.datapoints), params,
                          self.recommendation if v else "", self.kind,
                          sorted({int(x) for x in found.steps})[:MAX_WHERE] if v else [],
                          sorted({int(x) for x in found.epochs})[:MAX_WHERE] if v else [])

    def check(self, data: DebugData) -> Finding:
        raise NotImplementedError

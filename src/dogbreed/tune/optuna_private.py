"""The only module that touches Optuna's private attributes: the ask/tell loop across processes needs a few
things Optuna's public API does not give (a trial's storage id, user attributes on finished trials, whether a
value lies inside a distribution). If an Optuna upgrade breaks one of them, this is the file to mend."""

from __future__ import annotations

from typing import Any

import optuna
from optuna.distributions import BaseDistribution


def trial_id(trial: optuna.trial.Trial | optuna.trial.FrozenTrial) -> int:
    return trial._trial_id


def set_user_attr(study: optuna.Study, trial_id_: int, key: str, value: Any) -> None:
    """Sets a user attribute on any trial, finished or not (Trial.set_user_attr needs a running trial object)."""
    study._storage.set_trial_user_attr(trial_id_, key, value)


def contains(distribution: BaseDistribution, value: Any) -> bool:
    return distribution._contains(distribution.to_internal_repr(value))


def running_trial(study: optuna.Study, trial_id_: int) -> optuna.trial.Trial:
    """A Trial object for a trial asked by another process, so a worker can report to it and ask to prune."""
    return optuna.trial.Trial(study, trial_id_)

"""Ranges as Optuna distributions, and Optuna's choices back into hyperparameter values."""

from __future__ import annotations

import itertools
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from dogbreed.tune.config import ParameterRange, TuningConfig

REVERSE_PREFIX = "1-"  # ReverseLogarithmic samples 1-x on a log scale: fine steps close to 1 (e.g. momentum)


def distribution(r: ParameterRange) -> tuple[str, BaseDistribution]:
    """(Optuna parameter name, distribution) for a range."""
    if r.type == "Categorical":
        return r.name, CategoricalDistribution(list(r.values))
    scaling = r.effective_scaling()
    if r.type == "Integer":
        return r.name, IntDistribution(int(r.min), int(r.max), log=scaling == "Logarithmic")
    if scaling == "ReverseLogarithmic":
        return REVERSE_PREFIX + r.name, FloatDistribution(1 - r.max, 1 - r.min, log=True)
    return r.name, FloatDistribution(r.min, r.max, log=scaling == "Logarithmic")


def search_space(config: TuningConfig) -> dict[str, BaseDistribution]:
    return dict(distribution(r) for r in config.ranges)


def to_hyperparameters(params: dict[str, Any]) -> dict[str, Any]:
    """Optuna params -> hyperparameter values (undoing the reverse-log transform)."""
    out = {}
    for k, v in params.items():
        if k.startswith(REVERSE_PREFIX):
            out[k[len(REVERSE_PREFIX):]] = 1 - v
        else:
            out[k] = v
    return out


def grid(config: TuningConfig) -> dict[str, list[Any]]:
    space = {}
    for r in config.ranges:
        space[r.name] = list(r.values) if r.type == "Categorical" else list(range(int(r.min), int(r.max) + 1))
    return space


def grid_points(config: TuningConfig) -> list[dict[str, Any]]:
    space = grid(config)
    return [dict(zip(space, combo)) for combo in itertools.product(*space.values())]


def grid_size(config: TuningConfig) -> int:
    return len(grid_points(config))


def make_sampler(config: TuningConfig, offset: int = 0) -> optuna.samplers.BaseSampler:
    """The strategy's sampler; `offset` (trials the study already has) moves the seed on, so a resumed job does
    not draw the same points again."""
    seed = config.seed + 100_003 * offset
    if config.strategy == "Bayesian":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(5, max(2, config.max_jobs // 4)))
    # Random, Hyperband's sampling, and Grid, whose points are all enqueued up front (Optuna's GridSampler calls
    # Study.stop() when the grid runs out, which the ask/tell loop used here does not allow).
    return optuna.samplers.RandomSampler(seed=seed)


def make_pruner(config: TuningConfig, max_epochs: int) -> optuna.pruners.BasePruner:
    """Early stopping of weak trials from their per-epoch objective values."""
    if config.strategy == "Hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(max_epochs, 1), reduction_factor=3)
    if config.early_stopping in ("Auto", "Median"):
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1)
    if config.early_stopping == "SuccessiveHalving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    return optuna.pruners.NopPruner()

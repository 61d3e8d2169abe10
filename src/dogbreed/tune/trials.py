"""A tuning job's trials as Optuna records them: loading the study, which trials are the job's own, the best one,
and telling Optuna how a trial ended (a failing trial becomes a FAIL state, a stopped one PRUNED, never a crash)."""

from __future__ import annotations

import math
import os

import optuna
from optuna.trial import TrialState

from dogbreed.config import Hyperparameters, home
from dogbreed.jobs import records
from dogbreed.jobs.records import COMPLETED, JobRecord
from dogbreed.tune import optuna_private
from dogbreed.tune.config import TuningConfig
from dogbreed.tune.space import make_pruner, make_sampler
from dogbreed.tune.trial import TrialOutcome

WARM = "warm_start_from"  # user attribute of trials copied from a parent tuning job
INTERRUPTED = "interrupted"  # user attribute of trials cut off by a crash (run again under a new number)


def default_storage() -> str:
    return os.environ.get("DOGBREED_TUNING_STORAGE") or f"sqlite:///{home() / 'tuning.db'}"


def max_epochs(config: TuningConfig) -> int:
    hp = Hyperparameters.from_mapping(config.static)
    epochs = [hp.epochs]
    for r in config.ranges:
        if r.name in ("epochs", "head_epochs") and r.max is not None:
            epochs.append(int(r.max))
    return max(epochs) + (hp.head_epochs if hp.train_mode != "head" else 0)


def load_study(name: str, storage: str, config: TuningConfig | None = None) -> optuna.Study:
    """The study, with the sampler seeded past the trials it already has: a resumed job draws new points instead
    of replaying the ones it evaluated before the crash."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if config is None:
        return optuna.load_study(study_name=name, storage=storage)
    existing = len(optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False))
    return optuna.load_study(study_name=name, storage=storage, sampler=make_sampler(config, offset=existing),
                             pruner=make_pruner(config, max_epochs(config)))


def own_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The tuning job's own training jobs: not warm-start copies, not runs cut off by a crash."""
    return [t for t in study.get_trials(deepcopy=False)
            if not t.user_attrs.get(WARM) and not t.user_attrs.get(INTERRUPTED)]


def best_trial(study: optuna.Study, config: TuningConfig) -> optuna.trial.FrozenTrial | None:
    done = [t for t in own_trials(study) if t.state == TrialState.COMPLETE]
    if not done:
        return None
    return max(done, key=lambda t: t.value) if config.maximize else min(done, key=lambda t: t.value)


def tell(study: optuna.Study, outcome: TrialOutcome) -> None:
    if outcome.node:
        optuna_private.set_user_attr(study, outcome.trial_id, "node", outcome.node)
    if outcome.pruned:
        study.tell(outcome.trial_number, state=TrialState.PRUNED)
    elif outcome.status == COMPLETED and outcome.value is not None and math.isfinite(outcome.value):
        study.tell(outcome.trial_number, outcome.value)
    else:
        optuna_private.set_user_attr(study, outcome.trial_id, "failure_reason", outcome.reason or outcome.status)
        study.tell(outcome.trial_number, state=TrialState.FAIL)


def mark_interrupted(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    """A trial cut off by a crash: failed under its number, queued to run again (once) under a new one."""
    optuna_private.set_user_attr(study, optuna_private.trial_id(trial), INTERRUPTED, True)
    study.tell(trial.number, state=TrialState.FAIL)
    study.enqueue_trial(trial.params, user_attrs={"rerun_of": trial.number})


def update_counts(record: JobRecord, study: optuna.Study, config: TuningConfig) -> JobRecord:
    counts: dict[str, int] = {}
    for t in own_trials(study):
        counts[t.state.name] = counts.get(t.state.name, 0) + 1
    best = best_trial(study, config)
    extra = {**record.extra, "trial_counts": counts,
             "best_training_job": best.user_attrs.get("job_name") if best else None,
             "best_objective_value": best.value if best else None}
    return records.update(records.load(name=record.name, reconcile=False), extra=extra)

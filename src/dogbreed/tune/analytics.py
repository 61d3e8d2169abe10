"""The tuning job's analytics, as SageMaker's HyperparameterTuningJobAnalytics shows them: a table of training jobs
(best first), CSV and JSON of it, and plots of the objective over time and of hyperparameter importance."""

from __future__ import annotations

import csv
import io
import json
import time
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from dogbreed.jobs import records
from dogbreed.spreadsheet import safe_cell
from dogbreed.tune.config import TuningConfig
from dogbreed.tune.trials import best_trial, load_study, own_trials
from dogbreed.tune.space import to_hyperparameters

_STATUS = {TrialState.COMPLETE: "Completed", TrialState.PRUNED: "Stopped", TrialState.FAIL: "Failed",
           TrialState.RUNNING: "InProgress", TrialState.WAITING: "Pending"}


def _iso(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t else ""


def analytics(name: str) -> tuple[list[dict[str, Any]], TuningConfig, optuna.Study]:
    record = records.load(name)
    config = TuningConfig.from_dict(record.extra["config"])
    study = load_study(name, record.extra["storage"])
    rows = []
    for t in own_trials(study):
        job_name = t.user_attrs.get("job_name", "")
        job = records.load(job_name) if job_name and records.exists(job_name) else None
        value = t.value
        if value is None and job is not None:
            value = job.metrics.get(config.objective_metric)
        if value is None and t.intermediate_values:
            value = t.intermediate_values[max(t.intermediate_values)]
        row: dict[str, Any] = dict(to_hyperparameters(t.params))
        start = job.start_time if job else (t.datetime_start.timestamp() if t.datetime_start else None)
        end = job.end_time if job else (t.datetime_complete.timestamp() if t.datetime_complete else None)
        row.update({
            "TrainingJobName": job_name,
            "TrainingJobStatus": job.status if job else _STATUS.get(t.state, t.state.name),
            "FinalObjectiveValue": value,
            "TrainingStartTime": _iso(start),
            "TrainingEndTime": _iso(end),
            "TrainingElapsedTimeSeconds": round(end - start, 1) if start and end else None,
            "_start": start, "_number": t.number,
        })
        rows.append(row)
    sign = -1 if config.maximize else 1
    rows.sort(key=lambda r: (r["FinalObjectiveValue"] is None,
                             sign * (r["FinalObjectiveValue"] if r["FinalObjectiveValue"] is not None else 0)))
    return rows, config, study


def columns(config: TuningConfig) -> list[str]:
    return [r.name for r in config.ranges] + ["TrainingJobName", "TrainingJobStatus", "FinalObjectiveValue",
                                              "TrainingStartTime", "TrainingEndTime", "TrainingElapsedTimeSeconds"]


def to_csv(rows: list[dict[str, Any]], config: TuningConfig) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns(config), extrasaction="ignore")
    w.writeheader()
    w.writerows({k: safe_cell(v) for k, v in r.items()} for r in rows)
    return buf.getvalue()


def to_table(rows: list[dict[str, Any]], config: TuningConfig) -> str:
    cols = columns(config)
    cells = [[_fmt(r.get(c)) for c in cols] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def write_reports(name: str) -> list[Path]:
    """analytics.csv, analytics.json, objective_over_time.png and hyperparameter_importance.png in the job folder."""
    rows, config, study = analytics(name)
    d = records.job_dir(name)
    (d / "analytics.csv").write_text(to_csv(rows, config))
    (d / "analytics.json").write_text(json.dumps([{k: v for k, v in r.items() if not k.startswith("_")}
                                                  for r in rows], indent=1, default=str))
    out = [d / "analytics.csv", d / "analytics.json"]
    _plot_objective(rows, config, name, d / "objective_over_time.png")
    _plot_importance(study, config, name, d / "hyperparameter_importance.png")
    return out + [d / "objective_over_time.png", d / "hyperparameter_importance.png"]


def _plot_objective(rows: list[dict[str, Any]], config: TuningConfig, name: str, path: Path) -> None:
    """Each trial's objective by trial number, coloured by status, with the best so far as a step line."""
    from dogbreed.plots import accuracy_axis, new_figure, save

    pts = sorted((r["_number"], r["FinalObjectiveValue"], r["TrainingJobStatus"]) for r in rows
                 if r["FinalObjectiveValue"] is not None)
    fig, ax = new_figure((8, 4.5))
    colours = {"Completed": "tab:blue", "Stopped": "tab:orange", "Failed": "tab:red"}
    for status in sorted({p[2] for p in pts}):
        ax.scatter([p[0] for p in pts if p[2] == status], [p[1] for p in pts if p[2] == status],
                   label="Stopped (early)" if status == "Stopped" else status, color=colours.get(status, "grey"),
                   zorder=3)
    best, xs, ys = None, [], []
    for number, value, status in pts:
        if status == "Completed" and (best is None or (value > best if config.maximize else value < best)):
            best = value
        if best is not None:
            xs.append(number)
            ys.append(best)
    if xs:
        ax.step(xs, ys, where="post", color="black", label="best so far")
    ax.set_xlabel("trial number")
    ax.set_ylabel(f"FinalObjectiveValue ({config.objective_metric})")
    ax.xaxis.get_major_locator().set_params(integer=True)
    if "accuracy" in config.objective_metric:  # trials all at 100% would get an axis from 96% to 104%
        accuracy_axis(ax, [p[1] for p in pts])
    ax.set_title(f"tuning job {name}")
    if pts:
        ax.legend()
    save(fig, path)


MIN_TRIALS_FOR_IMPORTANCE = 10  # fANOVA on fewer completed trials mostly reports noise


def _plot_importance(study: optuna.Study, config: TuningConfig, name: str, path: Path) -> None:
    from dogbreed.plots import new_figure, save

    done = [t for t in own_trials(study) if t.state == TrialState.COMPLETE]
    importances = importance(study, config)
    fig, ax = new_figure((6.5, 0.8 + 0.5 * max(len(importances), 2)))
    if importances:
        names = list(importances)[::-1]
        ax.barh(names, [importances[n] for n in names])
        ax.set_xlabel("importance (fANOVA)")
    else:
        ax.axis("off")
    title = f"hyperparameter importance, {name}"
    if len(done) < MIN_TRIALS_FOR_IMPORTANCE:
        note = (f"only {len(done)} completed trial(s): too few to trust "
                f"(about {MIN_TRIALS_FOR_IMPORTANCE} or more are needed)")
        if importances:
            title += "\n" + note
        else:
            ax.text(0.5, 0.5, note, ha="center", va="center", wrap=True, transform=ax.transAxes)
    ax.set_title(title, fontsize=10)
    save(fig, path)


def importance(study: optuna.Study, config: TuningConfig) -> dict[str, float]:
    done = [t for t in own_trials(study) if t.state == TrialState.COMPLETE]
    if len(done) < 2 or len({t.value for t in done}) < 2:
        return {}
    try:
        return {k.removeprefix("1-"): float(v) for k, v in optuna.importance.get_param_importances(
            study, params=None, target=None).items()}
    except Exception:  # importance needs variation in both params and values; none is not an error
        return {}


def summary(name: str) -> dict[str, Any]:
    record = records.load(name)
    rows, config, study = analytics(name)
    best = best_trial(study, config)
    return {"name": name, "status": record.status, "failure_reason": record.failure_reason,
            "strategy": config.strategy, "objective": {"metric": config.objective_metric, "type": config.objective_type},
            "trial_counts": record.extra.get("trial_counts", {}),
            "best_training_job": record.extra.get("best_training_job") or (best.user_attrs.get("job_name") if best else None),
            "best_objective_value": record.extra.get("best_objective_value"),
            "warm_start_trials": record.extra.get("warm_start_trials", 0),
            "second_stage": record.extra.get("second_stage", []),
            "registered_model": record.extra.get("registered_model"),
            "completion_reason": record.extra.get("completion_reason"),
            "training_jobs": [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]}

"""`dogbreed tune run | resume | describe | list | stop`."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from dogbreed.cli.hyperparameter_flags import add_hyperparameter_flags, hyperparameter_values
from dogbreed.cli.output import fmt, print_json, table
from dogbreed.config import UserError, load_yaml

EXIT_JOB_FAILED = 1


def add(sub: Any) -> None:
    tune = sub.add_parser("tune", help="hyperparameter tuning jobs").add_subparsers(
        dest="tune_command", required=True, metavar="ACTION")
    run = tune.add_parser("run", help="start a tuning job", description=(
        "Start a tuning job from a YAML file (strategy, objective, ranges, ...). Hyperparameter flags set static "
        "values and override the file's static_hyperparameters."))
    run.add_argument("--data", required=True)
    run.add_argument("--config", required=True, help="tuning YAML: hyperparameter_ranges, objective, strategy, ...")
    run.add_argument("--job-name", required=True, help="at most 32 characters, as SageMaker requires")
    run.add_argument("--executor", default="local", choices=("local", "ray"))
    run.add_argument("--ray-address", help="address of a running Ray cluster (default: start a local one)")
    run.add_argument("--storage", help="Optuna storage URL shared by all nodes (default: SQLite in the home)")
    run.add_argument("--gpus-per-trial", type=float, default=0.0)
    run.add_argument("--on-bad-file", default="error", choices=("error", "skip"))
    run.add_argument("--register-as", metavar="MODEL", help="register the best model under this name")
    run.add_argument("--json", action="store_true")
    add_hyperparameter_flags(run, "static hyperparameters")
    run.set_defaults(func=cmd_run)
    rs = tune.add_parser("resume", help="resume a tuning job after a crash or a stop")
    rs.add_argument("name")
    rs.add_argument("--json", action="store_true")
    rs.set_defaults(func=cmd_resume)
    ds = tune.add_parser("describe", help="the tuning job's analytics table, best first")
    ds.add_argument("name")
    fmt_group = ds.add_mutually_exclusive_group()
    fmt_group.add_argument("--csv", action="store_true")
    fmt_group.add_argument("--json", action="store_true")
    ds.set_defaults(func=cmd_describe)
    ls = tune.add_parser("list", help="list tuning jobs")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_list)
    st = tune.add_parser("stop", help="stop a tuning job and its running trials")
    st.add_argument("name")
    st.add_argument("--wait", type=float, default=60.0)
    st.set_defaults(func=cmd_stop)


def _require_tuning(name: str) -> None:
    from dogbreed.jobs.records import load

    if load(name).kind != "tuning":
        raise UserError(f"{name!r} is not a tuning job")


def cmd_run(args: argparse.Namespace) -> int:
    from dogbreed.tune.config import parse_tuning_config
    from dogbreed.tune.start import TuningJobSpec, start_tuning_job

    doc = load_yaml(args.config)
    static = hyperparameter_values(args)
    if static:
        doc = {**doc, "static_hyperparameters": {**(doc.get("static_hyperparameters") or {}), **static}}
    config = parse_tuning_config(doc)
    record = start_tuning_job(TuningJobSpec(args.job_name, args.data, config, executor=args.executor,
                                            ray_address=args.ray_address, storage=args.storage,
                                            on_bad_file=args.on_bad_file, gpus_per_trial=args.gpus_per_trial,
                                            register_as=args.register_as))
    return _report(record, args.json)


def cmd_resume(args: argparse.Namespace) -> int:
    from dogbreed.tune.resume import resume_tuning_job

    _require_tuning(args.name)
    return _report(resume_tuning_job(args.name), args.json)


def _report(record: Any, as_json: bool) -> int:
    from dogbreed.tune import analytics

    if as_json:
        print_json(analytics.summary(record.name))
    else:
        print(f"tuning job {record.name}: {record.status}; best training job "
              f"{fmt(record.extra.get('best_training_job'))} ({fmt(record.extra.get('best_objective_value'))}); "
              f"trials {fmt(record.extra.get('trial_counts'))}")
        print(f"  table: dogbreed tune describe {record.name}")
    if record.status == "Stopped":
        print(f"tuning job {record.name} stopped: {record.failure_reason}", file=sys.stderr)
    return 0 if record.status == "Completed" else EXIT_JOB_FAILED


def cmd_describe(args: argparse.Namespace) -> int:
    from dogbreed.tune import analytics

    _require_tuning(args.name)
    rows, config, _ = analytics.analytics(args.name)
    if args.csv:
        sys.stdout.write(analytics.to_csv(rows, config))
        return 0
    s = analytics.summary(args.name)
    if args.json:
        print_json(s)
        return 0
    print(f"tuning job {s['name']}: {s['status']}" + (f" ({s['failure_reason']})" if s["failure_reason"] else ""))
    print(f"strategy {s['strategy']}, objective {s['objective']['type']} {s['objective']['metric']}, "
          f"trials {fmt(s['trial_counts'])}, warm-start trials {s['warm_start_trials']}")
    print(f"best training job: {fmt(s['best_training_job'])} ({fmt(s['best_objective_value'])})"
          + (f"; completion: {s['completion_reason']}" if s["completion_reason"] else ""))
    print(analytics.to_table(rows, config))
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from dogbreed.jobs.records import list_records

    recs = list_records(kind="tuning")
    if args.json:
        print_json([r.to_dict() for r in recs])
        return 0
    if not recs:
        print("no tuning jobs (run `dogbreed tune run`)")
        return 0
    print(table(["NAME", "STATUS", "BEST JOB", "BEST OBJECTIVE", "TRIALS"],
                [[r.name, r.status, r.extra.get("best_training_job"), r.extra.get("best_objective_value"),
                  r.extra.get("trial_counts", {})] for r in recs], right=(3,)))
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    from dogbreed.jobs.control import stop_job

    _require_tuning(args.name)
    r = stop_job(args.name, grace=args.wait)
    print(f"tuning job {r.name}: {r.status}" + (f" ({r.failure_reason})" if r.failure_reason else ""))
    return 0

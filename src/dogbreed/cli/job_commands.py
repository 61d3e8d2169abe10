"""`dogbreed jobs ...` (list, describe, stop, resume, delete) and `dogbreed logs`."""

from __future__ import annotations

import argparse
from typing import Any

from dogbreed.cli.output import fmt, fmt_time, print_json, table
from dogbreed.config import UserError
from dogbreed.jobs.records import ENDED, IN_PROGRESS


def add(sub: Any) -> None:
    jobs = sub.add_parser("jobs", help="training and tuning job records").add_subparsers(
        dest="jobs_command", required=True, metavar="ACTION")
    jl = jobs.add_parser("list", help="list jobs, newest first (a tuning job's trials are folded under it)")
    jl.add_argument("--kind", choices=("training", "tuning"))
    jl.add_argument("--status", choices=(IN_PROGRESS, *ENDED))
    jl.add_argument("--parent", metavar="TUNING_JOB", help="the trials of one tuning job")
    jl.add_argument("--all", action="store_true", help="trials too, unfolded")
    jl.add_argument("--json", action="store_true")
    jl.set_defaults(func=cmd_list)
    jd = jobs.add_parser("describe", help="show one job")
    jd.add_argument("name")
    jd.add_argument("--json", action="store_true")
    jd.set_defaults(func=cmd_describe)
    js = jobs.add_parser("stop", help="stop a running job cleanly (status Stopped), like StopTrainingJob")
    js.add_argument("name")
    js.add_argument("--wait", type=float, default=60.0, help="seconds to wait before terminating it")
    js.set_defaults(func=cmd_stop)
    jr = jobs.add_parser("resume", help="continue a Failed or Stopped training job from its last checkpoint")
    jr.add_argument("name")
    jr.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda when present)")
    jr.add_argument("--json", action="store_true", help="the job record as JSON")
    jr.set_defaults(func=cmd_resume)
    jx = jobs.add_parser("delete", help="delete an ended job (a tuning job with its trials)")
    jx.add_argument("name")
    jx.set_defaults(func=cmd_delete)

    lg = sub.add_parser("logs", help="print the log of a job, tuning job or endpoint; `logs export NAME DEST`",
                        description="`dogbreed logs NAME [--follow]` prints a log; `dogbreed logs export NAME DEST` "
                                    "copies a job's log, metrics and reports to a folder or URI (s3://...).")
    lg.add_argument("words", nargs="+", metavar="NAME | export NAME DEST")
    lg.add_argument("--follow", "-f", action="store_true", help="keep printing until the job ends")
    lg.set_defaults(func=cmd_logs)


def cmd_list(args: argparse.Namespace) -> int:
    from dogbreed.jobs.records import exists, list_records, load

    if args.parent and not (exists(args.parent) and load(args.parent).kind == "tuning"):
        # a typo would otherwise read "no jobs", as if the tuning job had no trials
        raise UserError(f"no tuning job named {args.parent!r} (see `dogbreed jobs list --kind tuning`)")
    recs = list_records(kind=args.kind, parent=args.parent)
    if args.status:
        recs = [r for r in recs if r.status == args.status]
    trials: dict[str, int] = {}
    for r in list_records(kind="training"):
        if r.parent:
            trials[r.parent] = trials.get(r.parent, 0) + 1
    if not (args.all or args.parent):
        recs = [r for r in recs if not r.parent]
    if args.json:
        print_json([r.to_dict() for r in recs])
        return 0
    if not recs:
        print("no jobs (run `dogbreed train` or `dogbreed tune run`)")
        return 0
    rows = []
    for r in recs:
        objective = r.metrics.get("validation:accuracy") if r.kind == "training" else r.extra.get(
            "best_objective_value")
        n = trials.get(r.name)
        rows.append([r.name, r.kind, r.status, r.extra.get("backbone") or r.hyperparameters.get("backbone"),
                     objective, r.metrics.get("test:accuracy"), f"{n} trial{'s' * (n != 1)}" if n else "",
                     fmt_time(r.start_time), f"{r.elapsed_s:.1f}"])
    print(table(["NAME", "KIND", "STATUS", "BACKBONE", "VAL ACC", "TEST ACC", "TRIALS", "START", "SECONDS"], rows,
                right=(4, 5, 8)))
    return 0


def cmd_describe(args: argparse.Namespace) -> int:
    from dogbreed.jobs.records import job_dir, load, stop_requested

    r = load(args.name)
    status = r.status + (" (stop requested)" if r.status == IN_PROGRESS and stop_requested(r.name) else "")
    if args.json:
        print_json({**r.to_dict(), "artifacts": str(job_dir(r.name))})
        return 0
    print(f"name:            {r.name}")
    print(f"kind:            {r.kind}" + (f" (trial of {r.parent})" if r.parent else ""))
    print(f"status:          {status}" + (f" ({r.failure_reason})" if r.failure_reason else ""))
    print(f"start / end:     {fmt_time(r.start_time)} / {fmt_time(r.end_time)} ({r.elapsed_s:.1f} s)")
    counts = (f" ({fmt(r.data.get('num_classes'))} classes, {fmt(r.data.get('num_training_samples'))} training "
              "images)" if r.data.get("num_classes") is not None else "")  # a tuning job: see its trials
    print(f"data:            {fmt(r.data.get('location'))}{counts}")
    print(f"mlflow run:      {r.mlflow_run_id or '-'}")
    print(f"artifacts:       {job_dir(r.name)}")
    for warning in r.extra.get("preflight_warnings", []):
        print(f"warning:         {warning}")
    print("hyperparameters:")
    for k, v in r.hyperparameters.items():
        print(f"  {k:28s} {fmt(v)}")
    if r.metrics:
        print("final metrics:")
        for k, v in sorted(r.metrics.items()):
            print(f"  {k:28s} {fmt(v)}")
    if r.history:
        print(f"epochs:          {len(r.history)}")
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    from dogbreed.jobs.control import stop_job

    r = stop_job(args.name, grace=args.wait)
    print(f"job {r.name}: {r.status}" + (f" ({r.failure_reason})" if r.failure_reason else ""))
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    from dogbreed.cli.train_commands import finish_job_command
    from dogbreed.train.resume import resume_training_job

    return finish_job_command(resume_training_job(args.name, device=args.device), args.json)


def cmd_delete(args: argparse.Namespace) -> int:
    from dogbreed.jobs.control import delete_job

    deleted = delete_job(args.name)
    print(f"deleted {', '.join(deleted)}")
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    words = args.words
    if words[0] == "export" and len(words) == 3:
        from dogbreed.jobs.logs_export import export_logs

        ensure_report(words[1])
        files = export_logs(words[1], words[2])
        print(f"exported {len(files)} file(s) of {words[1]} to {words[2]}")
        return 0
    if len(words) != 1:
        raise UserError("usage: dogbreed logs NAME [--follow] | dogbreed logs export NAME DEST")
    show_log(words[0], args.follow)
    return 0


def show_log(name: str, follow: bool) -> None:
    from dogbreed.jobs import endpoint_records, names, records
    from dogbreed.jobs.logs import follow as follow_log

    names.validate(name, "job or endpoint")
    if records.exists(name):
        record = records.load(name)
        path = records.job_dir(name) / ("tuning.log" if record.kind == "tuning" else "train.log")
        running = lambda: records.load(name).status == IN_PROGRESS  # noqa: E731
    elif endpoint_records.exists(name):
        path = endpoint_records.endpoint_dir(name) / "endpoint.log"
        running = lambda: endpoint_records.load(name).live_status in ("Creating", "InService")  # noqa: E731
    else:
        raise UserError(f"no job or endpoint named {name!r}")
    if not path.exists():
        raise UserError(f"{name!r} has no log yet")
    follow_log(path, running, follow=follow)


def ensure_report(name: str) -> None:
    """Writes a job's HTML report when it has none yet: it is the file people open first."""
    from dogbreed.jobs import records

    if not records.exists(name) or (records.job_dir(name) / "report.html").exists():
        return
    from dogbreed.debug.report import write_report

    try:
        write_report(name)
    except UserError:  # e.g. a job run without the debugger: its log and metrics still go
        pass

"""`dogbreed data check | upload`, `dogbreed backbones`, and the debugger's `debug` and `report`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from dogbreed.cli.output import print_json

EXIT_JOB_FAILED = 1


def add(sub: Any) -> None:
    data = sub.add_parser("data", help="dataset tools").add_subparsers(dest="data_command", required=True,
                                                                       metavar="ACTION")
    dc = data.add_parser("check", help="report problems in a dataset folder")
    dc.add_argument("data")
    dc.add_argument("--workers", type=int, default=2)
    dc.add_argument("--json", action="store_true")
    dc.set_defaults(func=cmd_data_check)
    du = data.add_parser("upload", help="copy a local dataset to a location (path or fsspec URI such as "
                                        "s3://bucket/prefix)")
    du.add_argument("src")
    du.add_argument("dest")
    du.add_argument("--json", action="store_true")
    du.set_defaults(func=cmd_data_upload)

    bb = sub.add_parser("backbones", help="list registered backbones")
    bb.add_argument("--json", action="store_true")
    bb.set_defaults(func=cmd_backbones)

    db = sub.add_parser("debug", help="rerun the debugger's rules on a job's recorded data")
    db.add_argument("name")
    db.add_argument("--rule", action="append", metavar="SPEC", help="Name[:param=value,...] (repeatable)")
    db.add_argument("--json", action="store_true")
    db.set_defaults(func=cmd_debug)
    rp = sub.add_parser("report", help="write a job's HTML report (curves, gradients, system usage, rules)")
    rp.add_argument("name")
    rp.add_argument("--output", help="HTML file (default: in the job folder)")
    rp.add_argument("--json", action="store_true")
    rp.set_defaults(func=cmd_report)


def cmd_data_check(args: argparse.Namespace) -> int:
    from dogbreed.data.check import check_dataset

    report = check_dataset(args.data, workers=args.workers)
    if args.json:
        print_json(report.to_dict())
    else:
        print("\n".join(report.summary_lines()))
    return 0 if report.ok else EXIT_JOB_FAILED


def cmd_data_upload(args: argparse.Namespace) -> int:
    from dogbreed.data.layout import upload

    n = upload(args.src, args.dest)
    if args.json:
        print_json({"files": n, "destination": args.dest})
    else:
        print(f"copied {n} files to {args.dest}")
    return 0


def cmd_backbones(args: argparse.Namespace) -> int:
    from dogbreed.models import list_backbones

    specs = list_backbones()
    if args.json:
        print_json([{"name": s.name, "timm_name": s.timm_name, "preprocessing": s.preprocessing.to_dict(),
                     "description": s.description} for s in specs])
        return 0
    for s in specs:
        p = s.preprocessing
        print(f"{s.name:22s} {p.input_size}px crop {p.crop_pct} {p.interpolation:8s} {s.description}")
    print("any other timm model name works too (weights from the hub when online, or weights_file=PATH)")
    return 0


def cmd_debug(args: argparse.Namespace) -> int:
    from dogbreed.debug.hooks import DebugData
    from dogbreed.debug.monitor import DebuggerConfig, save_results
    from dogbreed.debug.rules import evaluate_all
    from dogbreed.jobs.records import job_dir, load

    load(args.name)
    data = DebugData.load(job_dir(args.name) / "debug")
    results = evaluate_all(DebuggerConfig(rules=tuple(args.rule or ())).rule_configs(), data)
    save_results(job_dir(args.name) / "debug", results)
    if args.json:
        print_json([r.to_report() for r in results])
        return 0
    for r in sorted(results, key=lambda r: (not r.triggered, r.rule)):
        print(f"{r.rule:26s} {r.status:14s} {r.details}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from dogbreed.debug.report import write_report

    out = write_report(args.name, Path(args.output) if args.output else None)
    if args.json:
        print_json({"report": str(out)})
    else:
        print(f"report written to {out}")
    return 0

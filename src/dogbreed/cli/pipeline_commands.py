"""`dogbreed pipeline run pipeline.yaml`."""

from __future__ import annotations

import argparse
from typing import Any

from dogbreed.cli.output import print_json


def add(sub: Any) -> None:
    pipeline = sub.add_parser("pipeline", help="the whole flow from one YAML file").add_subparsers(
        dest="pipeline_command", required=True, metavar="ACTION")
    run = pipeline.add_parser("run", help="data check, training or tuning, report, registration, endpoint, smoke "
                                          "test, HTML summary; a rerun continues where the last one stopped")
    run.add_argument("file", help="pipeline YAML (see the README)")
    run.add_argument("--json", action="store_true")
    run.set_defaults(func=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    from dogbreed.pipeline import PipelineSpec, run_pipeline

    out = run_pipeline(PipelineSpec.from_yaml(args.file))
    if args.json:
        print_json(out)
    else:
        print(f"pipeline done; summary: {out['summary']}")
    return 0

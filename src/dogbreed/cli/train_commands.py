"""`dogbreed train` and `dogbreed evaluate`."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from dogbreed.cli.hyperparameter_flags import add_hyperparameter_flags, hyperparameter_values
from dogbreed.cli.output import fmt, print_json
from dogbreed.config import Hyperparameters, load_yaml

EXIT_JOB_FAILED = 1


def add(sub: Any) -> None:
    t = sub.add_parser("train", help="run a training job", description=(
        "Run a training job. Hyperparameters use SageMaker's image-classification names (--learning_rate 0.01); "
        "a --config YAML file sets many at once and flags override it."))
    t.add_argument("--data", required=True, help="dataset folder or URI with train/, valid/ and optional test/")
    t.add_argument("--job-name", required=True)
    t.add_argument("--config", help="YAML file of hyperparameters (flags override it)")
    t.add_argument("--on-bad-file", default="error", choices=("error", "skip"))
    t.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda when present)")
    t.add_argument("--no-tracking", action="store_true", help="do not record the job in MLflow")
    t.add_argument("--register-as", metavar="MODEL", help="register the model in the model registry when done")
    t.add_argument("--no-debugger", action="store_true", help="record no tensors and run no rules")
    t.add_argument("--debug-interval", type=int, default=10, help="record tensors every N steps")
    t.add_argument("--rule", action="append", metavar="SPEC",
                   help="configure a rule: Name[:param=value,...,action=stop] (repeatable; all rules run anyway)")
    t.add_argument("--profiler-interval-ms", type=int, default=500)
    t.add_argument("--profile-steps", metavar="A-B", help="torch.profiler Chrome trace of steps A to B")
    t.add_argument("--checkpoint-uri", metavar="URI",
                   help="where checkpoints go (folder or fsspec URI, like checkpoint_s3_uri); default: the job's "
                        "folder. `dogbreed jobs resume NAME` goes on from the last one")
    t.add_argument("--instance-count", type=int, default=1, metavar="N",
                   help="data-parallel workers on a Ray cluster (Ray Train, PyTorch DDP); 1: this process")
    t.add_argument("--ray-address", metavar="HOST:PORT",
                   help="the Ray cluster for --instance-count > 1 (default: a local one started for the job)")
    t.add_argument("--max-failures", type=int, default=1, metavar="N",
                   help="with --instance-count > 1: worker losses survived by restarting from the last checkpoint")
    t.add_argument("--json", action="store_true", help="the job record as JSON")
    add_hyperparameter_flags(t)
    t.set_defaults(func=cmd_train)

    ev = sub.add_parser("evaluate", help="evaluate a finished job's model on a split of its data (or other data)")
    ev.add_argument("--job", required=True)
    ev.add_argument("--data", help="dataset folder or URI (default: the job's own data)")
    ev.add_argument("--split", choices=("train", "valid", "test"), help="default: test when present, else valid")
    ev.add_argument("--top-k", type=int, default=5)
    ev.add_argument("--json", action="store_true")
    ev.set_defaults(func=cmd_evaluate)


def hyperparameters_from(args: argparse.Namespace) -> Hyperparameters:
    values: dict[str, Any] = load_yaml(args.config) if getattr(args, "config", None) else {}
    values.update(hyperparameter_values(args))
    return Hyperparameters.from_mapping(values)


def cmd_train(args: argparse.Namespace) -> int:
    from dogbreed.debug.monitor import DebuggerConfig
    from dogbreed.train.job import TrainingJobSpec, run_training_job

    hp = hyperparameters_from(args)
    debugger = DebuggerConfig(enabled=not args.no_debugger, interval=args.debug_interval, rules=tuple(args.rule or ()),
                              profiler_interval_ms=args.profiler_interval_ms, profile_steps=args.profile_steps)
    if args.register_as:
        from dogbreed.jobs.names import validate

        validate(args.register_as, "model")
    record = run_training_job(TrainingJobSpec(name=args.job_name, data=args.data, hyperparameters=hp,
                                              on_bad_file=args.on_bad_file, device=args.device,
                                              track=not args.no_tracking, debugger=debugger,
                                              checkpoint_uri=args.checkpoint_uri, instance_count=args.instance_count,
                                              ray_address=args.ray_address, max_failures=args.max_failures))
    if args.register_as and record.status == "Completed":
        from dogbreed.jobs.model_registry import register_job

        info = register_job(record.name, args.register_as)
        print(f"registered {info.name}:{info.version}", file=sys.stderr)
    return finish_job_command(record, args.json)


def finish_job_command(record: Any, as_json: bool) -> int:
    """Prints a finished job and turns its status into the command's exit code."""
    if as_json:
        print_json(record.to_dict())
    else:
        print_job_summary(record)
    if record.status == "Failed":
        print(f"error: job {record.name} failed: {record.failure_reason}", file=sys.stderr)
        return EXIT_JOB_FAILED
    if record.status == "Stopped":
        print(f"job {record.name} stopped: {record.failure_reason}", file=sys.stderr)
        return 130 if "interrupt" in (record.failure_reason or "") else EXIT_JOB_FAILED
    return 0


def print_job_summary(record: Any) -> None:
    from dogbreed.jobs.records import job_dir

    print(f"job {record.name}: {record.status}" + (f" ({record.failure_reason})" if record.failure_reason else ""))
    for k, v in sorted(record.metrics.items()):
        if isinstance(v, float):
            print(f"  {k:32s} {fmt(v)}")
    print(f"  artifacts: {job_dir(record.name)}")


def cmd_evaluate(args: argparse.Namespace) -> int:
    from dogbreed.train.job_evaluation import evaluate_job

    if args.top_k < 1:
        from dogbreed.config import UserError

        raise UserError("--top-k must be at least 1")
    ev, out_dir = evaluate_job(args.job, args.data, args.split, top_k=args.top_k)
    result = {"job": args.job, "split": ev.split, "accuracy": ev.accuracy, "top_k": ev.top_k,
              "top_k_accuracy": ev.top_k_accuracy, "loss": ev.loss, "artifacts": str(out_dir),
              "most_confused": ev.most_confused[:10]}
    if args.json:
        print_json(result)
        return 0
    print(f"{args.job} on {ev.split}: accuracy {fmt(ev.accuracy)}, top-{ev.top_k} {fmt(ev.top_k_accuracy)}, "
          f"loss {fmt(ev.loss)}")
    for t, p, n in ev.most_confused[:5]:
        print(f"  {t} -> {p}: {n}")
    print(f"  artifacts: {out_dir}")
    return 0

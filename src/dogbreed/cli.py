"""The `dogbreed` command. User mistakes end as one line on stderr and exit code 2, never a traceback."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any, Callable

from dogbreed.config import Hyperparameters, UserError, load_yaml

EXIT_USER_ERROR, EXIT_JOB_FAILED = 2, 1


def _hyperparameter_flags(argv: list[str]) -> tuple[list[str], dict[str, str]]:
    """Splits `--<hyperparameter> VALUE` pairs (any known or unknown name) out of the rest of the arguments."""
    import dataclasses

    known = {f.name for f in dataclasses.fields(Hyperparameters)}
    rest, hps = [], {}
    i = 0
    while i < len(argv):
        a = argv[i]
        if a.startswith("--") and a[2:].split("=", 1)[0].replace("-", "_") in known:
            name, _, value = a[2:].partition("=")
            name = name.replace("-", "_")
            if not value:
                if i + 1 >= len(argv):
                    raise UserError(f"--{name} needs a value")
                value = argv[i + 1]
                i += 1
            hps[name] = value
        else:
            rest.append(a)
        i += 1
    return rest, hps


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=1, default=str))


def _fmt_time(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t else "-"


# -- commands ------------------------------------------------------------------------------------------------


def cmd_train(args: argparse.Namespace, hp_flags: dict[str, str]) -> int:
    from dogbreed.train.job import TrainingJobSpec, run_training_job

    values: dict[str, Any] = load_yaml(args.config) if args.config else {}
    values.update(hp_flags)
    hp = Hyperparameters.from_mapping(values)
    from dogbreed.debug.monitor import DebuggerConfig

    debugger = DebuggerConfig(enabled=not args.no_debugger, interval=args.debug_interval, rules=tuple(args.rule or ()),
                              profiler_interval_ms=args.profiler_interval_ms, profile_steps=args.profile_steps)
    record = run_training_job(TrainingJobSpec(name=args.job_name, data=args.data, hyperparameters=hp,
                                              on_bad_file=args.on_bad_file, device=args.device,
                                              track=not args.no_tracking, debugger=debugger))
    if args.register_as and record.status == "Completed":
        from dogbreed.train.registry import register_job

        info = register_job(record.name, args.register_as)
        print(f"registered {info.name}:{info.version}", file=sys.stderr)
    if args.json:
        _print_json(record.to_dict())
    else:
        _print_job_summary(record)
    if record.status == "Failed":
        print(f"error: job {record.name} failed: {record.failure_reason}", file=sys.stderr)
        return EXIT_JOB_FAILED
    if record.status == "Stopped":
        print(f"job {record.name} stopped: {record.failure_reason}", file=sys.stderr)
        return 130 if "interrupt" in (record.failure_reason or "") else EXIT_JOB_FAILED
    return 0


def _print_job_summary(record: Any) -> None:
    from dogbreed.train.records import job_dir

    print(f"job {record.name}: {record.status}" + (f" ({record.failure_reason})" if record.failure_reason else ""))
    for k, v in sorted(record.metrics.items()):
        if isinstance(v, float):
            print(f"  {k:32s} {v:.4f}")
    print(f"  artifacts: {job_dir(record.name)}")


def cmd_jobs_list(args: argparse.Namespace) -> int:
    from dogbreed.train.records import list_records

    recs = list_records(kind=None if args.all else "training")
    if args.json:
        _print_json([r.to_dict() for r in recs])
        return 0
    if not recs:
        print("no jobs yet (run `dogbreed train`)")
        return 0
    print(f"{'NAME':28s} {'STATUS':11s} {'BACKBONE':20s} {'VAL ACC':>8s} {'TEST ACC':>8s} {'START':19s} {'SECONDS':>8s}")
    for r in recs:
        va, te = r.metrics.get("validation:accuracy"), r.metrics.get("test:accuracy")
        print(f"{r.name:28s} {r.status:11s} {str(r.extra.get('backbone', '-')):20s} "
              f"{'-' if va is None else f'{va:.4f}':>8s} {'-' if te is None else f'{te:.4f}':>8s} "
              f"{_fmt_time(r.start_time):19s} {r.elapsed_s:8.1f}")
    return 0


def cmd_jobs_describe(args: argparse.Namespace) -> int:
    from dogbreed.train.records import job_dir, load

    r = load(args.name)
    if args.json:
        _print_json({**r.to_dict(), "artifacts": str(job_dir(r.name))})
        return 0
    print(f"name:            {r.name}")
    print(f"kind:            {r.kind}")
    print(f"status:          {r.status}" + (f" ({r.failure_reason})" if r.failure_reason else ""))
    print(f"start / end:     {_fmt_time(r.start_time)} / {_fmt_time(r.end_time)} ({r.elapsed_s:.1f} s)")
    print(f"data:            {r.data.get('location')} ({r.data.get('num_classes', '?')} classes, "
          f"{r.data.get('num_training_samples', '?')} training images)")
    print(f"mlflow run:      {r.mlflow_run_id or '-'}")
    print(f"artifacts:       {job_dir(r.name)}")
    print("hyperparameters:")
    for k, v in r.hyperparameters.items():
        print(f"  {k:28s} {v}")
    if r.metrics:
        print("final metrics:")
        for k, v in sorted(r.metrics.items()):
            print(f"  {k:28s} {v:.4f}" if isinstance(v, float) else f"  {k:28s} {v}")
    if r.history:
        print(f"epochs:          {len(r.history)}")
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    from dogbreed.serve import endpoints
    from dogbreed.train.records import job_dir, load

    if (job_dir(args.name) / "job.json").exists():
        path = job_dir(args.name) / "train.log"
        running = lambda: load(args.name).status == "InProgress"  # noqa: E731
    elif (endpoints.endpoint_dir(args.name) / "endpoint.json").exists():
        path = endpoints.endpoint_dir(args.name) / "endpoint.log"
        running = lambda: endpoints.load(args.name).live_status == "InService"  # noqa: E731
    else:
        raise UserError(f"no job or endpoint named {args.name!r}")
    if not path.exists():
        raise UserError(f"{args.name!r} has no log yet")
    with path.open() as f:
        sys.stdout.write(f.read())
        sys.stdout.flush()
        while args.follow:
            line = f.readline()
            if line:
                sys.stdout.write(line)
                sys.stdout.flush()
                continue
            if not running():
                sys.stdout.write(f.read())
                break
            time.sleep(0.5)
    return 0


def cmd_models_register(args: argparse.Namespace) -> int:
    from dogbreed.train.registry import register_job

    info = register_job(args.job, args.name, tuple(args.alias or ()))
    if args.json:
        _print_json(info.to_dict())
    else:
        print(f"registered {info.name}:{info.version} from job {info.job}" +
              (f" (aliases: {', '.join(info.aliases)})" if info.aliases else ""))
    return 0


def cmd_models_list(args: argparse.Namespace) -> int:
    from dogbreed.train.registry import list_models

    models = list_models()
    if args.json:
        _print_json(models)
        return 0
    if not models:
        print("no registered models (run `dogbreed models register JOB`)")
    for m in models:
        aliases = ", ".join(f"@{a}={v}" for a, v in m["aliases"].items())
        print(f"{m['name']:28s} versions {m['versions']:<3} latest {m['latest_version']} (job {m['latest_job']}, "
              f"validation accuracy {m['validation_accuracy'] or '-'}) {aliases}")
    return 0


def cmd_models_describe(args: argparse.Namespace) -> int:
    from dogbreed.train.registry import describe_model

    d = describe_model(args.name)
    if args.json:
        _print_json(d)
        return 0
    print(f"model {d['name']}: {len(d['versions'])} version(s); aliases {d['aliases'] or '-'}")
    for v in d["versions"]:
        acc = v["tags"].get("metric.validation:accuracy", "-")
        print(f"  v{v['version']}: job {v['job']}, backbone {v['tags'].get('dogbreed.backbone')}, "
              f"{v['tags'].get('dogbreed.num_classes')} classes, validation accuracy {acc}, source {v['source']}")
    return 0


def cmd_deploy(args: argparse.Namespace) -> int:
    from dogbreed.serve.endpoints import deploy

    deploy(args.model, args.endpoint_name, host=args.host, port=args.port, workers=args.workers,
           backend=args.backend, device=args.device, api_key=args.api_key, max_batch_size=args.max_batch_size,
           max_wait_ms=args.max_wait_ms)
    return 0


def cmd_endpoints_list(args: argparse.Namespace) -> int:
    from dogbreed.serve.endpoints import list_endpoints

    eps = list_endpoints()
    if args.json:
        _print_json([e.to_dict() for e in eps])
        return 0
    if not eps:
        print("no endpoints (run `dogbreed deploy`)")
    for e in eps:
        print(f"{e.name:24s} {e.live_status:10s} {e.url:28s} {e.model} ({e.backend}, {e.workers} worker(s))")
    return 0


def cmd_endpoints_describe(args: argparse.Namespace) -> int:
    from dogbreed.serve.endpoints import load

    e = load(args.name)
    if args.json:
        _print_json(e.to_dict())
        return 0
    for k, v in e.to_dict().items():
        print(f"{k:18s} {_fmt_time(v) if k == 'created' else v}")
    return 0


def cmd_endpoints_delete(args: argparse.Namespace) -> int:
    from dogbreed.serve.endpoints import delete

    e = delete(args.name)
    if args.json:
        _print_json({"deleted": e.name})
    else:
        print(f"endpoint {e.name} deleted")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from dogbreed.serve.client import predict_files

    if bool(args.endpoint) == bool(args.model):
        raise UserError("give exactly one of --endpoint URL or --model REF")
    results = predict_files(args.images, endpoint=args.endpoint, model_ref=args.model, top_k=args.top_k,
                            api_key=args.api_key)
    if args.json:
        _print_json(results)
    else:
        for r in results:
            if "error" in r:
                print(f"{r['source']}: error: {r['error']}")
                continue
            best = ", ".join(f"{p['label']} {p['probability']:.1%}" for p in r["top_k"])
            print(f"{r['source']}: {best}")
    return 0 if all("error" not in r for r in results) else EXIT_JOB_FAILED


def cmd_batch_transform(args: argparse.Namespace) -> int:
    from dogbreed.serve.batch_transform import batch_transform
    from dogbreed.train.registry import model_dir_for

    from tqdm import tqdm

    with tqdm(desc="batch transform", unit="img", disable=None) as bar:
        summary = batch_transform(model_dir_for(args.model), args.input, args.output, top_k=args.top_k,
                                  on_progress=bar.update)
    if args.json:
        _print_json(summary)
    else:
        print(f"{summary['processed']} image(s) predicted, {summary['skipped_done']} already done, "
              f"{summary['errors']} unreadable; output {summary['output']}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from dogbreed.train.predict import evaluate_job

    ev, out_dir = evaluate_job(args.job, args.data, args.split, top_k=args.top_k)
    result = {"job": args.job, "split": args.split, "accuracy": ev.accuracy, "top_k": ev.top_k,
              "top_k_accuracy": ev.top_k_accuracy, "loss": ev.loss, "artifacts": str(out_dir),
              "most_confused": ev.most_confused[:10]}
    if args.json:
        _print_json(result)
    else:
        print(f"{args.job} on {args.split}: accuracy {ev.accuracy:.4f}, top-{ev.top_k} {ev.top_k_accuracy:.4f}, "
              f"loss {ev.loss:.4f}")
        for t, p, n in ev.most_confused[:5]:
            print(f"  {t} -> {p}: {n}")
        print(f"  artifacts: {out_dir}")
    return 0


def cmd_data_check(args: argparse.Namespace) -> int:
    from dogbreed.train.predict import check_data

    report = check_data(args.data, workers=args.workers)
    if args.json:
        _print_json(report.to_dict())
    else:
        print("\n".join(report.summary_lines()))
    return 0 if report.ok else EXIT_JOB_FAILED


def cmd_data_upload(args: argparse.Namespace) -> int:
    from dogbreed.data.layout import upload

    n = upload(args.src, args.dest)
    if args.json:
        _print_json({"files": n, "destination": args.dest})
    else:
        print(f"copied {n} files to {args.dest}")
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    from dogbreed.tune import analytics
    from dogbreed.tune.runner import TuningJobSpec, resume_tuning_job, start_tuning_job

    if args.action == "describe":
        if not args.name:
            raise UserError("usage: dogbreed tune describe NAME [--csv|--json]")
        _require_tuning(args.name)
        if args.csv:
            rows, config, _ = analytics.analytics(args.name)
            sys.stdout.write(analytics.to_csv(rows, config))
            return 0
        s = analytics.summary(args.name)
        if args.json:
            _print_json(s)
            return 0
        rows, config, _ = analytics.analytics(args.name)
        print(f"tuning job {s['name']}: {s['status']}" + (f" ({s['failure_reason']})" if s["failure_reason"] else ""))
        print(f"strategy {s['strategy']}, objective {s['objective']['type']} {s['objective']['metric']}, "
              f"trials {s['trial_counts']}, warm-start trials {s['warm_start_trials']}")
        print(f"best training job: {s['best_training_job']} ({s['best_objective_value']})"
              + (f"; completion: {s['completion_reason']}" if s["completion_reason"] else ""))
        print(analytics.to_table(rows, config))
        return 0
    if args.action == "list":
        from dogbreed.train.records import list_records

        recs = list_records(kind="tuning")
        if args.json:
            _print_json([r.to_dict() for r in recs])
            return 0
        for r in recs:
            print(f"{r.name:28s} {r.status:11s} best {r.extra.get('best_training_job')} "
                  f"({r.extra.get('best_objective_value')}) trials {r.extra.get('trial_counts', {})}")
        return 0
    if args.action == "resume":
        if not args.name:
            raise UserError("usage: dogbreed tune resume NAME")
        record = resume_tuning_job(args.name)
    else:
        if args.name:
            raise UserError(f"unknown tune action {args.name!r} (use resume, describe or list)")
        if not (args.data and args.config and args.job_name):
            raise UserError("dogbreed tune needs --data, --config and --job-name")
        from dogbreed.tune.config import parse_tuning_config

        config = parse_tuning_config(load_yaml(args.config))
        record = start_tuning_job(TuningJobSpec(args.job_name, args.data, config, executor=args.executor,
                                                ray_address=args.ray_address, storage=args.storage,
                                                on_bad_file=args.on_bad_file, gpus_per_trial=args.gpus_per_trial))
    if args.json:
        _print_json(analytics.summary(record.name))
    else:
        print(f"tuning job {record.name}: {record.status}; best training job {record.extra.get('best_training_job')}"
              f" ({record.extra.get('best_objective_value')}); trials {record.extra.get('trial_counts')}")
        print(f"  table: dogbreed tune describe {record.name}")
    return 0 if record.status == "Completed" else EXIT_JOB_FAILED


def _require_tuning(name: str) -> None:
    from dogbreed.train.records import load

    if load(name).kind != "tuning":
        raise UserError(f"{name!r} is not a tuning job")


def cmd_debug(args: argparse.Namespace) -> int:
    from dogbreed.debug.hooks import DebugData
    from dogbreed.debug.monitor import DebuggerConfig, save_results
    from dogbreed.debug.rules import evaluate_all
    from dogbreed.train.records import job_dir, load

    load(args.name)
    data = DebugData.load(job_dir(args.name) / "debug")
    results = evaluate_all(DebuggerConfig(rules=tuple(args.rule or ())).rule_configs(), data)
    save_results(job_dir(args.name) / "debug", results)
    if args.json:
        _print_json([r.to_report() for r in results])
        return 0
    for r in sorted(results, key=lambda r: (not r.triggered, r.rule)):
        print(f"{r.rule:26s} {r.status:14s} {r.details}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from dogbreed.debug.report import write_report

    out = write_report(args.name, Path(args.output) if args.output else None)
    if args.json:
        _print_json({"report": str(out)})
    else:
        print(f"report written to {out}")
    return 0


def cmd_backbones(args: argparse.Namespace) -> int:
    from dogbreed.models import list_backbones

    specs = list_backbones()
    if args.json:
        _print_json([{"name": s.name, "timm_name": s.timm_name, "preprocessing": s.preprocessing.to_dict(),
                      "description": s.description} for s in specs])
        return 0
    for s in specs:
        p = s.preprocessing
        print(f"{s.name:22s} {p.input_size}px crop {p.crop_pct} {p.interpolation:8s} {s.description}")
    print("any other timm model name works too (weights from the hub when online, or weights_file=PATH)")
    return 0


# -- parser --------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dogbreed", description="Train, tune, debug and serve dog-breed classifiers.")
    sub = p.add_subparsers(dest="command", required=True)

    def add(name: str, help: str, parent: Any = sub) -> argparse.ArgumentParser:
        sp = parent.add_parser(name, help=help, description=help)
        sp.add_argument("--json", action="store_true", help="machine-readable output")
        return sp

    t = add("train", "run a training job (hyperparameters as --name VALUE, SageMaker names)")
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
    t.set_defaults(func=cmd_train, takes_hps=True)

    jobs = sub.add_parser("jobs", help="training job records").add_subparsers(dest="jobs_command", required=True)
    jl = add("list", "list jobs, newest first", jobs)
    jl.add_argument("--all", action="store_true", help="tuning jobs too")
    jl.set_defaults(func=cmd_jobs_list)
    jd = add("describe", "show one job", jobs)
    jd.add_argument("name")
    jd.set_defaults(func=cmd_jobs_describe)

    lg = add("logs", "print a job's log")
    lg.add_argument("name")
    lg.add_argument("--follow", "-f", action="store_true", help="keep printing until the job ends")
    lg.set_defaults(func=cmd_logs)

    ev = add("evaluate", "evaluate a trained job's model on a dataset split")
    ev.add_argument("--job", required=True)
    ev.add_argument("--data", required=True)
    ev.add_argument("--split", default="test", choices=("train", "valid", "test"))
    ev.add_argument("--top-k", type=int, default=5)
    ev.set_defaults(func=cmd_evaluate)

    data = sub.add_parser("data", help="dataset tools").add_subparsers(dest="data_command", required=True)
    dc = add("check", "report problems in a dataset folder", data)
    dc.add_argument("data")
    dc.add_argument("--workers", type=int, default=2)
    dc.set_defaults(func=cmd_data_check)
    du = add("upload", "copy a local dataset to a location (path or fsspec URI such as s3://bucket/prefix)", data)
    du.add_argument("src")
    du.add_argument("dest")
    du.set_defaults(func=cmd_data_upload)

    tu = add("tune", "run a hyperparameter tuning job; `tune resume NAME`, `tune describe NAME`, `tune list`")
    tu.add_argument("action", nargs="?", choices=("run", "resume", "describe", "list"), default="run")
    tu.add_argument("name", nargs="?")
    tu.add_argument("--data")
    tu.add_argument("--config", help="tuning YAML: static_hyperparameters, hyperparameter_ranges, objective, ...")
    tu.add_argument("--job-name")
    tu.add_argument("--executor", default="local", choices=("local", "ray"))
    tu.add_argument("--ray-address", help="address of a running Ray cluster (default: start a local one)")
    tu.add_argument("--storage", help="Optuna storage URL shared by all nodes (default: SQLite in the home)")
    tu.add_argument("--gpus-per-trial", type=float, default=0.0)
    tu.add_argument("--on-bad-file", default="error", choices=("error", "skip"))
    tu.add_argument("--csv", action="store_true", help="with describe: the table as CSV")
    tu.set_defaults(func=cmd_tune)

    models = sub.add_parser("models", help="the model registry (MLflow)").add_subparsers(dest="models_command",
                                                                                        required=True)
    mr = add("register", "register a finished job's model as a new version", models)
    mr.add_argument("job")
    mr.add_argument("--name", help="registered model name (default: the job name)")
    mr.add_argument("--alias", action="append", help="alias to point at the new version (repeatable)")
    mr.set_defaults(func=cmd_models_register)
    ml = add("list", "list registered models", models)
    ml.set_defaults(func=cmd_models_list)
    md = add("describe", "show a registered model's versions", models)
    md.add_argument("name")
    md.set_defaults(func=cmd_models_describe)

    dp = add("deploy", "serve a model on a real-time HTTP endpoint (runs until stopped)")
    dp.add_argument("--model", required=True, help="NAME, NAME:VERSION, NAME@ALIAS or job:JOBNAME")
    dp.add_argument("--endpoint-name", required=True)
    dp.add_argument("--host", default="127.0.0.1")
    dp.add_argument("--port", type=int, default=8080, help="0 picks a free port")
    dp.add_argument("--workers", type=int, default=1)
    dp.add_argument("--backend", default="auto", help="auto (ONNX Runtime on CPU, PyTorch on GPU), onnx or torch")
    dp.add_argument("--device")
    dp.add_argument("--api-key", help="require this key in X-Api-Key (or Authorization: Bearer)")
    dp.add_argument("--max-batch-size", type=int, default=16)
    dp.add_argument("--max-wait-ms", type=float, default=5.0)
    dp.set_defaults(func=cmd_deploy)

    eps = sub.add_parser("endpoints", help="running endpoints").add_subparsers(dest="endpoints_command",
                                                                               required=True)
    el = add("list", "list endpoints", eps)
    el.set_defaults(func=cmd_endpoints_list)
    ed = add("describe", "show one endpoint", eps)
    ed.add_argument("name")
    ed.set_defaults(func=cmd_endpoints_describe)
    ex = add("delete", "stop an endpoint and remove it", eps)
    ex.add_argument("name")
    ex.set_defaults(func=cmd_endpoints_delete)

    pr = add("predict", "predict breeds of image files with an endpoint or a model")
    pr.add_argument("images", nargs="+")
    pr.add_argument("--endpoint", help="endpoint URL, e.g. http://127.0.0.1:8080")
    pr.add_argument("--model", help="NAME, NAME:VERSION, NAME@ALIAS or job:JOBNAME")
    pr.add_argument("--top-k", type=int, default=5)
    pr.add_argument("--api-key")
    pr.set_defaults(func=cmd_predict)

    bt = add("batch-transform", "predict every image under a folder/URI into JSON Lines (resumable)")
    bt.add_argument("--model", required=True)
    bt.add_argument("--input", required=True)
    bt.add_argument("--output", required=True)
    bt.add_argument("--top-k", type=int)
    bt.set_defaults(func=cmd_batch_transform)

    db = add("debug", "rerun the debugger's rules on a job's recorded data")
    db.add_argument("name")
    db.add_argument("--rule", action="append", metavar="SPEC", help="Name[:param=value,...] (repeatable)")
    db.set_defaults(func=cmd_debug)
    rp = add("report", "write a job's HTML report (curves, gradients, system usage, rules)")
    rp.add_argument("name")
    rp.add_argument("--output", help="HTML file (default: in the job folder)")
    rp.set_defaults(func=cmd_report)

    bb = add("backbones", "list registered backbones")
    bb.set_defaults(func=cmd_backbones)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    logging.getLogger("dogbreed").setLevel(logging.INFO)
    for noisy in ("alembic", "mlflow", "urllib3", "timm"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    parser = build_parser()
    try:
        rest, hp_flags = _hyperparameter_flags(argv)
        args, unknown = parser.parse_known_args(rest)
        if unknown:
            bad = next((u for u in unknown if u.startswith("--")), unknown[0])
            if getattr(args, "takes_hps", False) and bad.startswith("--"):
                raise UserError(f"unknown hyperparameter or option {bad!r} (see `dogbreed {args.command} --help`)")
            raise UserError(f"unrecognised argument {bad!r}")
        if hp_flags and not getattr(args, "takes_hps", False):
            raise UserError(f"--{next(iter(hp_flags))} is a hyperparameter; `dogbreed {args.command}` takes none")
        func: Callable[..., int] = args.func
        return func(args, hp_flags) if getattr(args, "takes_hps", False) else func(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

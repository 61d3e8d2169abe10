"""The model registry (`models ...`), endpoints (`deploy`, `endpoints ...`), `predict` and `batch-transform`."""

from __future__ import annotations

import argparse
from typing import Any

from dogbreed.cli.output import fmt, fmt_time, print_json, table
from dogbreed.config import UserError

EXIT_JOB_FAILED = 1


def _positive(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return n


def add(sub: Any) -> None:
    models = sub.add_parser("models", help="the model registry (MLflow)").add_subparsers(
        dest="models_command", required=True, metavar="ACTION")
    mr = models.add_parser("register", help="register a finished job's model as a new version")
    mr.add_argument("job")
    mr.add_argument("--name", help="registered model name (default: the job name)")
    mr.add_argument("--alias", action="append", help="alias to point at the new version (repeatable)")
    mr.add_argument("--json", action="store_true")
    mr.set_defaults(func=cmd_models_register)
    ml = models.add_parser("list", help="list registered models")
    ml.add_argument("--json", action="store_true")
    ml.set_defaults(func=cmd_models_list)
    md = models.add_parser("describe", help="show a registered model's versions")
    md.add_argument("name")
    md.add_argument("--json", action="store_true")
    md.set_defaults(func=cmd_models_describe)
    mx = models.add_parser("delete", help="delete a registered model, or one version of it")
    mx.add_argument("name")
    mx.add_argument("--version", type=_positive)
    mx.set_defaults(func=cmd_models_delete)
    ma = models.add_parser("alias", help="point an alias at a version (or remove it with --delete)")
    ma.add_argument("name")
    ma.add_argument("alias")
    ma.add_argument("version", nargs="?", type=_positive)
    ma.add_argument("--delete", action="store_true")
    ma.set_defaults(func=cmd_models_alias)

    dp = sub.add_parser("deploy", help="serve a model on a real-time HTTP endpoint (runs until stopped)")
    dp.add_argument("--model", required=True, help="NAME, NAME:VERSION, NAME@ALIAS or job:JOBNAME")
    dp.add_argument("--endpoint-name", required=True)
    dp.add_argument("--host", default="127.0.0.1")
    dp.add_argument("--port", type=int, default=8080, help="0 picks a free port")
    dp.add_argument("--workers", type=int, default=1)
    dp.add_argument("--backend", default="auto", choices=("auto", "onnx", "torch"),
                    help="auto: ONNX Runtime on CPU, PyTorch on GPU")
    dp.add_argument("--device")
    dp.add_argument("--api-key-file", metavar="PATH", help="require the key in this file (or DOGBREED_API_KEY) "
                                                           "as X-Api-Key or Authorization: Bearer")
    dp.add_argument("--api-key", help="the key itself (visible to other users in `ps`: prefer --api-key-file)")
    dp.add_argument("--docs", action="store_true", help="serve /docs, /redoc and /openapi.json")
    dp.add_argument("--max-batch-size", type=int, default=16)
    dp.add_argument("--max-wait-ms", type=float, default=5.0)
    dp.add_argument("--body-timeout", type=float, default=30.0, metavar="SECONDS",
                    help="a request body must arrive within this, or it is answered 408 (default 30)")
    dp.set_defaults(func=cmd_deploy)

    eps = sub.add_parser("endpoints", help="endpoints").add_subparsers(
        dest="endpoints_command", required=True, metavar="ACTION")
    el = eps.add_parser("list", help="list endpoints")
    el.add_argument("--json", action="store_true")
    el.set_defaults(func=cmd_endpoints_list)
    ed = eps.add_parser("describe", help="show one endpoint")
    ed.add_argument("name")
    ed.add_argument("--json", action="store_true")
    ed.set_defaults(func=cmd_endpoints_describe)
    ex = eps.add_parser("delete", help="stop an endpoint (every worker) and remove it")
    ex.add_argument("name")
    ex.add_argument("--json", action="store_true")
    ex.set_defaults(func=cmd_endpoints_delete)

    pr = sub.add_parser("predict", help="predict breeds of image files with an endpoint or a model")
    pr.add_argument("images", nargs="+")
    pr.add_argument("--endpoint", help="endpoint URL (http://127.0.0.1:8080) or name")
    pr.add_argument("--model", help="NAME, NAME:VERSION, NAME@ALIAS or job:JOBNAME")
    pr.add_argument("--top-k", type=_positive, default=5)
    pr.add_argument("--api-key")
    pr.add_argument("--json", action="store_true")
    pr.set_defaults(func=cmd_predict)

    bt = sub.add_parser("batch-transform", help="predict every image under a folder/URI into JSON Lines "
                                                "(resumable)")
    bt.add_argument("--model", required=True)
    bt.add_argument("--input", required=True)
    bt.add_argument("--output", required=True)
    bt.add_argument("--top-k", type=_positive)
    bt.add_argument("--json", action="store_true")
    bt.set_defaults(func=cmd_batch_transform)


def cmd_models_register(args: argparse.Namespace) -> int:
    from dogbreed.jobs.model_registry import register_job

    info = register_job(args.job, args.name, tuple(args.alias or ()))
    if args.json:
        print_json(info.to_dict())
    else:
        print(f"registered {info.name}:{info.version} from job {info.job}" +
              (f" (aliases: {', '.join(info.aliases)})" if info.aliases else ""))
    return 0


def cmd_models_list(args: argparse.Namespace) -> int:
    from dogbreed.jobs.model_registry import list_models

    models = list_models()
    if args.json:
        print_json(models)
        return 0
    if not models:
        print("no registered models (run `dogbreed models register JOB`)")
        return 0
    print(table(["NAME", "VERSIONS", "LATEST", "JOB", "VAL ACC", "ALIASES"],
                [[m["name"], m["versions"], m["latest_version"], m["latest_job"],
                  float(m["validation_accuracy"]) if m["validation_accuracy"] else None,
                  ", ".join(f"@{a}={v}" for a, v in m["aliases"].items())] for m in models], right=(1, 2, 4)))
    return 0


def cmd_models_describe(args: argparse.Namespace) -> int:
    from dogbreed.jobs.model_registry import describe_model

    d = describe_model(args.name)
    if args.json:
        print_json(d)
        return 0
    aliases = ", ".join(f"@{a}={v}" for a, v in d["aliases"].items()) or "-"
    print(f"model {d['name']}: {len(d['versions'])} version(s); aliases {aliases}")
    for v in d["versions"]:
        acc = v["tags"].get("metric.validation:accuracy")
        print(f"  v{v['version']}: job {v['job']}, backbone {v['tags'].get('dogbreed.backbone')}, "
              f"{v['tags'].get('dogbreed.num_classes')} classes, validation accuracy "
              f"{fmt(float(acc)) if acc else '-'}, created {fmt_time(v['created'])}")
    return 0


def cmd_models_delete(args: argparse.Namespace) -> int:
    from dogbreed.jobs.model_registry import delete_model

    delete_model(args.name, str(args.version) if args.version else None)
    print(f"deleted model {args.name}" + (f" version {args.version}" if args.version else ""))
    return 0


def cmd_models_alias(args: argparse.Namespace) -> int:
    from dogbreed.jobs.model_registry import delete_alias, set_alias

    if args.delete:
        delete_alias(args.name, args.alias)
        print(f"removed alias @{args.alias} of {args.name}")
        return 0
    if args.version is None:
        raise UserError("give the VERSION the alias should point at (or --delete)")
    info = set_alias(args.name, args.alias, str(args.version))
    print(f"{args.name}@{args.alias} -> version {info.version}")
    return 0


def cmd_deploy(args: argparse.Namespace) -> int:
    from dogbreed.serve.deploy import deploy, read_api_key

    if args.api_key and args.api_key_file:
        raise UserError("give --api-key or --api-key-file, not both")
    deploy(args.model, args.endpoint_name, host=args.host, port=args.port, workers=args.workers,
           backend=args.backend, device=args.device, api_key=read_api_key(args.api_key, args.api_key_file),
           max_batch_size=args.max_batch_size, max_wait_ms=args.max_wait_ms, docs=args.docs,
           body_timeout_s=args.body_timeout)
    return 0


def cmd_endpoints_list(args: argparse.Namespace) -> int:
    from dogbreed.jobs.endpoint_records import list_endpoints

    eps = list_endpoints()
    if args.json:
        print_json([e.to_dict() for e in eps])
        return 0
    if not eps:
        print("no endpoints (run `dogbreed deploy`)")
        return 0
    print(table(["NAME", "STATUS", "URL", "MODEL", "BACKEND", "WORKERS"],
                [[e.name, e.live_status, e.url, e.model, e.backend, e.workers] for e in eps], right=(5,)))
    return 0


def cmd_endpoints_describe(args: argparse.Namespace) -> int:
    from dogbreed.jobs.endpoint_records import load

    e = load(args.name)
    d = e.to_dict()
    if args.json:
        print_json(d)
        return 0
    for k, v in d.items():
        if k == "owner":
            v = f"pid {v['pid']}" if v else None
        print(f"{k:18s} {fmt_time(v) if k == 'created' else fmt(v)}")
    return 0


def cmd_endpoints_delete(args: argparse.Namespace) -> int:
    from dogbreed.jobs.endpoint_records import delete

    e = delete(args.name)
    if args.json:
        print_json({"deleted": e.name})
    else:
        print(f"endpoint {e.name} deleted")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from dogbreed.serve.client import predict_files

    if (args.endpoint is None) == (args.model is None):
        raise UserError("give exactly one of --endpoint URL or --model REF")
    results = predict_files(args.images, endpoint=args.endpoint, model_ref=args.model, top_k=args.top_k,
                            api_key=args.api_key)
    if args.json:
        print_json(results)
    else:
        for r in results:
            if "error" in r:
                print(f"{r['source']}: error: {r['error']}")
                continue
            if r.get("dog") is False:
                print(f"{r['source']}: no dog found (dog score {r['dog_score']:.3f}, below {r['dog_threshold']:.3f})")
                continue
            best = ", ".join(f"{p['label']} {p['probability']:.1%}" for p in r["top_k"])
            print(f"{r['source']}: {best}" + (" (uncertain)" if r.get("uncertain") else ""))
    return 0 if all("error" not in r for r in results) else EXIT_JOB_FAILED


def cmd_batch_transform(args: argparse.Namespace) -> int:
    from dogbreed.jobs.model_registry import model_dir_for
    from dogbreed.progress import progress
    from dogbreed.serve.batch_transform import batch_transform

    model_dir = model_dir_for(args.model)
    with progress(None, "batch transform") as tick:
        summary = batch_transform(model_dir, args.input, args.output, top_k=args.top_k, on_progress=tick)
    if args.json:
        print_json(summary)
    else:
        print(f"{summary['processed']} image(s) predicted, {summary['skipped_done']} already done, "
              f"{summary['errors']} unreadable; output {summary['output']}")
    return 0

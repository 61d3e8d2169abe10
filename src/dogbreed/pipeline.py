"""`dogbreed pipeline run pipeline.yaml`: the whole flow in one command.

Steps: data check, optional upload, a training job or a tuning job, the best job's report, registration with an
alias, an endpoint, a smoke test on held-out photos, and an HTML summary linking every artifact. Each step records
what it was given (a fingerprint of its settings and of what the steps before it produced) and what it made; a
rerun skips every step whose output still exists for the same inputs, so rerunning after a crash continues where it
stopped.

    name: dogs                      # names everything: jobs dogs-train / dogs-tune, model dogs, endpoint dogs
    data: ../shared/datasets/stanford-dogs-120
    upload: s3://my-bucket/dogs     # optional: copy the data there first and train from the copy
    training: {hyperparameters: {epochs: 10}}      # or
    tuning: {max_jobs: 8, hyperparameter_ranges: {...}}   # the YAML of `dogbreed tune run`
    register: {model: dogs, alias: prod}
    deploy: {endpoint: dogs, workers: 1}           # optional
    smoke_test: {split: valid, photos: 20, min_accuracy: 0.5}
"""

from __future__ import annotations

import hashlib
import html
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from dogbreed.config import UserError, home, load_yaml
from dogbreed.jobs import names, records

log = logging.getLogger("dogbreed")
KNOWN_KEYS = {"name", "data", "upload", "on_bad_file", "training", "tuning", "register", "deploy", "smoke_test"}


@dataclass
class PipelineSpec:
    name: str
    data: str
    upload: str | None = None
    on_bad_file: str = "error"
    training: dict[str, Any] | None = None
    tuning: dict[str, Any] | None = None
    register: dict[str, Any] = field(default_factory=dict)
    deploy: dict[str, Any] | None = None
    smoke_test: dict[str, Any] | None = None

    @classmethod
    def from_yaml(cls, path: str) -> "PipelineSpec":
        doc = load_yaml(path)
        unknown = sorted(set(doc) - KNOWN_KEYS)
        if unknown:
            raise UserError(f"unknown pipeline key {unknown[0]!r} (known: {', '.join(sorted(KNOWN_KEYS))})")
        for key in ("name", "data"):
            if not doc.get(key):
                raise UserError(f"pipeline file {path} needs {key!r}")
        if bool(doc.get("training") is not None) == bool(doc.get("tuning") is not None):
            raise UserError("a pipeline has exactly one of 'training' (a single job) or 'tuning'")
        spec = cls(name=str(doc["name"]), data=str(doc["data"]), upload=doc.get("upload"),
                   on_bad_file=doc.get("on_bad_file", "error"), training=doc.get("training"),
                   tuning=doc.get("tuning"), register=dict(doc.get("register") or {}), deploy=doc.get("deploy"),
                   smoke_test=doc.get("smoke_test"))
        spec.validate()
        return spec

    def validate(self) -> None:
        from dogbreed.config import Hyperparameters
        from dogbreed.tune.config import parse_tuning_config

        names.validate(self.name, "pipeline", names.MAX_TUNING_LENGTH - 5)
        if self.training is not None:
            unknown = sorted(set(self.training) - {"hyperparameters"})
            if unknown:
                raise UserError(f"unknown key {unknown[0]!r} under training (use hyperparameters)")
            Hyperparameters.from_mapping(self.training.get("hyperparameters") or {})
        if self.tuning is not None:
            parse_tuning_config(self.tuning)
        names.validate(self.model_name, "model")
        if self.deploy is not None:
            names.validate(self.endpoint_name, "endpoint")
        if self.smoke_test is not None and self.deploy is None:
            raise UserError("smoke_test needs deploy: it asks the endpoint about held-out photos")

    @property
    def model_name(self) -> str:
        return str(self.register.get("model") or self.name)

    @property
    def alias(self) -> str:
        return str(self.register.get("alias") or "pipeline")

    @property
    def endpoint_name(self) -> str:
        return str((self.deploy or {}).get("endpoint") or self.name)


def _fingerprint(*parts: Any) -> str:
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


class _State:
    """What each step was given and produced, in `$DOGBREED_HOME/pipelines/NAME/state.json` (written atomically)."""

    def __init__(self, name: str):
        self.dir = home() / "pipelines" / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / "state.json"
        self.steps: dict[str, dict[str, Any]] = json.loads(self.path.read_text()) if self.path.exists() else {}

    def done(self, step: str, fingerprint: str, still_there: Callable[[dict[str, Any]], bool]) -> dict | None:
        entry = self.steps.get(step)
        if entry and entry.get("fingerprint") == fingerprint and still_there(entry["output"]):
            return entry["output"]
        return None

    def record(self, step: str, fingerprint: str, output: dict[str, Any]) -> dict[str, Any]:
        self.steps[step] = {"fingerprint": fingerprint, "output": output, "time": time.time()}
        tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.steps, indent=1, default=str))
        os.replace(tmp, self.path)
        return output


def run_pipeline(spec: PipelineSpec, on_step: Callable[[str, str], None] | None = None) -> dict[str, Any]:
    """Runs every step not already done for the same inputs; returns each step's output (and the summary)."""
    state = _State(spec.name)
    out: dict[str, Any] = {}

    def step(name: str, inputs: Any, run: Callable[[], dict[str, Any]],
             still_there: Callable[[dict[str, Any]], bool] = lambda o: True) -> dict[str, Any]:
        fp = _fingerprint(name, inputs)
        previous = state.done(name, fp, still_there)
        if previous is not None:
            (on_step or _say)(name, "already done, skipped")
            out[name] = previous
            return previous
        (on_step or _say)(name, "running")
        out[name] = state.record(name, fp, run())
        return out[name]

    check = step("check", [spec.data, spec.on_bad_file], lambda: _check(spec, state.dir),
                 lambda o: Path(o["report"]).exists())
    data = spec.data
    if spec.upload:
        data = step("upload", [check, spec.upload], lambda: _upload(spec), lambda o: True)["data"]
    job = step("train" if spec.training is not None else "tune", [data, spec.training, spec.tuning],
               lambda: _train_or_tune(spec, data), _job_completed)
    best = job["best_training_job"]
    step("report", [best], lambda: _report(best), lambda o: Path(o["report"]).exists())
    version = step("register", [best, spec.model_name, spec.alias], lambda: _register(spec, best),
                   lambda o: _version_exists(o))
    if spec.deploy is not None:
        ref = f"{spec.model_name}:{version['version']}"
        step("deploy", [ref, spec.deploy], lambda: _deploy(spec, ref), _endpoint_in_service)
    if spec.smoke_test is not None:
        step("smoke_test", [out.get("deploy"), spec.smoke_test], lambda: _smoke_test(spec, data),
             lambda o: o.get("passed", False))
    summary = state.dir / "summary.html"
    summary.write_text(_summary_html(spec, out))
    out["summary"] = str(summary)
    return out


def _say(step: str, what: str) -> None:
    log.info("pipeline step %s: %s", step, what)


def _check(spec: PipelineSpec, folder: Path) -> dict[str, Any]:
    from dogbreed.data.check import check_dataset

    report = check_dataset(spec.data, show_progress=False)
    path = folder / "data_check.json"
    path.write_text(json.dumps(report.to_dict(), indent=1))
    if not report.ok and (report.structural_problems or spec.on_bad_file != "skip"):
        raise UserError(f"data check found {len(report.problems)} problem(s), first: {report.problems[0]} "
                        f"(details: {path}; set on_bad_file: skip to train without the bad files)")
    return {"report": str(path), "problems": len(report.problems)}


def _upload(spec: PipelineSpec) -> dict[str, Any]:
    from dogbreed.data.layout import upload

    return {"data": spec.upload, "files": upload(spec.data, spec.upload)}


def _train_or_tune(spec: PipelineSpec, data: str) -> dict[str, Any]:
    from dogbreed.jobs.control import delete_job

    if spec.training is not None:
        from dogbreed.config import Hyperparameters
        from dogbreed.train.job import TrainingJobSpec, run_training_job

        name = f"{spec.name}-train-{_fingerprint(data, spec.training)[:6]}"
        if records.exists(name) and records.load(name).status != records.COMPLETED:
            delete_job(name)  # cut off before: start it again
        if not records.exists(name):
            hp = Hyperparameters.from_mapping(spec.training.get("hyperparameters") or {})
            run_training_job(TrainingJobSpec(name, data, hp, on_bad_file=spec.on_bad_file))
        record = records.load(name)
        if record.status != records.COMPLETED:
            raise UserError(f"training job {name} ended {record.status}: {record.failure_reason}")
        return {"job": name, "best_training_job": name}
    from dogbreed.tune.config import parse_tuning_config
    from dogbreed.tune.resume import resume_tuning_job
    from dogbreed.tune.start import TuningJobSpec, start_tuning_job

    name = f"{spec.name}-{_fingerprint(data, spec.tuning)[:4]}"
    if records.exists(name) and records.load(name).status != records.COMPLETED:
        record = resume_tuning_job(name)  # a crash or stop before: continue, losing no finished trial
    elif not records.exists(name):
        record = start_tuning_job(TuningJobSpec(name, data, parse_tuning_config(spec.tuning),
                                                on_bad_file=spec.on_bad_file))
    else:
        record = records.load(name)
    if record.status != records.COMPLETED or not record.extra.get("best_training_job"):
        raise UserError(f"tuning job {name} ended {record.status}: {record.failure_reason}")
    return {"job": name, "best_training_job": record.extra["best_training_job"]}


def _job_completed(output: dict[str, Any]) -> bool:
    return records.exists(output["job"]) and records.load(output["job"]).status == records.COMPLETED


def _report(job: str) -> dict[str, Any]:
    from dogbreed.debug.report import write_report

    return {"report": str(write_report(job))}


def _register(spec: PipelineSpec, job: str) -> dict[str, Any]:
    from dogbreed.jobs.model_registry import register_job

    info = register_job(job, spec.model_name, (spec.alias,))
    return {"model": info.name, "version": info.version, "job": job}


def _version_exists(output: dict[str, Any]) -> bool:
    from dogbreed.jobs.model_registry import resolve

    try:
        return resolve(f"{output['model']}:{output['version']}").job == output["job"]
    except UserError:
        return False


def _deploy(spec: PipelineSpec, ref: str) -> dict[str, Any]:
    from dogbreed.jobs import endpoint_records
    from dogbreed.serve.launch import start_endpoint

    if endpoint_records.exists(spec.endpoint_name):  # another version served there: replace it
        endpoint_records.delete(spec.endpoint_name)
    record = start_endpoint(ref, spec.endpoint_name, workers=int(spec.deploy.get("workers", 1)))
    return {"endpoint": record.name, "url": record.url, "model": ref}


def _endpoint_in_service(output: dict[str, Any]) -> bool:
    from dogbreed.jobs import endpoint_records

    if not endpoint_records.exists(output["endpoint"]):
        return False
    record = endpoint_records.load(output["endpoint"])
    return record.live_status == endpoint_records.IN_SERVICE and record.model == output["model"]


def _smoke_test(spec: PipelineSpec, data: str) -> dict[str, Any]:
    """The endpoint's answers on a few held-out photos of every class: a model that serves garbage fails here."""
    import httpx

    from dogbreed.data.layout import discover_dataset
    from dogbreed.jobs import endpoint_records

    cfg = spec.smoke_test or {}
    split_name = cfg.get("split", "valid")
    layout = discover_dataset(data, required=())
    if split_name not in layout.splits:
        raise UserError(f"smoke_test: the data has no {split_name}/ split")
    per_class = max(1, int(cfg.get("photos", 20)) // max(len(layout.classes), 1))
    split = layout.splits[split_name]
    chosen: dict[str, list[Path]] = {}
    for f, label in zip(split.files, split.labels):
        if len(chosen.setdefault(label, [])) < per_class:
            chosen[label].append(f)
    url = endpoint_records.load(spec.endpoint_name).url
    right = total = 0
    for label, files in chosen.items():
        for f in files:
            r = httpx.post(f"{url}/invocations", params={"top_k": 1}, content=f.read_bytes(),
                           headers={"Content-Type": "application/x-image"}, timeout=60)
            if r.status_code != 200:
                raise UserError(f"smoke test: the endpoint answered {r.status_code} for {f}: {r.text[:200]}")
            total += 1
            right += r.json()["predictions"][0]["class"] == label
    accuracy = right / max(total, 1)
    minimum = float(cfg.get("min_accuracy", 0.5))
    result = {"photos": total, "accuracy": accuracy, "min_accuracy": minimum, "passed": accuracy >= minimum}
    if not result["passed"]:
        raise UserError(f"smoke test failed: {accuracy:.1%} of {total} held-out photos right (needs {minimum:.0%})")
    return result


def _summary_html(spec: PipelineSpec, out: dict[str, Any]) -> str:
    def link(path: str | None, text: str) -> str:
        if not path:
            return "-"
        return f'<a href="{html.escape(Path(path).as_uri())}">{html.escape(text)}</a>'

    rows = []
    check = out.get("check", {})
    rows.append(("data check", f"{check.get('problems', 0)} problem(s); " + link(check.get("report"), "report")))
    if "upload" in out:
        rows.append(("upload", html.escape(str(out["upload"]["data"]))))
    job = out.get("train") or out.get("tune") or {}
    if job:
        jdir = records.job_dir(job["job"])
        extra = ""
        if "tune" in out:
            extra = (" · " + link(str(jdir / "analytics.csv"), "analytics table") + " · "
                     + link(str(jdir / "objective_over_time.png"), "objective plot"))
        best_dir = records.job_dir(job["best_training_job"])
        metrics = records.load(job["best_training_job"]).metrics
        acc = metrics.get("validation:accuracy")
        rows.append(("job", link(str(jdir), job["job"]) + extra))
        rows.append(("best training job", link(str(best_dir), job["best_training_job"])
                     + (f" · validation accuracy {acc:.1%}" if acc is not None else "")
                     + " · " + link(str(best_dir / "train.log"), "log") + " · "
                     + link(str(best_dir / "evaluation"), "evaluation")))
    if "report" in out:
        rows.append(("debugger and profiler report", link(out["report"]["report"], "report.html")))
    if "register" in out:
        r = out["register"]
        rows.append(("registered model", html.escape(f"{r['model']}:{r['version']} (@{spec.alias})")))
    if "deploy" in out:
        d = out["deploy"]
        rows.append(("endpoint", f'<a href="{html.escape(d["url"])}/">{html.escape(d["endpoint"])}</a> '
                                 f'({html.escape(d["url"])})'))
    if "smoke_test" in out:
        s = out["smoke_test"]
        rows.append(("smoke test", f"{s['accuracy']:.1%} of {s['photos']} held-out photos right "
                                   f"(needs {s['min_accuracy']:.0%}): {'passed' if s['passed'] else 'FAILED'}"))
    body = "".join(f"<tr><th>{html.escape(k)}</th><td>{v}</td></tr>" for k, v in rows)
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>pipeline {html.escape(spec.name)}'
            '</title><link rel="icon" href="data:,"><style>body{font-family:system-ui,sans-serif;max-width:900px;'
            'margin:2rem auto;padding:0 1rem}th{text-align:left;padding:.3rem 1rem .3rem 0;vertical-align:top}'
            'td{padding:.3rem 0}</style></head>'
            f"<body><h1>Pipeline {html.escape(spec.name)}</h1><table>{body}</table>"
            f'<p style="color:#666">written {time.strftime("%Y-%m-%d %H:%M:%S")} by dogbreed</p></body></html>')

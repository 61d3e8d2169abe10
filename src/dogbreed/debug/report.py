"""`dogbreed report NAME`: one self-contained HTML file per job (plots inlined as PNG), plus one JSON per rule.

A training job's report shows its curves, gradients, system usage, step time split and rule verdicts; a tuning
job's report compares its trials.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from dogbreed.config import UserError
from dogbreed.debug.hooks import DebugData
from dogbreed.debug.monitor import load_results
from dogbreed.jobs import records

log = logging.getLogger("dogbreed")

CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2rem auto;padding:0 1rem;color:#222}
h1{font-size:1.5rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.9rem}td,th{border:1px solid #ddd;padding:.3rem .5rem;text-align:left}
.IssuesFound{background:#fde2e1}.NoIssuesFound{background:#e3f5e1}.Error{background:#fff3cd}.NotJudged{background:#eceff1;color:#555}
img{max-width:100%}.muted{color:#666}"""


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _img(fig: Any, alt: str) -> str:
    plt = _plt()
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def _curves(history: list[dict[str, Any]]) -> str:
    plt = _plt()
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 3.6))
    epochs = [h["epoch"] for h in history]
    for key, ax in (("loss", a), ("accuracy", b)):
        for split in ("train", "validation"):
            ys = [h.get(f"{split}:{key}") for h in history]
            if any(y is not None for y in ys):
                ax.plot(epochs, ys, marker=".", label=split)
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
        ax.legend()
    return _img(fig, "loss and accuracy curves")


def _gradients(data: DebugData, top: int = 12) -> str:
    series: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for r in data.tensors:
        if r["stat"] == "grad_norm":
            series[r["name"]].append((r["step"], r["value"]))
    if not series:
        return '<p class="muted">no gradients recorded</p>'
    plt = _plt()
    fig, ax = plt.subplots(figsize=(11, 4))
    names = sorted(series, key=lambda n: -max(v for _, v in series[n]))[:top]
    for n in names:
        pts = series[n]
        ax.plot([p[0] for p in pts], [max(p[1], 1e-12) for p in pts], label=n)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("gradient norm")
    ax.legend(fontsize=7, ncol=2)
    return _img(fig, "gradient norms by layer")


def _system(data: DebugData) -> str:
    if not data.system:
        return '<p class="muted">no system samples</p>'
    plt = _plt()
    t0 = data.system[0]["time"]
    ts = [(s["time"] - t0) for s in data.system]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 3.4))
    cores = sorted(k for k in data.system[0] if k.startswith("cpu") and k[3:-8].isdigit())
    for k in cores:
        a.plot(ts, [s.get(k, 0) for s in data.system], label=k.replace("_percent", ""), lw=0.8)
    a.plot(ts, [s["cpu_percent"] for s in data.system], label="all", color="black")
    if any("gpu_percent" in s for s in data.system):
        a.plot(ts, [s.get("gpu_percent", 0) for s in data.system], label="gpu")
    a.set_ylabel("% busy")
    a.set_xlabel("seconds")
    a.legend(fontsize=7)
    b.plot(ts, [s["process_rss_mb"] for s in data.system], label="process RSS (MB)")
    if any("gpu_memory_mb" in s for s in data.system):
        b.plot(ts, [s.get("gpu_memory_mb", 0) for s in data.system], label="GPU memory (MB)")
    b.set_xlabel("seconds")
    b.legend(fontsize=7)
    return _img(fig, "system usage over time")


def _step_split(data: DebugData) -> str:
    by_stage: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    counts: dict[str, int] = defaultdict(int)
    for s in data.steps:
        for part in ("data_s", "forward_s", "backward_s", "optimizer_s"):
            by_stage[s["stage"]][part] += s[part]
        counts[s["stage"]] += 1
    if not by_stage:
        return '<p class="muted">no steps recorded</p>'
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 1 + 0.8 * len(by_stage)))
    stages = list(by_stage)
    left = [0.0] * len(stages)
    for part in ("data_s", "forward_s", "backward_s", "optimizer_s"):
        vals = [by_stage[st][part] / counts[st] * 1000 for st in stages]
        ax.barh(stages, vals, left=left, label=part[:-2])
        left = [a + b for a, b in zip(left, vals)]
    ax.set_xlabel("mean ms per step")
    ax.legend(fontsize=8, ncol=4)
    return _img(fig, "step time breakdown")


def _rules_table(results: list[dict[str, Any]]) -> str:
    rows = []
    for r in sorted(results, key=lambda r: (r["Status"] != "IssuesFound", r["Kind"], r["RuleName"])):
        rows.append(f'<tr class="{r["Status"]}"><td>{r["RuleName"]}</td><td>{r["Kind"]}</td><td>{r["Status"]}</td>'
                    f'<td>{r["Violations"]}</td><td>{html.escape(str(r["Details"]))}</td>'
                    f'<td>{html.escape(r["Recommendation"] or "")}</td>'
                    f'<td><code>{html.escape(json.dumps(r["RuleParameters"]))}</code></td></tr>')
    return ("<table><tr><th>rule</th><th>kind</th><th>verdict</th><th>violations</th><th>why</th>"
            "<th>what to try</th><th>parameters</th></tr>" + "".join(rows) + "</table>")


def _page(title: str, body: str) -> str:
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f'<link rel="icon" href="data:,"><style>{CSS}</style></head><body>{body}</body></html>')


def training_report(name: str) -> tuple[str, list[dict[str, Any]]]:
    record = records.load(name)
    d = records.job_dir(name) / "debug"
    if not (d / "meta.json").exists():
        raise UserError(f"job {name!r} has no debugger data (it ran with the debugger off)")
    data = DebugData.load(d)
    results = load_results(d)
    triggered = [r["RuleName"] for r in results if r["RuleTriggered"]]
    metrics = "".join(f"<tr><td>{html.escape(k)}</td><td>{v:.4f}</td></tr>" for k, v in sorted(record.metrics.items())
                      if isinstance(v, float))
    body = (f"<h1>Training job {html.escape(name)}</h1>"
            f"<p>Status <b>{record.status}</b>{' (' + html.escape(record.failure_reason) + ')' if record.failure_reason else ''}"
            f"; backbone {html.escape(str(record.extra.get('backbone')))}; {len(record.history)} epochs; "
            f"{record.elapsed_s:.1f} s. Rules with issues: {html.escape(', '.join(triggered) or 'none')}.</p>"
            f"<h2>Rules</h2>{_rules_table(results)}"
            f"<h2>Loss and accuracy</h2>{_curves(record.history) if record.history else ''}"
            f"<h2>Gradient norms by layer</h2>{_gradients(data)}"
            f"<h2>System usage</h2>{_system(data)}"
            f"<h2>Step time breakdown</h2>{_step_split(data)}"
            f"<h2>Final metrics</h2><table>{metrics}</table>"
            f'<p class="muted">written {time.strftime("%Y-%m-%d %H:%M:%S")} by dogbreed</p>')
    return _page(f"dogbreed report: {name}", body), results


def tuning_report(name: str) -> str:
    from dogbreed.tune.analytics import analytics, columns, summary

    s = summary(name)
    rows, config, _ = analytics(name)
    plt = _plt()
    fig, ax = plt.subplots(figsize=(11, 4))
    rule_counts: dict[str, int] = defaultdict(int)
    for r in rows:
        try:
            job = records.load(r["TrainingJobName"])
        except UserError:
            continue
        hist = [h for h in job.history if config.objective_metric in h]
        if hist:
            ax.plot([h["epoch"] for h in hist], [h[config.objective_metric] for h in hist], marker=".",
                    label=r["TrainingJobName"])
        for rule, status in job.extra.get("rules", {}).items():
            rule_counts[rule] += status == "IssuesFound"
    ax.set_xlabel("epoch")
    ax.set_ylabel(config.objective_metric)
    ax.legend(fontsize=7, ncol=3)
    curves = _img(fig, "objective per epoch, every trial")
    cols = columns(config)
    table = "<table><tr>" + "".join(f"<th>{c}</th>" for c in cols) + "</tr>" + "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(r.get(c, '')))}</td>" for c in cols) + "</tr>" for r in rows
    ) + "</table>"
    pngs = ""
    for f in ("objective_over_time.png", "hyperparameter_importance.png"):
        p = records.job_dir(name) / f
        if p.exists():
            pngs += f'<img alt="{f}" src="data:image/png;base64,{base64.b64encode(p.read_bytes()).decode()}">'
    rules = "".join(f"<tr><td>{k}</td><td>{v}</td></tr>" for k, v in sorted(rule_counts.items()) if v) or \
        "<tr><td colspan=2>no rule found issues in any trial</td></tr>"
    body = (f"<h1>Tuning job {html.escape(name)}</h1><p>Status <b>{s['status']}</b>; strategy {s['strategy']}; "
            f"objective {s['objective']['type']} {s['objective']['metric']}; best training job "
            f"<b>{html.escape(str(s['best_training_job']))}</b> ({s['best_objective_value']}); trials "
            f"{html.escape(json.dumps(s['trial_counts']))}.</p><h2>Trials, best first</h2>{table}"
            f"<h2>Objective of every trial by epoch</h2>{curves}<h2>Objective over time and importance</h2>{pngs}"
            f"<h2>Rules that found issues, by number of trials</h2><table>{rules}</table>")
    return _page(f"dogbreed tuning report: {name}", body)


def write_report(name: str, output: Path | None = None) -> Path:
    record = records.load(name)
    if record.kind == "tuning":
        page, results = tuning_report(name), []
    else:
        page, results = training_report(name)
    out = output or records.job_dir(name) / "report.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page)
    if record.mlflow_run_id:
        try:
            from dogbreed.jobs.tracking import client as mlflow_client

            client = mlflow_client()
            client.log_artifact(record.mlflow_run_id, str(out), "report")
            rules_dir = records.job_dir(name) / "debug" / "rules"
            if rules_dir.exists():
                client.log_artifacts(record.mlflow_run_id, str(rules_dir), "report/rules")
        except Exception as e:  # the report exists on disk either way
            log.warning("could not log the report of %s to MLflow: %s", name, e)
    return out

"""`dogbreed report NAME`: one self-contained HTML file per job (plots inlined as PNG), plus one JSON per rule.

A training job's report follows SageMaker's profiler report: where the job's time went, the rules' verdicts (with
the steps they point at and what to try), training curves, step durations per stage, data loading, system usage
per node, torch.profiler's operators, gradients and the validation confusion. A tuning job's report compares its
trials. The numbers come from analysis.py; this module draws and lays them out.
"""

from __future__ import annotations

import base64
import html
import io
import logging
import math
import re
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable

from dogbreed.config import UserError
from dogbreed.debug import analysis
from dogbreed.debug.hooks import DebugData
from dogbreed.debug.monitor import load_results
from dogbreed.jobs import records
from dogbreed.plots import accuracy_axis

log = logging.getLogger("dogbreed")

CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2rem auto;padding:0 1rem;color:#222}
h1{font-size:1.5rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ddd}h3{font-size:1rem}
table{border-collapse:collapse;font-size:.9rem;margin:.5rem 0}
td,th{border:1px solid #ddd;padding:.3rem .5rem;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums}
.IssuesFound{background:#fde2e1}.NoIssuesFound{background:#e3f5e1}.Error{background:#fff3cd}.NotJudged{background:#eceff1;color:#555}
img{max-width:100%}.muted{color:#666}
table.rules{font-size:.82rem;width:100%}table.rules td.why{min-width:12rem}table.rules td.try{min-width:10rem}
td.params{font-family:ui-monospace,monospace;font-size:.7rem;color:#444;min-width:12rem}
.kind{font-size:.72rem;color:#666}
.wide{overflow-x:auto}"""
MARKER_BELOW = 30  # series with fewer points are drawn with markers: a single point stays visible


def _figure(width: float, height: float, ncols: int = 1) -> tuple[Any, Any]:
    from dogbreed.plots import new_figure

    return new_figure((width, height), ncols)


def _img(fig: Any, alt: str) -> str:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=90)
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def _integer_ticks(ax: Any, axis: str = "x") -> None:
    from matplotlib.ticker import MaxNLocator

    (ax.xaxis if axis == "x" else ax.yaxis).set_major_locator(MaxNLocator(integer=True))


def _marker(n: int) -> dict[str, Any]:
    return {"marker": "o", "markersize": 3} if n < MARKER_BELOW else {}


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        if not math.isfinite(v):
            return "-"
        return f"{v:.4g}" if abs(v) < 1e3 else f"{v:,.0f}"
    return html.escape(str(v))


def _numeric(v: Any) -> bool:
    """Numbers, and percentages already formatted, line up on the right."""
    return isinstance(v, (int, float)) or (isinstance(v, str) and v.endswith("%") and v[:-1].replace(".", "", 1)
                                           .lstrip("-").isdigit())


def _table(headers: Iterable[str], rows: Iterable[Iterable[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f'<td class="n">{_fmt(v)}</td>' if _numeric(v) else
                                    f"<td>{_fmt(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _muted(text: str) -> str:
    return f'<p class="muted">{html.escape(text)}</p>'


# -- sections -----------------------------------------------------------------------------------------------------


def _summary(phases: list[analysis.Phase]) -> str:
    if not phases:
        return _muted("no phase recorded")
    total = sum(p.seconds for p in phases) or 1.0
    table = _table(["phase", "starts at (s)", "seconds", "share", "what it covers"],
                   ([p.name, round(p.start_s, 2), round(p.seconds, 2), f"{p.seconds / total:.1%}", p.note]
                    for p in phases))
    fig, ax = _figure(11, 0.6 + 0.32 * len(phases))
    colours = {"training": "#4c72b0", "evaluation": "#55a868", "feature": "#dd8452", "data": "#c44e52"}
    for i, p in enumerate(phases):
        colour = next((c for k, c in colours.items() if p.name.startswith(k)), "#8c8c8c")
        ax.broken_barh([(p.start_s, max(p.seconds, total / 500))], (i - 0.4, 0.8), color=colour)
    ax.set_yticks(range(len(phases)), [p.name for p in phases], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("seconds since the job started")
    return table + _img(fig, "job phases on a timeline")


def _where(r: dict[str, Any]) -> str:
    def ranges(xs: list[int]) -> str:
        out, start = [], None
        for i, x in enumerate(xs):
            start = x if start is None else start
            if i + 1 == len(xs) or xs[i + 1] != x + 1:
                out.append(str(start) if start == x else f"{start}-{x}")
                start = None
        return ", ".join(out)

    parts = []
    if r.get("Steps"):
        parts.append("steps " + ranges(sorted(r["Steps"])))
    if r.get("Epochs"):
        parts.append("epochs " + ranges(sorted(r["Epochs"])))
    return "; ".join(parts)


def _parameter(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:g}"
    return '""' if v == "" else str(v)


def _parameters(params: dict[str, Any]) -> str:
    """A rule's parameters as `name=value` lines, the form `--rules Name:name=value` takes; a long line may break
    after its '=' or a comma."""
    return "<br>".join(html.escape(f"{k}={_parameter(v)}").replace("=", "=<wbr>").replace(",", ",<wbr>")
                       for k, v in params.items())


def _rules_table(results: list[dict[str, Any]]) -> str:
    order = {"IssuesFound": 0, "Error": 1, "NoIssuesFound": 2, "NotJudged": 3}
    rows = []
    for r in sorted(results, key=lambda r: (order.get(r["Status"], 4), r["Kind"], r["RuleName"])):
        rows.append(f'<tr class="{r["Status"]}"><td>{r["RuleName"]}<br><span class="kind">{r["Kind"]}</span></td>'
                    f'<td>{r["Status"]}</td>'
                    f'<td class="n">{r["Violations"]}</td><td class="why">{html.escape(str(r["Details"]))}</td>'
                    f'<td>{html.escape(_where(r))}</td><td class="try">{html.escape(r["Recommendation"] or "")}</td>'
                    f'<td class="params">{_parameters(r["RuleParameters"])}</td></tr>')
    return ('<table class="rules"><tr><th>rule</th><th>verdict</th><th>violations</th><th>why</th>'
            "<th>where</th><th>what to try</th><th>parameters</th></tr>" + "".join(rows) + "</table>")


def _stage_switches(history: list[dict[str, Any]]) -> list[tuple[float, str]]:
    """Epochs where the stage changes, as x positions between the two stages' epochs, with the new stage."""
    out = []
    for a, b in zip(history, history[1:]):
        if a.get("stage") != b.get("stage"):
            out.append(((a["epoch"] + b["epoch"]) / 2, str(b.get("stage"))))
    return out


def _curves(history: list[dict[str, Any]]) -> str:
    fig, (a, b) = _figure(11, 3.6, ncols=2)
    epochs = [h["epoch"] for h in history]
    switches = _stage_switches(history)
    for key, ax in (("loss", a), ("accuracy", b)):
        shown: list[float] = []
        for split, style in (("train", {"linewidth": 2.2}), ("validation", {"linestyle": "--", "linewidth": 1.2})):
            pts = [(e, h[f"{split}:{key}"]) for e, h in zip(epochs, history) if h.get(f"{split}:{key}") is not None]
            if pts:  # validation thin and dashed over a thick train line: where they coincide, both show
                marker = _marker(len(pts)) | ({"marker": "s"} if split == "validation" and _marker(len(pts)) else {})
                ax.plot([p[0] for p in pts], [p[1] for p in pts], label=split, **marker, **style)
                shown += [p[1] for p in pts]
        if key == "accuracy":
            accuracy_axis(ax, shown)
        for x, stage in switches:  # named at the top of the loss, the foot of the accuracy: clear of the curves
            ax.axvline(x, color="grey", linestyle="--", linewidth=1)
            ax.annotate(stage, (x, 1 if key == "loss" else 0), xycoords=("data", "axes fraction"),
                        xytext=(3, -12 if key == "loss" else 4), textcoords="offset points", fontsize=8, color="grey")
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
        _integer_ticks(ax)
        ax.legend(fontsize=8)
    return _img(fig, "loss and accuracy curves, stage switches marked")


def _step_durations(data: DebugData) -> str:
    stats = analysis.step_statistics(data)
    if not stats:
        return _muted("no steps recorded")
    table = _table(["stage", "steps", "mean ms", "p50 ms", "p95 ms", "p99 ms", "max ms", "outlier limit ms",
                    "outliers (steps)"],
                   ([r["stage"], r["steps"], r["mean"], r["p50"], r["p95"], r["p99"], r["max"], s.limit * 1000,
                     f"{r['outliers']}" + (f" ({', '.join(map(str, s.outliers[:10]))})" if s.outliers else "")]
                    for s in stats for r in [s.row()]))
    fig, axes = _figure(11, 2.8, ncols=len(stats))
    axes = axes if len(stats) > 1 else [axes]
    for ax, s in zip(axes, stats):
        ms = [t * 1000 for t in s.seconds]
        ax.hist(ms, bins=min(40, max(5, len(ms) // 2)), color="#4c72b0")
        if math.isfinite(s.limit):
            ax.axvline(s.limit * 1000, color="#c44e52", linestyle="--", linewidth=1, label="outlier limit")
        outlier_ms = [t * 1000 for step, t in zip(s.steps, s.seconds) if step in set(s.outliers)]
        if outlier_ms:
            ax.plot(outlier_ms, [0] * len(outlier_ms), "v", color="#c44e52", markersize=8, clip_on=False,
                    label="outliers")
        ax.set_title(f"{s.stage}: {len(ms)} steps", fontsize=9)
        ax.set_xlabel("step duration (ms)")
        ax.set_ylabel("steps")
        _integer_ticks(ax, "y")
        if math.isfinite(s.limit) or outlier_ms:
            ax.legend(fontsize=7)
    return table + _img(fig, "step duration histograms per stage, outliers marked")


def _step_split(data: DebugData) -> str:
    by_stage: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    counts: dict[str, int] = defaultdict(int)
    for s in data.steps:
        for part in ("data_s", "forward_s", "backward_s", "optimizer_s"):
            by_stage[s["stage"]][part] += s[part]
        counts[s["stage"]] += 1
    if not by_stage:
        return _muted("no steps recorded")
    # Each stage's step as shares of its own time, its mean length beside its name: a head step of milliseconds
    # would be invisible on one millisecond axis beside fine-tuning steps of seconds.
    fig, ax = _figure(9, 1.3 + 0.6 * len(by_stage))
    stages = list(by_stage)
    totals = [sum(by_stage[st].values()) / counts[st] * 1000 for st in stages]
    left = [0.0] * len(stages)
    for part in ("data_s", "forward_s", "backward_s", "optimizer_s"):
        ms = [by_stage[st][part] / counts[st] * 1000 for st in stages]
        shares = [100 * m / t if t else 0.0 for m, t in zip(ms, totals)]
        bars = ax.barh(range(len(stages)), shares, left=left, label=part[:-2])
        ax.bar_label(bars, [f"{_fmt(m)} ms" if sh >= 9 else "" for m, sh in zip(ms, shares)], label_type="center",
                     fontsize=7, color="white")
        left = [a + b for a, b in zip(left, shares)]
    ax.set_yticks(range(len(stages)), [f"{st}\n{_fmt(t)} ms/step" for st, t in zip(stages, totals)], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("share of the mean step (%)")
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)  # off the bars
    return _img(fig, "step time breakdown")


def _data_loading(data: DebugData, results: list[dict[str, Any]]) -> str:
    rows = analysis.data_loading(data)
    if not rows:
        return _muted("no steps recorded")
    verdict = next((r for r in results if r["RuleName"] == "IOBottleneck"), None)
    note = (f"<p>IOBottleneck: <b>{verdict['Status']}</b>: {html.escape(str(verdict['Details']))}</p>"
            if verdict else "")
    return note + _table(["stage", "steps", "waiting (s)", "share of step time", "p50 wait ms", "p95 wait ms",
                          "steps waiting more than computing", "images/s"],
                         ([r["stage"], r["steps"], r["wait_s"], f"{r['wait_share']:.1%}", r["p50_ms"], r["p95_ms"],
                           r["waiting_steps"], r["images_per_s"]] for r in rows)) + _muted(
        "The head stage reads cached features, so its waits are short by design; image stages decode and augment "
        "one batch ahead in a thread.")


def _system(data: DebugData) -> str:
    if not data.system:
        return _muted("no system samples")
    tables = "".join(f"<h3>node {html.escape(node)}</h3>" + _table(
        ["metric", "unit", "min", "p50", "p95", "max"],
        ([r["metric"], r["unit"], r["min"], r["p50"], r["p95"], r["max"]] for r in rows))
        for node, rows in analysis.system_usage(data).items())
    rows = [s for s in data.system if s.get("node") == data.system[0].get("node")]  # over time: the first node
    t0 = rows[0]["time"]
    ts = [(s["time"] - t0) for s in rows]
    fig, (a, b) = _figure(11, 3.4, ncols=2)
    cores = sorted(k for k in rows[0] if k.startswith("cpu") and k[3:-8].isdigit())
    mark = _marker(len(ts))
    for k in cores:
        a.plot(ts, [s.get(k, 0) for s in rows], label=k.replace("_percent", ""), lw=0.8, **mark)
    a.plot(ts, [s["cpu_percent"] for s in rows], label="all", color="black", **mark)
    if any("gpu_percent" in s for s in rows):
        a.plot(ts, [s.get("gpu_percent", 0) for s in rows], label="gpu", **mark)
    a.set_ylabel("% busy")
    a.set_ylim(0, 105)  # a CPU at 100% throughout is a line at the top, not an axis from 96% to 104%
    a.set_xlabel("seconds since the first sample")
    a.legend(fontsize=7, loc="lower left")
    b.plot(ts, [s["process_rss_mb"] for s in rows], label="training process (RSS)", **mark)
    if any("gpu_memory_mb" in s for s in rows):
        b.plot(ts, [s.get("gpu_memory_mb", 0) for s in rows], label="GPU memory", **mark)
    b.set_ylim(bottom=0)
    b.set_ylabel("memory (MB)")
    b.set_xlabel("seconds since the first sample")
    b.legend(fontsize=7, loc="lower left")
    return tables + _img(fig, "system usage over time")


def _framework(job_dir: Path) -> str:
    trace = job_dir / "profiler" / "trace.json"
    ops = analysis.trace_operators(trace)
    if ops is None:
        return _muted("no torch.profiler trace: run with --profile-steps 5-10 (SageMaker's FrameworkProfile) to "
                      "record one for the steps of the unfrozen stage")
    total = sum(ops.by_pass.values()) or 1.0
    passes = _table(["pass", "self CPU ms", "share"],
                    ([k, v, f"{v / total:.1%}"] for k, v in sorted(ops.by_pass.items(), key=lambda kv: -kv[1])))
    top = _table(["operator", "calls", "self CPU ms", "total CPU ms", "share of self time"],
                 ([r["name"], r["calls"], r["self_ms"], r["total_ms"], f"{r['share']:.1%}"] for r in ops.top))
    kernels = ("<h3>GPU kernels</h3>" + _table(["kernel", "calls", "ms"],
                                               ([r["name"][:80], r["calls"], r["ms"]] for r in ops.kernels))
               if ops.kernels else "")
    return (f"<p>From <code>{html.escape(str(trace))}</code> ({ops.steps} optimizer step(s) traced; the debugger's "
            f"own statistics are part of the forward pass).</p><h3>Forward, backward and optimizer</h3>{passes}"
            f"<h3>Top operators by self time</h3>{top}{kernels}")


def _gradients(data: DebugData, top: int = 12) -> str:
    series: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for r in data.tensors:
        if r["stat"] == "grad_norm":
            series[f"{r['name']} ({r['stage']})"].append((r["step"], r["value"]))
    if not series:
        return _muted("no gradients recorded")
    fig, ax = _figure(11, 4)
    names = sorted(series, key=lambda n: -max(v for _, v in series[n]))[:top]
    for i, n in enumerate(names):
        pts = series[n]
        ax.plot([p[0] for p in pts], [max(p[1], 1e-12) for p in pts], label=n, linestyle=("-", "--", ":")[i // 10 % 3],
                **_marker(len(pts)))
    for a, b in zip(data.steps, data.steps[1:]):
        if a["stage"] != b["stage"]:
            ax.axvline(b["step"] - 0.5, color="grey", linestyle="--", linewidth=1)
            ax.annotate(b["stage"], (b["step"] - 0.5, 1), xycoords=("data", "axes fraction"), xytext=(3, -12),
                        textcoords="offset points", fontsize=8, color="grey")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("gradient norm")
    recorded = sorted({step for pts in series.values() for step, _ in pts})
    if recorded[-1] - recorded[0] < 2:  # one recorded step: whole steps around it, not 0.945 to 1.050
        ax.set_xlim(recorded[0] - 1, recorded[-1] + 1)
    _integer_ticks(ax)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1), borderaxespad=0, frameon=False)
    at = f"step {recorded[0]}" if len(recorded) == 1 else f"steps {recorded[0]} and {recorded[1]}"
    note = (_muted(f"Gradients recorded at {at} only: the debugger records tensors "
                   f"at each stage's first step and then every --debug-interval steps (10 unless set): a short job "
                   f"gives few points.") if len(recorded) < 3 else "")
    return note + _img(fig, "gradient norms by layer")


def _confusion(data: DebugData) -> str:
    found = analysis.last_confusion(data)
    if found is None:
        return _muted("no validation predictions recorded")
    from dogbreed.data.layout import readable_label

    epoch, stage, counts = found
    names = [k for k in (data.meta.get("label_counts") or {})]
    labels = [readable_label(k) for k in names] if len(names) == len(counts) else [str(i) for i in
                                                                                 range(len(counts))]
    n = len(counts)
    size = min(3.5 + 0.35 * n, 14)
    fig, ax = _figure(size + 1.2, size)
    im = ax.imshow(counts, cmap="Blues")
    fig.colorbar(im, ax=ax, label="images")
    if n <= 30:  # counts stay legible
        top = counts.max() or 1
        for i in range(n):
            for j in range(n):
                if counts[i, j]:
                    ax.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=7,
                            color="white" if counts[i, j] > top / 2 else "black")
    fontsize = max(4, min(9, 300 / max(n, 1)))
    ax.set_xticks(range(n), labels, rotation=90, fontsize=fontsize)
    ax.set_yticks(range(n), labels, fontsize=fontsize)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    right = int(sum(counts[i, i] for i in range(n)))
    ax.set_title(f"validation, epoch {epoch} ({stage}): {right} of {int(counts.sum())} right", fontsize=9)
    return _img(fig, "validation confusion matrix")


def _page(title: str, body: str) -> str:
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f'<link rel="icon" href="data:,"><style>{CSS}</style></head><body>{body}</body></html>')


def training_report(name: str) -> tuple[str, list[dict[str, Any]]]:
    record = records.load(name)
    job_dir = records.job_dir(name)
    d = job_dir / "debug"
    if not (d / "meta.json").exists():
        raise UserError(f"job {name!r} has no debugger data (it ran with the debugger off)")
    data = DebugData.load(d)
    results = load_results(d)
    triggered = [r["RuleName"] for r in results if r["RuleTriggered"]]
    not_judged = [r["RuleName"] for r in results if r["Status"] == "NotJudged"]
    metrics = _table(["metric", "value"], ((k, f"{v:.2%}" if k.endswith("_share") else v)
                                          for k, v in sorted(record.metrics.items()) if isinstance(v, float)))
    phases = analysis.job_phases(data, record.start_time, record.end_time)
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.start_time))
    body = (f"<h1>Training job {html.escape(name)}</h1>"
            f"<p>Status <b>{record.status}</b>{' (' + html.escape(record.failure_reason) + ')' if record.failure_reason else ''}"
            f"; backbone {html.escape(str(record.extra.get('backbone')))}; train_mode "
            f"{html.escape(str(record.hyperparameters.get('train_mode')))}; device "
            f"{html.escape(str(record.extra.get('device')))}; {len(record.history)} epochs; started {started}, "
            f"{record.elapsed_s:.1f} s. Rules with issues: <b>{html.escape(', '.join(triggered) or 'none')}</b>; "
            f"not judged here: {html.escape(', '.join(not_judged) or 'none')}.</p>"
            f"<h2>Job summary</h2>{_summary(phases)}"
            f"<h2>Rules</h2>{_rules_table(results)}"
            f"<h2>Loss and accuracy</h2>{_curves(record.history) if record.history else _muted('no epoch finished')}"
            f"<h2>Step durations</h2>{_step_durations(data)}"
            f"<h2>Step time breakdown</h2>{_step_split(data)}"
            f"<h2>Data loading</h2>{_data_loading(data, results)}"
            f"<h2>System usage</h2>{_system(data)}"
            f"<h2>Framework metrics</h2>{_framework(job_dir)}"
            f"<h2>Gradient norms by layer</h2>{_gradients(data)}"
            f"<h2>Confusion matrix</h2>{_confusion(data)}"
            f"<h2>Final metrics</h2>{metrics}"
            f'<p class="muted">written {time.strftime("%Y-%m-%d %H:%M:%S")} by dogbreed</p>')
    return _page(f"dogbreed report: {name}", body), results


def _trial_comparison(rows: list[dict[str, Any]], best: str | None) -> tuple[str, str]:
    """Each trial's recorded losses against the best trial's (SimilarAcrossRuns), and every trial's loss by step."""
    from dogbreed.debug.training_rules import SimilarAcrossRuns

    names = [r["TrainingJobName"] for r in rows if r.get("TrainingJobName")
             and (records.job_dir(r["TrainingJobName"]) / "debug" / "meta.json").exists()]
    if not names:
        return _muted("no trial recorded debugger data"), ""
    best = best if best in names else names[0]
    fig, ax = _figure(11, 3.6)
    table = []
    for trial in names:
        data = DebugData.load(records.job_dir(trial) / "debug")
        steps = data.steps
        ax.plot([s["step"] for s in steps], [s["loss"] for s in steps], label=trial, **_marker(len(steps)))
        if trial != best:
            v = SimilarAcrossRuns(other_trial=best, collection_names="losses").evaluate(data)
            table.append([trial, best, v.status, v.steps[0] if v.steps else "-", v.details])
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    _integer_ticks(ax)
    ax.legend(fontsize=7, ncol=3)
    note = _muted("Trials share seed and batch order, so their losses agree until a hyperparameter acts: the first "
                  "step that differs is where it starts to matter; a trial that never differs from the best with "
                  "other hyperparameters points at a setting that has no effect.")
    comparison = (_table(["trial", "compared with", "SimilarAcrossRuns", "first differing step", "details"], table)
                  if table else _muted("a single trial: nothing to compare"))
    return note + comparison, _img(fig, "training loss by step, every trial")


def tuning_report(name: str) -> str:
    from dogbreed.tune.analytics import analytics, columns, summary

    s = summary(name)
    rows, config, _ = analytics(name)
    fig, ax = _figure(11, 4)
    rule_counts: dict[str, int] = defaultdict(int)
    for i, r in enumerate(rows):
        try:
            job = records.load(r["TrainingJobName"])
        except UserError:
            continue
        hist = [h for h in job.history if config.objective_metric in h]
        if hist:  # line styles apart, so trials with the same objective all stay visible
            ax.plot([h["epoch"] for h in hist], [h[config.objective_metric] for h in hist], label=r["TrainingJobName"],
                    linestyle=("-", "--", ":", "-.")[i % 4], **_marker(len(hist)))
        for rule, status in job.extra.get("rules", {}).items():
            rule_counts[rule] += status == "IssuesFound"
    ax.set_xlabel("epoch")
    ax.set_ylabel(config.objective_metric)
    _integer_ticks(ax)
    if "accuracy" in config.objective_metric:
        accuracy_axis(ax, [y for line in ax.get_lines() for y in line.get_ydata()])
    ax.legend(fontsize=7, ncol=3)
    curves = _img(fig, "objective per epoch, every trial")
    cols = columns(config)
    # CamelCase headers (TrainingElapsedTimeSeconds) may wrap between words; a still wider table scrolls.
    heads = "".join(f'<th>{re.sub("(?<=[a-z])(?=[A-Z])", "<wbr>", html.escape(c))}</th>' for c in cols)
    table = '<div class="wide"><table><tr>' + heads + "</tr>" + "".join(
        "<tr>" + "".join(f'<td class="n">{_fmt(r[c])}</td>' if isinstance(r.get(c), float) else
                         f"<td>{html.escape(str(r.get(c, '')))}</td>" for c in cols) + "</tr>" for r in rows
    ) + "</table></div>"
    pngs = ""
    for f in ("objective_over_time.png", "hyperparameter_importance.png"):
        p = records.job_dir(name) / f
        if p.exists():
            pngs += f'<img alt="{f}" src="data:image/png;base64,{base64.b64encode(p.read_bytes()).decode()}">'
    rules = "".join(f"<tr><td>{k}</td><td>{v}</td></tr>" for k, v in sorted(rule_counts.items()) if v) or \
        "<tr><td colspan=2>no rule found issues in any trial</td></tr>"
    comparison, losses = _trial_comparison(rows, s.get("best_training_job"))
    body = (f"<h1>Tuning job {html.escape(name)}</h1><p>Status <b>{s['status']}</b>; strategy {s['strategy']}; "
            f"objective {s['objective']['type']} {s['objective']['metric']}; best training job "
            f"<b>{html.escape(str(s['best_training_job']))}</b> ({s['best_objective_value']}); trials "
            f"{html.escape(', '.join(f'{n} {k.lower()}' for k, n in s['trial_counts'].items()) or 'none')}.</p>"
            f"<h2>Trials, best first</h2>{table}"
            f"<h2>Objective of every trial by epoch</h2>{curves}<h2>Objective over time and importance</h2>{pngs}"
            f"<h2>Trials compared step by step</h2>{comparison}{losses}"
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

"""`dogbreed pipeline run`: the whole flow from one YAML file, and a rerun that continues instead of redoing."""

from __future__ import annotations

import yaml

from conftest import SLICE_CLASSES, make_slice, run_cli


def test_pipeline_runs_then_continues_where_it_stopped(tmp_path):
    data = make_slice(tmp_path / "data", SLICE_CLASSES[:3], 8, 4)
    spec = {"name": "pipe", "data": str(data),
            "tuning": {"strategy": "Random", "max_jobs": 2, "static_hyperparameters": {"epochs": 2},
                       "hyperparameter_ranges": {"learning_rate": {"type": "Continuous", "min": 0.001,
                                                                   "max": 0.01}}},
            "register": {"model": "pipe-dogs", "alias": "prod"},
            "deploy": {"endpoint": "pipe-ep"},
            "smoke_test": {"split": "valid", "photos": 6, "min_accuracy": 0.6}}
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(spec))
    try:
        r = run_cli("pipeline", "run", str(path))
        assert r.returncode == 0, r.stderr[-2000:]
        for step in ("check", "tune", "report", "register", "deploy", "smoke_test"):
            assert f"pipeline step {step}: running" in r.stderr
        summary = r.stdout.split("summary: ")[1].strip()
        page = open(summary).read()
        for what in ("report.html", "analytics.csv", "pipe-dogs:1 (@prod)", "smoke test", "pipe-ep"):
            assert what in page
        # A rerun: every step already done for the same inputs is skipped.
        r = run_cli("pipeline", "run", str(path))
        assert r.returncode == 0, r.stderr[-2000:]
        assert r.stderr.count("already done, skipped") == 6
        # The endpoint goes away (a crash, a reboot): only what depends on it runs again.
        assert run_cli("endpoints", "delete", "pipe-ep").returncode == 0
        r = run_cli("pipeline", "run", str(path))
        assert r.returncode == 0, r.stderr[-2000:]
        assert "pipeline step deploy: running" in r.stderr and "pipeline step tune: already done" in r.stderr
        listed = run_cli("models", "describe", "pipe-dogs", "--json").stdout
        assert '"version": "1"' in listed and '"version": "2"' not in listed  # registered once
    finally:
        run_cli("endpoints", "delete", "pipe-ep")


def test_pipeline_file_mistakes_are_one_line(tmp_path):
    path = tmp_path / "p.yaml"
    for doc, message in (({"name": "p"}, "needs 'data'"),
                         ({"name": "p", "data": "x", "training": {}, "tuning": {}}, "exactly one of"),
                         ({"name": "p", "data": "x", "trianing": {}}, "unknown pipeline key 'trianing'"),
                         ({"name": "../p", "data": "x", "training": {}}, "pipeline name '../p' is invalid"),
                         ({"name": "p", "data": "x", "training": {"hyperparameters": {"epochs": 2.5}}},
                          "epochs=2.5 is not a whole number")):
        path.write_text(yaml.safe_dump(doc))
        r = run_cli("pipeline", "run", str(path))
        assert r.returncode == 2 and message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr

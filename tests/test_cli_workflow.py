"""The CLI as a user walks through it after training: `jobs list` and its filters, `evaluate` with no data given,
`models alias` / `models delete`, `logs export`, a one-job pipeline with an upload, the tuning plots, `--version`,
and human output that is free of Python reprs, long floats and MLflow's INFO lines. Real processes, real photos."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import SLICE_CLASSES, make_slice, run_cli

# What must never reach a person: Python reprs, 17-digit floats, library INFO lines, tracebacks.
REPR = re.compile(r"\d\.\d{9,}|\bNone\b|\{'|\['|object at 0x|datetime\.datetime\(|PosixPath\(|<dogbreed\.")
NOISE = ("INFO mlflow", "INFO alembic", "mlflow.store", "HTTP Request:", "Traceback")


def clean(r: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    """A command that succeeded, with clean human output and a quiet stderr."""
    assert r.returncode == 0, (r.args, r.returncode, r.stdout[-1500:], r.stderr[-3000:])
    for noise in NOISE:
        assert noise not in r.stderr, (r.args, r.stderr[-3000:])
    if "--json" not in r.args:
        assert not REPR.search(r.stdout), (r.args, REPR.search(r.stdout), r.stdout[-3000:])
    return r


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    r = run_cli(*args, env=env)
    return clean(subprocess.CompletedProcess(list(args), r.returncode, r.stdout, r.stderr))


# Several commands through the CLI's entry point in one `python` process, each with its own stdout and stderr:
# what `python -m dogbreed.cli` runs, without paying the interpreter's and torch's start-up per command.
_DRIVER = """
import contextlib, io, json, sys
from dogbreed.cli import main
results = []
for argv in json.loads(sys.stdin.read()):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(argv)
        except SystemExit as e:
            rc = e.code
    results.append([rc, out.getvalue(), err.getvalue()])
sys.__stdout__.write(json.dumps(results))
"""


def cli_session(*argvs: list[str]) -> list[subprocess.CompletedProcess]:
    r = subprocess.run([sys.executable, "-c", _DRIVER], input=json.dumps(argvs), capture_output=True, text=True,
                       env=os.environ.copy(), timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    for noise in NOISE:  # anything written past the commands' own streams
        assert noise not in r.stderr, r.stderr[-3000:]
    results = json.loads(r.stdout)
    return [subprocess.CompletedProcess(argv, rc, out, err) for argv, (rc, out, err) in zip(argvs, results)]


def one_line_error(r: subprocess.CompletedProcess, message: str) -> None:
    assert r.returncode == 2, (r.args, r.returncode, r.stdout[-500:], r.stderr[-2000:])
    assert "Traceback" not in r.stderr and message in r.stderr, (r.args, r.stderr)
    assert len(r.stderr.strip().splitlines()) == 1, (r.args, r.stderr)


@pytest.fixture(scope="module")
def data3(tmp_path_factory) -> Path:
    """3 breeds x (6 train, 3 valid) real photos and no test/ split (so `valid` is evaluate's fallback)."""
    return make_slice(tmp_path_factory.mktemp("workflow3"), SLICE_CLASSES[:3], 6, 3)


@pytest.fixture(scope="module")
def tuning_job(data3) -> str:
    """A finished two-trial tuning job (fast preset, one epoch), with an IntegerParameter and scaling 'Auto'."""
    from dogbreed import ContinuousParameter, Estimator, HyperparameterTuner, IntegerParameter

    est = Estimator(hyperparameters={"preset": "fast", "epochs": 1})
    tuner = HyperparameterTuner(est, "validation:accuracy",
                                {"learning_rate": ContinuousParameter(1e-3, 1e-2, scaling_type="Auto"),
                                 "mini_batch_size": IntegerParameter(8, 16, scaling_type="Auto")},
                                max_jobs=2, max_parallel_jobs=1)
    tuner.fit(str(data3), job_name="wf-tune")
    return "wf-tune"


@pytest.fixture(scope="module")
def pipeline(data3, tmp_path_factory) -> dict:
    """`dogbreed pipeline run` with a single training job, uploaded first to a bucket `Session.upload_data` made."""
    import dogbreed
    from dogbreed.config import home

    folder = tmp_path_factory.mktemp("wfpipe")
    note = folder / "notes.txt"
    note.write_text("the bucket exists once upload_data has put something in it\n")
    assert dogbreed.Session().upload_data(str(note), bucket="wf-pipe-bucket", key_prefix="notes") == \
        "s3://wf-pipe-bucket/notes/notes.txt"
    spec = {"name": "wfpipe", "data": str(data3), "upload": "s3://wf-pipe-bucket/dogs",
            "training": {"hyperparameters": {"preset": "fast", "epochs": 1}},
            "register": {"model": "wfpipe-dogs", "alias": "prod"}}
    path = folder / "pipeline.yaml"
    path.write_text(yaml.safe_dump(spec))
    first = cli("pipeline", "run", str(path))
    state = json.loads((home() / "pipelines" / "wfpipe" / "state.json").read_text())
    return {"path": path, "first": first, "job": state["train"]["output"]["job"], "state": state}


def test_version():
    from dogbreed import __version__

    r = cli("--version")
    assert r.stdout.strip() == f"dogbreed {__version__}"


def test_jobs_list_kind_column_filters_and_folded_trials(tuning_job, served_model, data3):
    (table, unfolded, trials, tuning, completed_training, failed, parent_table, not_tuning, unknown,
     bad_kind, described) = cli_session(
        ["jobs", "list"], ["jobs", "list", "--all", "--json"], ["jobs", "list", "--parent", "wf-tune", "--json"],
        ["jobs", "list", "--kind", "tuning", "--json"],
        ["jobs", "list", "--kind", "training", "--status", "Completed", "--json"],
        ["jobs", "list", "--status", "Failed", "--json"], ["jobs", "list", "--parent", "wf-tune"],
        ["jobs", "list", "--parent", "serve-job"], ["jobs", "list", "--parent", "no-such-tuning"],
        ["jobs", "list", "--kind", "trial"], ["jobs", "describe", "wf-tune"])
    lines = clean(table).stdout.splitlines()
    header = lines[0].split()
    assert header[:3] == ["NAME", "KIND", "STATUS"] and "TRIALS" in header
    rows = {line.split()[0]: line for line in lines[1:]}
    assert rows["wf-tune"].split()[1] == "tuning" and "2 trials" in rows["wf-tune"]
    assert rows["serve-job"].split()[1] == "training"
    assert "wf-tune-000" not in rows and "wf-tune-001" not in rows  # folded under their tuning job
    assert all(re.fullmatch(r"\d+\.\d", row.split()[-1]) for row in rows.values()), rows  # seconds, not 11.3000
    data_line = next(ln for ln in clean(described).stdout.splitlines() if ln.startswith("data:"))
    assert data_line.split() == ["data:", str(data3)], data_line  # no "(- classes, - training images)"

    def jobs(r: subprocess.CompletedProcess) -> list[dict]:
        return json.loads(clean(r).stdout)

    assert {"wf-tune", "wf-tune-000", "wf-tune-001", "serve-job"} <= {j["name"] for j in jobs(unfolded)}
    trials = jobs(trials)
    assert sorted(j["name"] for j in trials) == ["wf-tune-000", "wf-tune-001"]
    assert {j["parent"] for j in trials} == {"wf-tune"} and {j["kind"] for j in trials} == {"training"}
    tuning = jobs(tuning)
    assert "wf-tune" in {j["name"] for j in tuning} and {j["kind"] for j in tuning} == {"tuning"}
    completed_training = jobs(completed_training)
    assert "serve-job" in {j["name"] for j in completed_training}
    assert {j["kind"] for j in completed_training} == {"training"}
    assert {j["status"] for j in completed_training} == {"Completed"}
    assert not any(j["parent"] for j in completed_training)  # trials stay folded unless --all or --parent
    assert all(j["status"] == "Failed" for j in jobs(failed))
    parent_table = clean(parent_table).stdout
    assert "wf-tune-000" in parent_table and "wf-tune-001" in parent_table
    # Mistakes are one line: a parent that is not a tuning job, a kind that does not exist.
    one_line_error(not_tuning, "no tuning job named 'serve-job'")
    one_line_error(unknown, "no tuning job named 'no-such-tuning'")
    one_line_error(bad_kind, "invalid choice: 'trial'")


def test_tuning_plots_best_so_far_and_too_few_trials(tuning_job, monkeypatch, tmp_path):
    import dataclasses

    import optuna

    import dogbreed.plots
    from dogbreed.jobs import records
    from dogbreed.tune import analytics

    folder = records.job_dir(tuning_job)
    for png in ("objective_over_time.png", "hyperparameter_importance.png"):
        assert (folder / png).stat().st_size > 1000, png
    figures: dict[str, object] = {}
    real_save = dogbreed.plots.save
    monkeypatch.setattr(dogbreed.plots, "save", lambda fig, path, **kw: (figures.__setitem__(Path(path).name, fig),
                                                                        real_save(fig, path, **kw)))

    def texts(fig) -> str:
        ax = fig.axes[0]
        return " ".join([ax.get_title()] + [t.get_text() for t in ax.texts])

    rows, config, study = analytics.analytics(tuning_job)
    # The real job: two trials, so the importance plot says it cannot be trusted.
    analytics._plot_importance(study, config, tuning_job, tmp_path / "real_importance.png")
    assert "only 2 completed trial(s): too few to trust" in texts(figures["real_importance.png"])
    analytics._plot_objective(rows, config, tuning_job, tmp_path / "real_objective.png")
    assert "best so far" in [line.get_label() for line in figures["real_objective.png"].axes[0].lines]

    # The best-so-far line over trial numbers: stopped (pruned) trials do not count; minimising flips it.
    made = [{"_number": n, "FinalObjectiveValue": v, "TrainingJobStatus": s}
            for n, v, s in ((0, 0.5, "Completed"), (1, 0.3, "Completed"), (2, 0.9, "Stopped"), (3, 0.7, "Completed"),
                            (4, 0.2, "Completed"))]
    for objective_type, want in (("Maximize", [0.5, 0.5, 0.5, 0.7, 0.7]), ("Minimize", [0.5, 0.3, 0.3, 0.3, 0.2])):
        cfg = dataclasses.replace(config, objective_type=objective_type)
        analytics._plot_objective(made, cfg, "made", tmp_path / f"{objective_type}.png")
        [line] = [ln for ln in figures[f"{objective_type}.png"].axes[0].lines if ln.get_label() == "best so far"]
        assert list(line.get_xdata()) == [0, 1, 2, 3, 4] and list(line.get_ydata()) == want, objective_type

    # Trials all at 100% accuracy: the axis stops at 100% (matplotlib alone draws 96% to 104%).
    assert "accuracy" in config.objective_metric
    perfect = [{"_number": n, "FinalObjectiveValue": 1.0, "TrainingJobStatus": "Completed"} for n in range(3)]
    analytics._plot_objective(perfect, config, "perfect", tmp_path / "perfect.png")
    axis = figures["perfect.png"].axes[0]
    assert axis.get_ylim()[1] <= 1.06 and max(axis.get_yticks()) <= 1.0
    assert all(label.get_text().endswith("%") for label in axis.get_yticklabels())

    # A tiny finished study with varied values: bars are drawn, and the title still warns below 10 trials.
    def study_of(n: int) -> optuna.Study:
        s = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
        s.optimize(lambda t: t.suggest_float("learning_rate", 1e-3, 1e-2) * 50 + t.suggest_int("mini_batch_size", 8, 16)
                   / 100, n_trials=n)
        return s

    analytics._plot_importance(study_of(4), config, "tiny", tmp_path / "tiny.png")
    ax = figures["tiny.png"].axes[0]
    assert ax.patches and "only 4 completed trial(s): too few to trust" in ax.get_title()
    analytics._plot_importance(study_of(12), config, "enough", tmp_path / "enough.png")
    assert "too few" not in texts(figures["enough.png"])


def test_pipeline_with_one_training_job_and_an_upload(pipeline, dogbreed_home):
    from dogbreed.jobs import records
    from dogbreed.jobs.model_registry import describe_model

    err = pipeline["first"].stderr
    for step in ("check", "upload", "train", "report", "register"):
        assert f"pipeline step {step}: running" in err, err[-3000:]
    assert "pipeline step tune" not in err and "pipeline step deploy" not in err
    # The data went into the local bucket, and the job trained from there (its recorded data is the s3:// URI).
    bucket = dogbreed_home / "buckets" / "wf-pipe-bucket" / "dogs"
    assert len(list((bucket / "train").rglob("*.jpg"))) == 18 and len(list((bucket / "valid").rglob("*.jpg"))) == 9
    assert pipeline["state"]["upload"]["output"] == {"data": "s3://wf-pipe-bucket/dogs", "files": 27}
    record = records.load(pipeline["job"])
    assert record.kind == "training" and record.status == "Completed" and not record.parent
    assert record.data["location"] == "s3://wf-pipe-bucket/dogs" and record.hyperparameters["preset"] == "fast"
    model = describe_model("wfpipe-dogs")
    assert [v["job"] for v in model["versions"]] == [pipeline["job"]]
    assert {a: str(v) for a, v in model["aliases"].items()} == {"prod": "1"}
    page = Path(pipeline["first"].stdout.split("summary: ")[1].strip()).read_text()
    for what in ("s3://wf-pipe-bucket/dogs", pipeline["job"], "report.html", "wfpipe-dogs:1 (@prod)"):
        assert what in page, what


def test_evaluate_defaults_to_the_jobs_data_and_split_and_logs_to_its_run(pipeline, served_model):
    from mlflow.tracking import MlflowClient

    from dogbreed.config import tracking_uri
    from dogbreed.jobs import records

    # The pipeline's job: data recorded as s3:// of the local bucket, no test/ split -> valid. A job whose data
    # has test/ -> test, with the accuracy the job itself recorded for its test split.
    job = pipeline["job"]
    human, as_json = cli_session(["evaluate", "--job", job], ["evaluate", "--job", "serve-job", "--json"])
    human = clean(human).stdout
    assert human.startswith(f"{job} on valid: accuracy ") and "artifacts: " in human
    ev = json.loads(clean(as_json).stdout)
    serve = records.load("serve-job")
    assert ev["split"] == "test" and ev["accuracy"] == pytest.approx(serve.metrics["test:accuracy"], abs=1e-6)
    client = MlflowClient(tracking_uri())
    for name, split, metric in ((job, "valid", "validation"), ("serve-job", "test", "test")):
        run_id = records.load(name).mlflow_run_id
        assert run_id, name
        metrics = client.get_run(run_id).data.metrics
        assert f"evaluate.{metric}:accuracy" in metrics, (name, sorted(metrics))
        logged = {a.path for a in client.list_artifacts(run_id, "evaluations")}
        assert any(p.startswith(f"evaluations/{split}-") for p in logged), (name, logged)
    assert metrics["evaluate.test:accuracy"] == pytest.approx(ev["accuracy"])


def test_models_alias_and_delete(served_model):
    from dogbreed.config import UserError
    from dogbreed.jobs.model_registry import describe_model, register_job

    register_job("serve-job", "wf-models")
    register_job("serve-job", "wf-models")
    (alias, described, removed, removed_again, no_version, delete_one, after_one, delete_all,
     alias_gone) = cli_session(
        ["models", "alias", "wf-models", "live", "1"], ["models", "describe", "wf-models"],
        ["models", "alias", "wf-models", "live", "--delete"], ["models", "alias", "wf-models", "live", "--delete"],
        ["models", "alias", "wf-models", "live"], ["models", "delete", "wf-models", "--version", "1"],
        ["models", "describe", "wf-models", "--json"], ["models", "delete", "wf-models"],
        ["models", "alias", "wf-models", "live", "2"])
    assert clean(alias).stdout.strip() == "wf-models@live -> version 1"
    human = clean(described).stdout
    assert "2 version(s); aliases @live=1" in human and "validation accuracy" in human
    assert clean(removed).stdout.strip() == "removed alias @live of wf-models"
    one_line_error(removed_again, "model 'wf-models' has no alias 'live'")  # not "removed" a second time
    one_line_error(no_version, "give the VERSION the alias should point at")
    assert clean(delete_one).stdout.strip() == "deleted model wf-models version 1"
    left = json.loads(clean(after_one).stdout)
    assert [v["version"] for v in left["versions"]] == ["2"] and left["aliases"] == {}
    assert clean(delete_all).stdout.strip() == "deleted model wf-models"
    one_line_error(alias_gone, "no registered model named 'wf-models'")
    with pytest.raises(UserError, match="no registered model named 'wf-models'"):
        describe_model("wf-models")


def test_logs_export_to_a_folder_a_file_uri_and_a_local_bucket(pipeline, tmp_path, dogbreed_home):
    def exported(root: Path) -> set[str]:
        return {p.relative_to(root / job).as_posix() for p in (root / job).rglob("*") if p.is_file()}

    job = pipeline["job"]  # trained with the debugger, reported on and evaluated by the pipeline
    folder, uri_root = tmp_path / "exported", tmp_path / "by-uri"
    to_folder, to_uri, to_bucket, unknown, no_dest = cli_session(
        ["logs", "export", job, str(folder)], ["logs", "export", job, uri_root.as_uri()],
        ["logs", "export", job, "s3://wf-pipe-bucket/logs"], ["logs", "export", "no-such-job", str(folder)],
        ["logs", "export", job])
    files = exported(folder)
    assert clean(to_folder).stdout.strip() == f"exported {len(files)} file(s) of {job} to {folder}"
    assert {"train.log", "job.json", "metrics.json", "report.html"} <= files, files
    assert any(f.startswith("debug/rules/") for f in files) and any(f.startswith("evaluation/") for f in files)
    assert f"training job {job}" in (folder / job / "train.log").read_text()
    clean(to_uri)
    assert exported(uri_root) == files
    # s3:// of a bucket kept under the home (made by Session.upload_data): the files land in its folder.
    clean(to_bucket)
    assert exported(dogbreed_home / "buckets" / "wf-pipe-bucket" / "logs") == files
    one_line_error(unknown, "no job or endpoint named 'no-such-job'")
    one_line_error(no_dest, "usage: dogbreed logs NAME")


def test_mlflow_info_lines_stay_off_stderr_in_a_new_home(tmp_path):
    """A new home: MLflow creates its database on first use and logs that at INFO; a command shows none of it."""
    home = tmp_path / "new-home"
    r = cli("models", "list", env={"DOGBREED_HOME": str(home)})
    assert r.stdout.strip() == "no registered models (run `dogbreed models register JOB`)"
    assert r.stderr == "", r.stderr
    assert (home / "mlflow.db").exists()  # the database was made: its INFO lines were there to show

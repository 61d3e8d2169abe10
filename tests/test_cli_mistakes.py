"""A careless user's mistakes: each is one line on stderr and a non-zero exit, never a traceback, and nothing is
touched outside the dogbreed home."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import make_slice, run_cli, SLICE_CLASSES
from dogbreed.config import UserError
from dogbreed.jobs import names


def _one_line_error(r: subprocess.CompletedProcess, message: str) -> None:
    assert r.returncode == 2, (r.returncode, r.stdout[-500:], r.stderr[-2000:])
    assert "Traceback" not in r.stderr, r.stderr
    assert message in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


BAD_NAMES = ["../../x", "..", "a/b", "abc\n", "-rf", "", "a" * 300, "x y", "./x", "\u00fcn\u00efcode", "a..b"]
NAME_COMMANDS = [
    ("jobs", "describe", "{}"), ("jobs", "delete", "{}"), ("jobs", "stop", "{}"), ("jobs", "resume", "{}"),
    ("logs", "{}"),
    ("endpoints", "describe", "{}"), ("endpoints", "delete", "{}"), ("models", "describe", "{}"),
    ("models", "delete", "{}"), ("models", "register", "{}"), ("models", "register", "ok-job", "--name", "{}"),
    ("tune", "describe", "{}"), ("tune", "resume", "{}"), ("tune", "stop", "{}"), ("debug", "{}"), ("report", "{}"),
    ("deploy", "--model", "{}", "--endpoint-name", "ok-name", "--port", "0"),
    ("deploy", "--model", "dogs", "--endpoint-name", "{}", "--port", "0"),
    ("predict", "nope.jpg", "--model", "{}"), ("batch-transform", "--model", "{}", "--input", ".", "--output", "o"),
    ("train", "--data", ".", "--job-name", "{}"), ("evaluate", "--job", "{}"),
]

# Runs every (command, name) pair through the real CLI entry point in one process (starting 200 interpreters would
# take minutes) and reports each exit code and stderr.
_DRIVER = """
import contextlib, io, json, sys
from dogbreed.cli import main
out = []
for argv in json.loads(sys.stdin.read()):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            rc = main(argv)
        except SystemExit as e:
            rc = e.code
    out.append([argv, rc, err.getvalue()])
print(json.dumps(out))
"""


def test_every_command_that_takes_a_name_refuses_a_bad_one(tmp_path, dogbreed_home):
    outside = tmp_path / "x"
    outside.mkdir()
    (outside / "keep").write_text("mine")
    cwd = tmp_path / "a" / "b"
    cwd.mkdir(parents=True)
    argvs = [[part.format(name) if part == "{}" else part for part in cmd] for name in BAD_NAMES
             for cmd in NAME_COMMANDS]
    r = subprocess.run([sys.executable, "-c", _DRIVER], input=json.dumps(argvs), capture_output=True, text=True,
                       cwd=cwd, env=os.environ.copy(), timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    for argv, rc, err in json.loads(r.stdout):
        assert rc == 2, (argv, rc, err)
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1, (argv, err)
        assert "File name too long" not in err, argv
        assert any(w in err for w in ("is invalid", "is too long", "is missing", "expected one argument",
                                      "arguments are required", "no dogbreed model in")), (argv, err)
    assert (outside / "keep").read_text() == "mine"
    assert list(cwd.iterdir()) == []


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=80))
def test_names_are_valid_exactly_when_they_stay_a_folder_under_the_home(dogbreed_home, name):
    try:
        names.validate(name, "job")
    except UserError as e:
        assert "\n" not in str(e)
        return
    path = names.path_for("job", name)
    assert path.parent == (dogbreed_home / "jobs").resolve()
    assert path.name == name and "\n" not in name and ".." not in name and "/" not in name
    assert len(name) <= names.MAX_LENGTH


def test_device_cuda_without_a_gpu(dogs_slice):
    _one_line_error(run_cli("train", "--data", str(dogs_slice), "--job-name", "cuda-job", "--device", "cuda"),
                    "this machine has no CUDA GPU")


def test_home_that_is_a_file(tmp_path, dogs_slice):
    f = tmp_path / "home-file"
    f.write_text("")
    for args in (("jobs", "list"), ("train", "--data", str(dogs_slice), "--job-name", "x"), ("models", "list")):
        _one_line_error(run_cli(*args, env={"DOGBREED_HOME": str(f)}), "is a file, not a folder")


def test_a_reader_that_leaves_early_is_no_error(dogbreed_home):
    """`dogbreed jobs list | head -1`: the pipe closes; the command ends quietly."""
    for i in range(50):
        (dogbreed_home / "jobs" / f"pipe-{i:02d}").mkdir(parents=True, exist_ok=True)
        from dogbreed.jobs.records import JobRecord, save

        now = time.time()  # a real job's times: other tests list these records too
        save(JobRecord(name=f"pipe-{i:02d}", status="Completed", start_time=now - 10, end_time=now, owner=None))
    r = subprocess.run(f"{sys.executable} -m dogbreed.cli jobs list --json | head -1", shell=True,
                       capture_output=True, text=True, env=os.environ.copy())
    assert r.stdout.strip() == "[" and r.stderr == "", r.stderr
    r = subprocess.run(f"{sys.executable} -m dogbreed.cli jobs list | head -1", shell=True, capture_output=True,
                       text=True, env=os.environ.copy())
    assert r.stdout.startswith("NAME") and r.stderr == "", r.stderr


@pytest.mark.parametrize("flag, value, message", [
    ("--epochs", "2.7", "epochs='2.7' is not a whole number"),
    ("--epochs", "-1", "epochs"),
    ("--mini_batch_size", "0", "mini_batch_size"),
    ("--learning_rate", "abc", "learning_rate"),
    ("--top_k", "1.5", "top_k='1.5' is not a whole number"),
])
def test_hyperparameter_values_are_not_silently_changed(dogs_slice, flag, value, message):
    _one_line_error(run_cli("train", "--data", str(dogs_slice), "--job-name", "typed", flag, value), message)


def test_one_class_dataset_is_refused(tmp_path):
    data = make_slice(tmp_path / "one", SLICE_CLASSES[:1], 4, 2)
    _one_line_error(run_cli("train", "--data", str(data), "--job-name", "one-class"), "at least 2")


def test_class_names_that_look_like_formulas_stay_text(tmp_path, dogbreed_home):
    from dogbreed.config import Hyperparameters
    from dogbreed.train.job import TrainingJobSpec, run_training_job

    data = make_slice(tmp_path / "formula", SLICE_CLASSES[:2], 6, 3)
    for split in ("train", "valid"):
        (data / split / SLICE_CLASSES[0]).rename(data / split / "=HYPERLINK(\"http-evil\")")
        (data / split / SLICE_CLASSES[1]).rename(data / split / "+1+cmd")
    rec = run_training_job(TrainingJobSpec("formula-job", str(data), Hyperparameters(epochs=1), progress=False))
    assert rec.status == "Completed", rec.failure_reason
    evaluation = dogbreed_home / "jobs" / "formula-job" / "evaluation"
    cells = [c for f in evaluation.glob("*.csv") for row in csv.reader(f.open()) for c in row]
    assert cells and not any(c.startswith(("=", "+", "-", "@")) for c in cells)
    assert "'=HYPERLINK(\"http-evil\")" in cells


def test_sdk_refuses_a_bad_job_name_before_writing_anything(generated_dataset, dogbreed_home):
    from dogbreed import Estimator, HyperparameterTuner, ContinuousParameter
    from dogbreed.config import UserError

    before = set(dogbreed_home.parent.iterdir())
    est = Estimator(hyperparameters={"epochs": 1})
    for wait in (True, False):
        with pytest.raises(UserError, match="is invalid"):
            est.fit(str(generated_dataset), wait=wait, job_name="../../evil")
    tuner = HyperparameterTuner(est, "validation:accuracy", {"learning_rate": ContinuousParameter(0.001, 0.1)},
                                max_jobs=1)
    with pytest.raises(UserError, match="is invalid"):
        tuner.fit(str(generated_dataset), job_name="../evil", wait=False)
    assert set(dogbreed_home.parent.iterdir()) == before
    assert not list(dogbreed_home.rglob("*evil*"))

"""The SageMaker-shaped Python SDK, used the way a notebook uses it: real jobs on real photos, real endpoints on
127.0.0.1, jobs found by name from other processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import SLICE_CLASSES, make_slice
from dogbreed.config import UserError

CLASSES = SLICE_CLASSES[:3]


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    """3 breeds x (8 train, 4 valid, 3 test) real photos."""
    return make_slice(tmp_path_factory.mktemp("sdk3"), CLASSES, 8, 4, 3)


@pytest.fixture(scope="module")
def udacity_style(small: Path, tmp_path_factory) -> Path:
    """The same photos in the seed's layout: folders `001.Shih-Tzu`, `002.beagle`, ... (symlinks)."""
    root = tmp_path_factory.mktemp("udacity")
    for split in ("train", "valid", "test"):
        for i, c in enumerate(CLASSES, start=1):
            d = root / split / f"{i:03d}.{c.split('-', 1)[1]}"
            d.mkdir(parents=True)
            for f in sorted((small / split / c).iterdir()):
                (d / f.name).symlink_to(f.resolve())
    return root


def _run_python(code: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout, env=os.environ.copy())


def test_sdk_from_a_plain_script(small, tmp_path):
    """Train, tune three trials, deploy, predict a real photo with each input type, delete: as a user's script."""
    script = tmp_path / "flow.py"
    script.write_text(textwrap.dedent(f"""
        import json
        import numpy as np
        from PIL import Image
        import dogbreed
        from dogbreed import Estimator, HyperparameterTuner, ContinuousParameter, CategoricalParameter

        est = Estimator(hyperparameters={{"epochs": 3}}, role="ignored-role", instance_type="ml.m5.large")
        est.fit("{small}")
        assert est.model_data.startswith("file://"), est.model_data
        tuner = HyperparameterTuner(est, "validation:accuracy",
                                    {{"learning_rate": ContinuousParameter(0.001, 0.01),
                                      "optimizer": CategoricalParameter(["adam", "sgd"])}},
                                    max_jobs=3, max_parallel_jobs=1)
        tuner.fit({{"train": "{small}/train", "validation": "{small}/valid"}})
        df = tuner.analytics().dataframe()
        print("ROWS", len(df), list(df.columns))
        photo = "{sorted((small / 'test' / CLASSES[1]).iterdir())[0]}"
        with tuner.deploy(initial_instance_count=1, instance_type="ml.m5.large") as predictor:
            answers = [
                json.loads(predictor.predict(open(photo, "rb").read(),
                                             initial_args={{"ContentType": "image/jpeg"}})),
                json.loads(predictor.predict(photo)),
                json.loads(predictor.predict(Image.open(photo))),
                json.loads(predictor.predict(np.asarray(Image.open(photo).convert("RGB")))),
            ]
            print("ARGMAX", [int(np.argmax(a)) for a in answers])
            print("TOP", predictor.predict_top_k(photo, 2)[0]["label"])
            name = predictor.endpoint_name
        print("ENDPOINT", name)
    """))
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=900,
                       env=os.environ.copy())
    assert r.returncode == 0, r.stderr[-3000:]
    out = r.stdout
    rows = next(line for line in out.splitlines() if line.startswith("ROWS"))
    assert rows.startswith("ROWS 3") and "FinalObjectiveValue" in rows and "learning_rate" in rows
    assert "ARGMAX [1, 1, 1, 1]" in out  # a beagle, whichever way the photo is passed
    assert "TOP beagle" in out
    endpoint = next(line.split()[1] for line in out.splitlines() if line.startswith("ENDPOINT"))
    from dogbreed.jobs import endpoint_records

    assert not endpoint_records.exists(endpoint)  # deleted when the `with` block ended
    assert "pre-flight" in r.stderr or "training job" in r.stderr  # log lines reach the user without setup


def _write_lst(path: Path, rows: list[tuple[int, str, str]]) -> Path:
    path.write_text("".join(f"{i}\t{label}\t{rel}\n" for i, label, rel in rows))
    return path


def _lst_rows(split_dir: Path, label_of) -> list[tuple[int, str, str]]:
    rows = []
    for i, f in enumerate(sorted(p for p in split_dir.rglob("*") if p.is_file() or p.is_symlink())):
        rows.append((i, label_of(f.parent.name), f"{f.parent.name}/{f.name}"))
    return rows


@pytest.mark.parametrize("style", ["zero_based_floats", "folder_numbers"])
def test_training_from_lst_channels(udacity_style, tmp_path, caplog, style):
    import logging

    from dogbreed import Estimator, TrainingInput

    folders = sorted(p.name for p in (udacity_style / "train").iterdir())
    if style == "zero_based_floats":  # as im2rec writes them
        label_of = lambda folder: f"{folders.index(folder):.6f}"  # noqa: E731
    else:  # as the seed notebook wrote them: the folder's own number, zero-padded
        label_of = lambda folder: folder.split(".")[0]  # noqa: E731
    train_lst = _write_lst(tmp_path / "train.lst", _lst_rows(udacity_style / "train", label_of))
    valid_lst = _write_lst(tmp_path / "valid.lst", _lst_rows(udacity_style / "valid", label_of))
    est = Estimator(hyperparameters={"epochs": "2", "num_classes": "3", "num_training_samples": "24"})
    caplog.set_level(logging.INFO, logger="dogbreed")
    est.fit({"train": TrainingInput(str(udacity_style / "train"), content_type="application/jpeg"),
             "validation": TrainingInput(str(udacity_style / "valid"), content_type="application/jpeg"),
             "train_lst": TrainingInput(str(train_lst), content_type="application/x-image"),
             "validation_lst": TrainingInput(str(valid_lst), content_type="application/x-image")},
            job_name=f"lst-{style.replace('_', '-')}")
    from dogbreed.jobs import records

    record = records.load(f"lst-{style.replace('_', '-')}")
    assert record.status == "Completed" and record.data["num_classes"] == 3
    expected = "the class folder's number" if style == "folder_numbers" else "0-based class indexes"
    assert expected in caplog.text  # the log says which label mapping was used
    assert record.metrics["validation:accuracy"] >= 0.8


BAD_LINES = [
    ("0\t0\t../outside.jpg", "points outside the image channel"),
    ("0\t0\t001.Shih-Tzu/missing.jpg", "not found"),
    ("0\t7\t{first}", "out of range"),
    ("0\t{first}", "expected 'index<TAB>label<TAB>path'"),
    ("0\tabc\t{first}", "label 'abc' is not a number"),
]


@pytest.mark.parametrize("line, message", BAD_LINES)
def test_bad_lst_lines_are_one_line_errors_or_skipped(udacity_style, tmp_path, line, message):
    from dogbreed.data.layout import discover_dataset

    first = next(p for p in sorted((udacity_style / "train" / "001.Shih-Tzu").iterdir()))
    good = _lst_rows(udacity_style / "train", lambda folder: folder.split(".")[0])
    bad = line.format(first=f"001.Shih-Tzu/{first.name}")
    lst = tmp_path / "train.lst"
    lst.write_text("".join(f"{i}\t{lab}\t{rel}\n" for i, lab, rel in good) + bad + "\n")
    channels = {"train": str(udacity_style / "train"), "validation": str(udacity_style / "valid"),
                "train_lst": str(lst)}
    with pytest.raises(UserError) as e:
        discover_dataset(channels, num_classes=3)
    assert message in str(e.value) and f"{lst}:{len(good) + 1}" in str(e.value) and "\n" not in str(e.value)
    layout = discover_dataset(channels, on_bad_file="skip", num_classes=3)
    assert len(layout.skipped) == 1 and f"{lst}:{len(good) + 1}" in layout.skipped[0]
    assert len(layout.splits["train"].files) == len(good)


def test_recordio_is_refused_naming_the_layouts(udacity_style, tmp_path):
    from dogbreed import Estimator, TrainingInput

    (tmp_path / "train.rec").write_bytes(b"\x00" * 64)
    with pytest.raises(UserError, match="RecordIO .* not supported; use a folder with train/"):
        Estimator().fit({"train": TrainingInput(str(tmp_path / "train.rec"),
                                                content_type="application/x-recordio"),
                         "validation": str(udacity_style / "valid")})


def test_incremental_training_from_model_data(small, udacity_style):
    from dogbreed import Estimator, TrainingInput
    from dogbreed.jobs import records

    first = Estimator(hyperparameters={"epochs": 2})
    first.fit(str(small), job_name="incr-base")
    second = Estimator(hyperparameters={"epochs": 2, "learning_rate": 0.0001})
    second.fit({"train": str(small / "train"), "validation": str(small / "valid"),
                "model": TrainingInput(first.model_data, content_type="application/x-sagemaker-model")},
               job_name="incr-next")
    record = records.load("incr-next")
    assert record.status == "Completed" and record.extra["initial_model"] == first.model_data
    assert "from model" in (records.job_dir("incr-next") / "train.log").read_text()
    assert record.metrics["validation:accuracy"] >= 0.8
    # Other classes than the model's: refused before any work, in one line.
    with pytest.raises(UserError, match="incremental training needs the same classes"):
        Estimator(hyperparameters={"epochs": 1}).fit(
            {"train": str(udacity_style / "train"), "validation": str(udacity_style / "valid"),
             "model": first.model_data}, job_name="incr-bad")


def test_seed_settings_get_preflight_warnings(small):
    """The seed's estimator: image-classification image, num_layers='18', no use_pretrained_model (SageMaker's
    meaning: random initialisation), num_classes '133', and a weight-decay range up to 0.99."""
    from dogbreed import ContinuousParameter, Estimator, HyperparameterTuner, image_uris

    est = Estimator(image_uris.retrieve(region="us-east-1", framework="image-classification", version="1"),
                    "role", instance_count=1, instance_type="ml.p3.2xlarge", output_path="s3://bucket/training-job")
    est.set_hyperparameters(num_layers="18", num_classes="133", num_training_samples="7980", mini_batch_size="16",
                            epochs="1", top_k="2", precision_dtype="float32", augmentation_type="crop")
    hp = est.resolved_hyperparameters()
    assert hp.use_pretrained_model == 0 and hp.backbone_name == "resnet18" and hp.train_mode == "full"
    from dogbreed.data.layout import discover_dataset
    from dogbreed.train.preflight import training_warnings, tuning_warnings

    layout = discover_dataset(str(small))
    warnings = training_warnings(hp, layout)
    assert any(w.startswith("use_pretrained_model=0 trains resnet18 from random weights") for w in warnings)
    assert any("num_classes=133 but the data has 3 classes" in w for w in warnings)
    from dogbreed import CategoricalParameter

    seed_ranges = {"eps": ContinuousParameter(0, 1), "learning_rate": ContinuousParameter(0.001, 0.1),
                   "momentum": ContinuousParameter(0, 1), "optimizer": CategoricalParameter(["adam", "sgd", "rmsprop"]),
                   "weight_decay": ContinuousParameter(0.0, 0.99)}
    tuner = HyperparameterTuner(est, "validation:accuracy", seed_ranges, max_jobs=1)
    config = tuner.tuning_config()  # eps in [0, 1] is accepted as SageMaker documents it
    ranges = tuning_warnings(config.static, list(config.ranges), config.objective_metric, layout)
    assert any("part of the weight_decay range (0 to 0.99) cannot work" in w for w in ranges)
    assert any("eps=0 would divide by zero" in w for w in ranges)
    # The warnings reach the user of the CLI before any compute, and the job record keeps them.
    from conftest import run_cli

    r = run_cli("train", "--data", str(small), "--job-name", "seed-like", "--num_layers", "18",
                "--use_pretrained_model", "0", "--train_mode", "full", "--epochs", "1", "--weight_decay", "0.99",
                "--num_classes", "133")
    assert r.returncode == 0, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("pre-flight:")]
    assert any("from random weights" in ln for ln in lines) and any("weight_decay=0.99" in ln for ln in lines)
    from dogbreed.jobs import records

    assert any("weight_decay=0.99" in w for w in records.load("seed-like").extra["preflight_warnings"])


def test_pretrained_resnet_offline_names_the_offline_backbones(small):
    from dogbreed import Estimator, image_uris

    est = Estimator(image_uris.retrieve("image-classification", "us-east-1"), "role",
                    hyperparameters={"num_layers": 18, "use_pretrained_model": 1})
    with pytest.raises(UserError, match="efficientnet_lite0"):
        est.fit(str(small), job_name="resnet-offline")


def test_max_run_stops_the_job(small):
    from dogbreed import Estimator
    from dogbreed.jobs import records

    est = Estimator(hyperparameters={"epochs": 200, "train_mode": "last_blocks", "trainable_blocks": 1,
                                     "head_epochs": 1}, max_run=3)
    est.fit(str(small), job_name="max-run")
    record = records.load("max-run")
    assert record.status == "Stopped" and record.failure_reason.startswith("MaxRuntimeExceeded")


def test_tuning_job_names_unique_and_short(small):
    from dogbreed import ContinuousParameter, Estimator, HyperparameterTuner, image_uris
    from dogbreed.jobs import records

    est = Estimator(image_uris.retrieve("image-classification", "us-east-1"),
                    hyperparameters={"backbone": "efficientnet_lite0", "use_pretrained_model": 1,
                                     "train_mode": "head", "epochs": 1, "optimizer": "adam"})
    names = []
    for _ in range(3):
        tuner = HyperparameterTuner(est, "validation:accuracy", {"learning_rate": ContinuousParameter(1e-3, 1e-2)},
                                    max_jobs=1)
        tuner.fit(str(small))
        names.append(tuner._current_job_name)
    assert len(set(names)) == 3 and all(len(n) <= 32 for n in names), names
    assert all(records.load(n).status == "Completed" for n in names)


def test_warm_start_attach_analytics_and_logs_from_another_process(small):
    """A warm-started tuning job, then every lookup by name from a fresh Python process (a kernel restart)."""
    from dogbreed import (CategoricalParameter, ContinuousParameter, Estimator, HyperparameterTuner,
                          WarmStartConfig, WarmStartTypes)

    est = Estimator(hyperparameters={"epochs": 2})
    ranges = {"learning_rate": ContinuousParameter(0.001, 0.01), "optimizer": CategoricalParameter(["adam", "sgd"])}
    parent = HyperparameterTuner(est, "validation:accuracy", ranges, max_jobs=2, base_tuning_job_name="parent")
    parent.fit(str(small))
    child = HyperparameterTuner(est, "validation:accuracy", ranges, max_jobs=2, base_tuning_job_name="warmstart",
                                warm_start_config=WarmStartConfig(WarmStartTypes.IDENTICAL_DATA_AND_ALGORITHM,
                                                                  parents={parent._current_job_name}))
    child.fit(str(small))
    r = _run_python(f"""
        import json
        import dogbreed as sagemaker
        from dogbreed import boto3
        from dogbreed.tuner import HyperparameterTuner
        name = "{child._current_job_name}"
        df = sagemaker.HyperparameterTuningJobAnalytics(name).dataframe()
        print("COLUMNS", json.dumps(list(df.columns)))
        print("ROWS", len(df))
        desc = boto3.client("sagemaker").describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)
        print("OVERALL", desc["OverallBestTrainingJob"]["TrainingJobName"])
        tuner = HyperparameterTuner.attach(name)
        print("CURRENT", tuner._current_job_name)
        best = tuner.best_training_job()
        est = sagemaker.estimator.Estimator.attach(best)
        print("MODEL", est.model_data)
        sagemaker.Session().logs_for_job(best)
    """)
    assert r.returncode == 0, r.stderr[-3000:]
    out = r.stdout
    columns = json.loads(next(ln[8:] for ln in out.splitlines() if ln.startswith("COLUMNS")))
    assert columns == ["learning_rate", "optimizer", "TrainingJobName", "TrainingJobStatus", "FinalObjectiveValue",
                       "TrainingStartTime", "TrainingEndTime", "TrainingElapsedTimeSeconds"]
    assert "ROWS 2" in out and f"CURRENT {child._current_job_name}" in out
    overall = next(ln.split()[1] for ln in out.splitlines() if ln.startswith("OVERALL"))
    assert overall.startswith((parent._current_job_name, child._current_job_name))
    assert "MODEL file://" in out and "epoch 2 [head]" in out and "Completed" in out


def test_boto3_shim_errors_have_botocore_shape():
    from botocore.exceptions import ClientError

    from dogbreed import boto3

    with pytest.raises(ClientError) as e:
        boto3.client("sagemaker-runtime").invoke_endpoint(EndpointName="Dog-Classification-Endpoint", Body=b"x",
                                                          ContentType="image/jpeg")
    assert e.value.response["Error"]["Code"] == "ValidationError"
    assert e.value.response["Error"]["Message"] == "Endpoint Dog-Classification-Endpoint of account 000000000000 " \
                                                   "not found."
    with pytest.raises(ClientError) as e:
        boto3.client("sagemaker").describe_training_job(TrainingJobName="no-such-job")
    assert e.value.response["Error"]["Code"] == "ValidationException"
    assert e.value.operation_name == "DescribeTrainingJob"
    with pytest.raises(UserError, match="no 's3' client"):
        boto3.client("s3")

"""The SageMaker-shaped surface beyond the main notebook flow: a freshly fitted estimator's logs and deploy, the
Predictor's SDK defaults, the `dogbreed.boto3` shim's successful answers, hyperparameters as the algorithm takes
them, the pre-flight warnings, and what is accepted and ignored. Real photos, a real endpoint process."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from conftest import SLICE_CLASSES, make_slice, run_cli
from dogbreed.config import UserError

CLASSES = SLICE_CLASSES[:3]


@pytest.fixture(scope="module")
def data3(tmp_path_factory) -> Path:
    """3 breeds x (6 train, 3 valid) real photos, no test/ split."""
    return make_slice(tmp_path_factory.mktemp("surface3"), CLASSES, 6, 3)


def test_fresh_estimator_logs_deploy_predict_boto3_and_delete(data3, caplog, capsys, tmp_path):
    from botocore.exceptions import ClientError

    from dogbreed import Estimator, Predictor, boto3
    from dogbreed.deserializers import BytesDeserializer
    from dogbreed.jobs import endpoint_records, records
    from dogbreed.models.artifact import load_card
    from dogbreed.serializers import IdentitySerializer

    caplog.set_level(logging.INFO, logger="dogbreed")
    # Hyperparameters as the algorithm takes them (strings, image_shape, resize), a mini-batch larger than the
    # training set, counts that disagree with the data; SDK arguments that mean nothing here, and a stray one.
    est = Estimator(hyperparameters={"preset": "fast", "epochs": "1", "image_shape": "3,224,224", "resize": "320",
                                     "mini_batch_size": "64", "num_training_samples": "999", "num_classes": "7"},
                    role="SageMakerRole", instance_type="ml.g5.12xlarge", volume_size=50, input_mode="Pipe",
                    output_path="s3://my-bucket/training-output", not_an_sdk_argument=1)
    assert "ignored keyword argument(s) not_an_sdk_argument" in caplog.text  # said at once, not lost
    est.fit(str(data3))
    name = est.latest_training_job.name
    record = records.load(name)
    assert record.status == "Completed", record.failure_reason
    assert record.data["num_classes"] == 3 and record.data["num_training_samples"] == 18  # the data wins
    warnings = record.extra["preflight_warnings"]
    for start in ("num_classes=7 but the data has 3 classes", "num_training_samples=999 but the training data has 18",
                  "mini_batch_size=64 is larger than the training set (18 images)"):
        assert any(w.startswith(start) for w in warnings), (start, warnings)
        assert f"pre-flight: {start}" in caplog.text
    prep = load_card(records.job_dir(name) / "model").preprocessing
    assert prep.input_size == 224 and prep.resize_size == 320
    # The instance type is mapped to this machine's device, and that is said once however often it is mapped.
    est.training_spec(str(data3))
    assert caplog.text.count("instance_type ml.g5.12xlarge runs here on") == 1

    capsys.readouterr()
    est.logs()
    out = capsys.readouterr().out
    assert f"Starting - training job {name}" in out and "pre-flight: num_classes=7" in out
    assert "Completed" in out and "Training seconds:" in out

    sm = boto3.client("sagemaker")
    d = sm.describe_training_job(TrainingJobName=name)
    assert d["TrainingJobStatus"] == "Completed" and d["ModelArtifacts"]["S3ModelArtifacts"] == est.model_data
    assert d["OutputDataConfig"]["S3OutputPath"] == "s3://my-bucket/training-output"  # kept in the record
    assert d["ResourceConfig"] == {"InstanceType": "ml.g5.12xlarge", "InstanceCount": 1, "VolumeSizeInGB": 50}
    assert d["AlgorithmSpecification"]["TrainingInputMode"] == "Pipe"
    assert d["HyperParameters"]["image_shape"] == "3,224,224"
    meta = d["ResponseMetadata"]
    assert meta["HTTPStatusCode"] == 200 and meta["RetryAttempts"] == 0
    assert meta["RequestId"] == meta["HTTPHeaders"]["x-amzn-requestid"]
    assert [j["TrainingJobName"] for j in sm.list_training_jobs(NameContains=name)["TrainingJobSummaries"]] == [name]
    tuning = sm.list_hyper_parameter_tuning_jobs(MaxResults=5)
    assert isinstance(tuning["HyperParameterTuningJobSummaries"], list) and tuning["ResponseMetadata"]

    photo_class = 1
    jpeg = sorted((data3 / "valid" / CLASSES[photo_class]).iterdir())[0].read_bytes()
    predictor = est.deploy(initial_instance_count=1, instance_type="ml.m5.large", endpoint_name="surface-ep")
    try:
        assert isinstance(predictor, Predictor) and predictor.endpoint_name == "surface-ep"
        assert type(predictor.serializer) is IdentitySerializer and predictor.content_type == "application/octet-stream"
        assert isinstance(predictor.deserializer, BytesDeserializer)
        predictor.serializer = IdentitySerializer("image/jpeg")
        probs = json.loads(predictor.predict(jpeg))  # the algorithm's answer: every class's probability
        assert len(probs) == 3 and sum(probs) == pytest.approx(1, abs=1e-3)
        assert int(np.argmax(probs)) == photo_class
        again = json.loads(predictor.predict(bytearray(jpeg), initial_args={"ContentType": "application/x-image"}))
        assert np.allclose(again, probs, atol=1e-6)

        e = sm.describe_endpoint(EndpointName="surface-ep")
        assert e["EndpointStatus"] == "InService" and e["ResponseMetadata"]["HTTPStatusCode"] == 200
        assert "surface-ep" in [x["EndpointName"] for x in sm.list_endpoints()["Endpoints"]]
        out = boto3.client("sagemaker-runtime").invoke_endpoint(EndpointName="surface-ep", Body=jpeg,
                                                                 ContentType="image/jpeg", Accept="application/json")
        assert out["ContentType"] == "application/json" and out["ResponseMetadata"]["HTTPStatusCode"] == 200
        assert np.allclose(json.loads(out["Body"].read()), probs, atol=1e-6)  # a streaming body, read once

        # The endpoint's log exported through the CLI, as the seed exported its CloudWatch logs.
        r = run_cli("logs", "export", "surface-ep", str(tmp_path / "exported"))
        assert r.returncode == 0, r.stderr[-2000:]
        files = {p.name for p in (tmp_path / "exported" / "surface-ep").rglob("*") if p.is_file()}
        assert "endpoint.log" in files and "serve.json" not in files, files

        predictor.delete_endpoint()
        assert not endpoint_records.exists("surface-ep")
        with pytest.raises(ClientError) as gone:
            sm.describe_endpoint(EndpointName="surface-ep")
        assert gone.value.response["Error"]["Code"] == "ValidationException"
    finally:
        if endpoint_records.exists("surface-ep"):
            endpoint_records.delete("surface-ep")


def test_hyperparameter_mistakes_fail_before_any_training(data3):
    import time

    from dogbreed import Estimator
    from dogbreed.jobs import records

    t0 = time.perf_counter()
    with pytest.raises(UserError) as e:
        Estimator(hyperparameters={"num_layers": 34, "use_pretrained_model": 1}).fit(str(data3),
                                                                                   job_name="resnet34-offline")
    message = str(e.value)
    assert "resnet34" in message and "efficientnet_lite0" in message and "\n" not in message
    assert time.perf_counter() - t0 < 120 and not records.exists("resnet34-offline")
    with pytest.raises(UserError, match=r"resize=100 must be at least the input size 224 \(image_shape\)"):
        Estimator(hyperparameters={"preset": "fast", "image_shape": "3,224,224", "resize": 100}).fit(
            str(data3), job_name="resize-too-small")
    with pytest.raises(UserError, match="image_shape='3,224' must look like '3,224,224'"):
        Estimator(hyperparameters={"image_shape": "3,224"}).fit(str(data3), job_name="shape-typo")
    assert not records.exists("resize-too-small") and not records.exists("shape-typo")


def test_preflight_learning_rates_and_an_objective_never_logged(data3, caplog):
    from dogbreed import ContinuousParameter, Estimator, HyperparameterTuner
    from dogbreed.data.layout import discover_dataset
    from dogbreed.train.preflight import tuning_warnings

    caplog.set_level(logging.INFO, logger="dogbreed")
    high = Estimator(hyperparameters={"preset": "fast", "learning_rate": "5", "optimizer": "adam"}).preflight(
        str(data3))
    assert any(w.startswith("learning_rate=5 is very high for optimizer=adam") for w in high), high
    assert "pre-flight: learning_rate=5 is very high" in caplog.text  # said to the user, not only returned
    low = Estimator(hyperparameters={"preset": "fast", "learning_rate": 1e-9}).preflight(str(data3))
    assert any(w.startswith("learning_rate=1e-09 is so small") for w in low), low
    fine = Estimator(hyperparameters={"preset": "fast", "learning_rate": 0.5, "optimizer": "sgd"}).preflight(
        str(data3))
    assert not any(w.startswith("learning_rate=") for w in fine), fine

    est = Estimator(hyperparameters={"preset": "fast", "optimizer": "adam"})
    tuner = HyperparameterTuner(est, "test:accuracy", {"learning_rate": ContinuousParameter(1e-4, 0.5)}, max_jobs=2)
    config = tuner.tuning_config()
    warnings = tuning_warnings(config.static, list(config.ranges), config.objective_metric,
                               discover_dataset(str(data3)))
    assert any(w.startswith("objective test:accuracy is never logged: the data has no test split") for w in warnings)
    assert any(w.startswith("part of the learning_rate range (0.0001 to 0.5) cannot work") for w in warnings)


def test_accepted_and_ignored_names_and_ranges():
    from dogbreed import CategoricalParameter, ContinuousParameter, Estimator, HyperparameterTuner, IntegerParameter
    from dogbreed.pytorch import PyTorch

    # The seed imports PyTorch: it constructs with the SDK's arguments; script mode itself is refused clearly.
    torch_est = PyTorch(entry_point="train.py", framework_version="1.8", py_version="py36", role="role",
                        instance_count=1, instance_type="ml.m5.large", hyperparameters={"epochs": 2})
    with pytest.raises(UserError, match=r"script mode \(train.py\) is not supported"):
        torch_est.fit({"training": "s3://bucket/data"})

    ranges = {"mini_batch_size": IntegerParameter(16, 64, scaling_type="Auto"),
              "learning_rate": ContinuousParameter(1e-4, 1e-1, scaling_type="Auto"),
              "optimizer": CategoricalParameter(["sgd", "adam"])}
    tuner = HyperparameterTuner(Estimator(hyperparameters={"preset": "fast"}), "validation:accuracy", ranges,
                                max_jobs=3)
    assert tuner.hyperparameter_ranges()["IntegerParameterRanges"] == [
        {"Name": "mini_batch_size", "MinValue": "16", "MaxValue": "64", "ScalingType": "Auto"}]
    by_name = {r.name: r for r in tuner.tuning_config().ranges}
    assert by_name["mini_batch_size"].type == "Integer" and (by_name["mini_batch_size"].min,
                                                             by_name["mini_batch_size"].max) == (16, 64)
    # SageMaker's Auto: logarithmic over three orders of magnitude, linear over a narrow integer range.
    assert by_name["learning_rate"].effective_scaling() == "Logarithmic"
    assert by_name["mini_batch_size"].effective_scaling() == "Linear"
    with pytest.raises(ValueError, match="scaling_type must be one of"):
        IntegerParameter(1, 2, scaling_type="Exponential")


def test_what_is_ignored_is_said_in_a_plain_script():
    """No logging set up (a script, a fresh kernel): the constructor's notes reach stderr, once each."""
    import os
    import subprocess
    import sys

    code = ("from dogbreed import Estimator\n"
            "for _ in range(2):\n"
            "    Estimator(role='SageMakerRole', instance_type='ml.c5.xlarge', not_an_sdk_argument=1, volume_size=5)"
            ".training_spec('data')\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                       env=os.environ.copy())
    assert r.returncode == 0, r.stderr[-2000:]
    for said in ("Estimator: ignored keyword argument(s) not_an_sdk_argument", "role: accepted and ignored",
                 "instance_type ml.c5.xlarge runs here on cpu"):
        assert r.stderr.count(said) == 1, (said, r.stderr)

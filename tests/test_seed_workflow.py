"""The acceptance of the seed-notebook issue: the seed's workflow, call by call with its keywords and values, runs on
dogbreed with only its imports changed and the AWS-only set-up replaced (no data download: a local folder in the
seed's `dogImages` layout; epochs and max_jobs smaller). Run as two Python processes, as the seed ran its cells
across kernel restarts: the tuning job in one, then analytics, logs, attach, deploy and boto3 in another, found by
name. The code is this project's own, written against the calls the seed makes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import SLICE_CLASSES, make_slice

BREEDS = SLICE_CLASSES[:3]


@pytest.fixture(scope="module")
def dog_images(tmp_path_factory) -> Path:
    """`dogImages/{train,valid,test}/001.Shih-Tzu/Shih-Tzu_00001.jpg`: Udacity's layout and file names (links)."""
    src = make_slice(tmp_path_factory.mktemp("seed-src"), BREEDS, 6, 3, 2)
    root = tmp_path_factory.mktemp("seed") / "dogImages"
    for split in ("train", "valid", "test"):
        for i, folder in enumerate(BREEDS, start=1):
            breed = folder.split("-", 1)[1]
            d = root / split / f"{i:03d}.{breed}"
            d.mkdir(parents=True)
            for n, f in enumerate(sorted((src / split / folder).iterdir()), start=1):
                (d / f"{breed}_{n:05d}.jpg").symlink_to(f.resolve())
    return root


def _cell(code: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=900, cwd=cwd, env=os.environ.copy())


def test_the_seed_workflow_runs_with_only_its_imports_changed(dog_images):
    work = dog_images.parent
    tuning = _cell("""
        import os
        import pandas as pd
        from PIL import Image

        import dogbreed as sagemaker                      # import sagemaker
        from dogbreed import boto3                        # import boto3
        from dogbreed import get_execution_role
        from dogbreed.pytorch import PyTorch
        from dogbreed.tuner import IntegerParameter, CategoricalParameter, ContinuousParameter, HyperparameterTuner
        from dogbreed.debugger import Rule, DebuggerHookConfig
        from dogbreed.image_uris import retrieve

        sizes = [Image.open(os.path.join(p, f)).size for p, _, fs in os.walk("dogImages/train") for f in fs]
        print("largest side", max(max(s) for s in sizes))

        sagemaker_session = sagemaker.Session()
        inputs = sagemaker_session.upload_data(path="dogImages", bucket="dog-images-uploaded-from-sagemaker",
                                               key_prefix="data")
        sess = sagemaker.Session()
        role = get_execution_role()
        imageclassification = sagemaker.estimator.Estimator(
            retrieve(region=sess.boto_region_name, framework="image-classification", version="1"), role,
            instance_count=1, instance_type="ml.p3.2xlarge",
            output_path="s3://dog-images-uploaded-from-sagemaker/training-job", sagemaker_session=sess)
        imageclassification.set_hyperparameters(num_layers="18", num_classes="133", num_training_samples="7980",
                                                mini_batch_size="128", epochs="1", top_k="2",
                                                precision_dtype="float32", augmentation_type="crop")
        hyperparameters_ranges = {"eps": ContinuousParameter(0, 1), "learning_rate": ContinuousParameter(0.001, 0.1),
                                  "momentum": ContinuousParameter(0, 1),
                                  "optimizer": CategoricalParameter(["adam", "sgd", "rmsprop"]),
                                  "weight_decay": ContinuousParameter(0.0, 0.99)}
        objective_metric_name = "validation:accuracy"
        objective_type = "Maximize"
        tuner = HyperparameterTuner(estimator=imageclassification, objective_metric_name=objective_metric_name,
                                    hyperparameter_ranges=hyperparameters_ranges, max_jobs=2, max_parallel_jobs=1,
                                    objective_type=objective_type)

        # .lst manifests as the seed writes them: index, the folder's number ("001"), the path below the split
        def write_lst(split):
            rows = []
            for root, dirs, files in os.walk("dogImages/" + split):
                for file in files:
                    folder = os.path.basename(root)
                    rows.append([folder.split(".")[0], folder + "/" + file])
            pd.DataFrame(rows, columns=["class", "img_path"]).to_csv(f"dogImages/{split}.lst", sep="\\t",
                                                                     index=True, header=False)

        write_lst("train")
        write_lst("valid")
        train_lst = sagemaker_session.upload_data("dogImages/train.lst", bucket="dog-images-uploaded-from-sagemaker",
                                                  key_prefix="data/lst_files",
                                                  extra_args={"ContentType": "application/x-image"})
        valid_lst = sagemaker_session.upload_data("dogImages/valid.lst", bucket="dog-images-uploaded-from-sagemaker",
                                                  key_prefix="data/lst_files",
                                                  extra_args={"ContentType": "application/x-image"})
        s3_input_train = sagemaker.inputs.TrainingInput(s3_data=inputs + "/train", content_type="application/jpeg")
        s3_input_validation = sagemaker.inputs.TrainingInput(s3_data=inputs + "/valid",
                                                             content_type="application/jpeg")
        train_lst = sagemaker.inputs.TrainingInput(s3_data=train_lst, content_type="application/x-image")
        valid_lst = sagemaker.inputs.TrainingInput(s3_data=valid_lst, content_type="application/x-image")
        channels = {"train": s3_input_train, "validation": s3_input_validation, "train_lst": train_lst,
                    "validation_lst": valid_lst}
        tuner.fit(channels, include_cls_metadata=False, wait=True, job_name="hyperparameters-tuning-job-33", log=True)
        print("BEST", tuner.best_training_job())
        """, work)
    assert tuning.returncode == 0, tuning.stderr[-3000:]
    assert "Traceback" not in tuning.stderr
    best = tuning.stdout.split("BEST ")[-1].strip()
    assert best.startswith("hyperparameters-tuning-job-33-")
    # what dogbreed said before spending compute on the seed's settings
    assert "pre-flight: use_pretrained_model=0 trains resnet18 from random weights" in tuning.stderr
    assert "weight_decay range (0 to 0.99) cannot work" in tuning.stderr
    assert "num_classes=133 but the data has 3 classes" in tuning.stderr

    after_restart = _cell(f"""
        import io, json, os
        from PIL import Image
        import dogbreed as sagemaker
        from dogbreed import boto3

        tuning_job_name = "hyperparameters-tuning-job-33"
        tuner_parent_metrics = sagemaker.HyperparameterTuningJobAnalytics(tuning_job_name)
        if not tuner_parent_metrics.dataframe().empty:
            df_parent = tuner_parent_metrics.dataframe().sort_values(["FinalObjectiveValue"], ascending=False)
        print("COLUMNS", json.dumps(list(df_parent.columns)), len(df_parent))
        sagemaker.Session().logs_for_job("{best}")
        attached_estimator = sagemaker.estimator.Estimator.attach("{best}")
        predictor = attached_estimator.deploy(initial_instance_count=1, instance_type="ml.m5.large",
                                              endpoint_name="Dog-Classification-Endpoint", use_compiled_model=False,
                                              wait=True)
        try:
            answers = 0
            for (root, dirs, files) in os.walk("dogImages/test"):
                for file in files:
                    path = root + os.path.dirname(file) + "/" + file
                    with open(path, "rb") as f:
                        image = Image.open(f)
                        with io.BytesIO() as output:
                            image.save(output, format="JPEG")
                            image_bytes = output.getvalue()
                            response = boto3.client("sagemaker-runtime").invoke_endpoint(
                                EndpointName="Dog-Classification-Endpoint", Body=image_bytes,
                                ContentType="image/jpeg", Accept="application/json")
                            probabilities = json.loads(response["Body"].read())
                            assert len(probabilities) == 3 and abs(sum(probabilities) - 1) < 1e-3, probabilities
                            answers += 1
            print("ANSWERS", answers)
        finally:
            predictor.delete_endpoint()
        """, work)
    assert after_restart.returncode == 0, after_restart.stderr[-3000:]
    columns = json.loads(after_restart.stdout.split("COLUMNS ")[1].split("\n")[0].rsplit(" ", 1)[0])
    assert {"eps", "learning_rate", "momentum", "optimizer", "weight_decay", "TrainingJobName",
            "TrainingJobStatus", "FinalObjectiveValue", "TrainingStartTime", "TrainingEndTime",
            "TrainingElapsedTimeSeconds"} <= set(columns)
    assert f"training job {best}" in after_restart.stdout  # the best job's log, found by name
    assert "ANSWERS 6" in after_restart.stdout  # every test photo answered through boto3

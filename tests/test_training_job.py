"""Training jobs on real photos (a 5-breed slice of ../shared), run the way users run them."""

import json

import pytest
from safetensors.torch import load_file

from conftest import make_slice, run_cli, SLICE_CLASSES
from dogbreed.config import Hyperparameters, UserError
from dogbreed.jobs import records
from dogbreed.train.job import TrainingJobSpec, run_training_job


def test_default_recipe_learns_real_breeds(dogs_slice):
    rec = run_training_job(TrainingJobSpec("default-5", str(dogs_slice), Hyperparameters(epochs=15),
                                           progress=False))
    assert rec.status == "Completed", rec.failure_reason
    # 5 breeds: chance is 20%. ImageNet-initialised head on real photos does far better.
    assert rec.metrics["validation:accuracy"] >= 0.8
    assert rec.metrics["test:accuracy"] >= 0.8
    assert len(rec.history) == 15 and {"train:loss", "validation:top_k_accuracy"} <= set(rec.history[0])
    d = records.job_dir("default-5")
    state = load_file(str(d / "model" / "model.safetensors"))
    assert state["classifier.weight"].shape[0] == 5
    card = json.loads((d / "model" / "model.json").read_text())
    assert card["class_labels"] == ["Shih-Tzu", "beagle", "golden retriever", "German shepherd", "pug"]
    for f in ("test_confusion_matrix.csv", "test_confusion_matrix.png", "test_per_class_accuracy.csv",
              "test_most_confused.csv"):
        assert (d / "evaluation" / f).exists()
    assert "training job default-5 Completed" in (d / "train.log").read_text()


def test_head_learns_from_scratch_without_imagenet_rows(dogs_slice):
    # Without the ImageNet head rows the head starts at zero: accuracy must come from training itself.
    hp = Hyperparameters(epochs=15, imagenet_head_init=False, learning_rate=0.01)
    rec = run_training_job(TrainingJobSpec("scratch-head", str(dogs_slice), hp, progress=False))
    assert rec.status == "Completed", rec.failure_reason
    assert rec.history[0]["train:loss"] > rec.history[-1]["train:loss"]
    assert rec.metrics["validation:accuracy"] >= 0.8


def test_job_is_tracked_in_mlflow(dogs_slice):
    from mlflow.tracking import MlflowClient

    from dogbreed.config import tracking_uri

    rec = run_training_job(TrainingJobSpec("tracked", str(dogs_slice), Hyperparameters(epochs=3), progress=False))
    run = MlflowClient(tracking_uri()).get_run(rec.mlflow_run_id)
    assert run.info.status == "FINISHED" and run.data.tags["dogbreed.status"] == "Completed"
    assert run.data.params["optimizer"] == "adamw"
    assert "validation:accuracy" in run.data.metrics and "test:accuracy" in run.data.metrics
    history = MlflowClient(tracking_uri()).get_metric_history(rec.mlflow_run_id, "validation:accuracy")
    assert len(history) >= 3
    artifacts = {a.path for a in MlflowClient(tracking_uri()).list_artifacts(rec.mlflow_run_id)}
    assert {"model", "train.log", "job.json"} <= artifacts
    # The data is a dataset input of the run; class and sample counts are parameters, not metrics.
    inputs = {d.tags[0].value: d.dataset.name for d in run.inputs.dataset_inputs}
    assert inputs["training"].endswith("/train") and inputs["validation"].endswith("/valid")
    assert run.data.params["num_classes"] == "5" and "num_classes" not in run.data.metrics


def test_fine_tuning_last_blocks_on_images(dogs_slice):
    hp = Hyperparameters(train_mode="last_blocks", trainable_blocks=1, head_epochs=5, epochs=1,
                         mini_batch_size=16, learning_rate=1e-4)
    rec = run_training_job(TrainingJobSpec("finetune-5", str(dogs_slice), hp, progress=False))
    assert rec.status == "Completed", rec.failure_reason
    assert [h["stage"] for h in rec.history] == ["head"] * 5 + ["finetune"]
    assert rec.metrics["validation:accuracy"] >= 0.8
    assert 0.0 <= rec.metrics["data_wait_share"] < 1.0


def test_bad_files_fail_the_job_unless_skipped(tmp_path):
    root = make_slice(tmp_path / "d", SLICE_CLASSES[:2], 6, 3)
    (root / "train" / SLICE_CLASSES[0] / "broken.jpg").write_bytes(b"")
    rec = run_training_job(TrainingJobSpec("bad-files", str(root), Hyperparameters(epochs=2), progress=False))
    assert rec.status == "Failed" and "zero-byte file" in rec.failure_reason
    assert "--on-bad-file skip" in rec.failure_reason
    with pytest.raises(UserError, match="job name 'bad-files' is already used"):
        run_training_job(TrainingJobSpec("bad-files", str(root), Hyperparameters(epochs=2), progress=False))
    rec = run_training_job(TrainingJobSpec("skip-files", str(root), Hyperparameters(epochs=2),
                                           on_bad_file="skip", progress=False))
    assert rec.status == "Completed" and rec.data["skipped_files"] == 1
    assert "skipped train/" in (records.job_dir("skip-files") / "train.log").read_text()


def test_classes_differing_between_splits_fail(tmp_path):
    root = make_slice(tmp_path / "d", SLICE_CLASSES[:2], 4, 2)
    make_slice(tmp_path / "d", SLICE_CLASSES[2:3], 4, 0)
    (root / "valid" / SLICE_CLASSES[2]).mkdir(exist_ok=True)
    rec = run_training_job(TrainingJobSpec("differ", str(root), Hyperparameters(epochs=1), progress=False))
    assert rec.status == "Failed" and "classes differ between splits" in rec.failure_reason


def test_cli_train_list_describe_logs_evaluate(dogs_slice):
    r = run_cli("train", "--data", str(dogs_slice), "--job-name", "cli-job", "--epochs", "4",
                "--optimizer", "sgd", "--learning_rate", "0.05", "--json")
    assert r.returncode == 0, r.stderr
    rec = json.loads(r.stdout)
    assert rec["status"] == "Completed" and rec["hyperparameters"]["optimizer"] == "sgd"
    listed = json.loads(run_cli("jobs", "list", "--json").stdout)
    assert "cli-job" in {j["name"] for j in listed}
    described = run_cli("jobs", "describe", "cli-job")
    assert "status:          Completed" in described.stdout
    assert "training job cli-job Completed" in run_cli("logs", "cli-job").stdout
    assert "training job cli-job Completed" in run_cli("logs", "cli-job", "--follow").stdout
    ev = run_cli("evaluate", "--job", "cli-job", "--data", str(dogs_slice), "--split", "test", "--json")
    assert ev.returncode == 0, ev.stderr
    # Evaluating the saved model from images gives the job's own test accuracy.
    assert json.loads(ev.stdout)["accuracy"] == pytest.approx(rec["metrics"]["test:accuracy"], abs=1e-6)


@pytest.mark.parametrize("args, message", [
    (["--data", "/nonexistent/dogs"], "data folder not found"),
    (["--backbone", "nonet"], "unknown backbone 'nonet'"),
    (["--optimizer", "lion"], "optimizer='lion' is not one of"),
    (["--learning_rate", "0"], "learning_rate=0.0 is out of range"),
    (["--mini_batch_size", "0"], "mini_batch_size=0 is out of range"),
    (["--momentum", "2"], "momentum=2.0 is out of range"),
    (["--colour", "red"], "unknown option --colour"),
    (["--num_layers", "18"], "pretrained weights for 'resnet18' are not available offline"),
])
def test_cli_bad_input_is_one_line_and_nonzero(dogs_slice, args, message):
    base = ["train", "--job-name", "never", "--data", str(dogs_slice)]
    r = run_cli(*base, *args)
    assert r.returncode == 2
    assert message in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_cli_used_job_name_and_missing_split(dogs_slice, tmp_path):
    r = run_cli("train", "--data", str(dogs_slice), "--job-name", "cli-job")
    # cli-job may not exist yet if this test runs alone: create it first then.
    if r.returncode == 0:
        r = run_cli("train", "--data", str(dogs_slice), "--job-name", "cli-job")
    assert r.returncode == 2 and "already used" in r.stderr
    (tmp_path / "train" / "a").mkdir(parents=True)
    (tmp_path / "valid" / "a").mkdir(parents=True)
    r = run_cli("train", "--data", str(tmp_path), "--job-name", "empty")
    assert r.returncode == 2 and "has no images" in r.stderr and "Traceback" not in r.stderr


def test_data_check_cli(dogs_slice, tmp_path):
    r = run_cli("data", "check", str(dogs_slice), "--json")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["ok"] and rep["counts"]["train"]["n02086240-Shih-Tzu"] == 12
    root = make_slice(tmp_path / "d", SLICE_CLASSES[:2], 3, 2)
    (root / "valid" / SLICE_CLASSES[0] / "z.jpg").write_bytes(b"")
    r = run_cli("data", "check", str(root))
    assert r.returncode == 1 and "zero-byte file" in r.stdout


def test_ctrl_c_stops_a_job_cleanly(dogs_slice, dogbreed_home):
    import signal
    import subprocess
    import sys
    import time

    proc = subprocess.Popen([sys.executable, "-m", "dogbreed.cli", "train", "--data", str(dogs_slice), "--job-name",
                             "interrupted", "--epochs", "100000"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    log = dogbreed_home / "jobs" / "interrupted" / "train.log"
    deadline = time.time() + 120
    while time.time() < deadline and not (log.exists() and "epoch 3 [head]" in log.read_text()):
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err
    rec = records.load("interrupted")
    assert rec.status == "Stopped" and "interrupt" in rec.failure_reason and rec.end_time
    assert len(rec.history) >= 3  # finished epochs are kept


def test_malformed_exif_is_a_bad_file_everywhere(tmp_path):
    """A real photo with an EXIF block Pillow cannot rewrite: listed by `data check`, skipped with
    --on-bad-file skip, never a crash."""
    from test_robustness import BROKEN_EXIF, jpeg_with_exif

    root = make_slice(tmp_path / "exif", SLICE_CLASSES[:2], 6, 3)
    photo = sorted((root / "train" / SLICE_CLASSES[0]).iterdir())[0].read_bytes()
    (root / "train" / SLICE_CLASSES[0] / "exif.jpg").write_bytes(jpeg_with_exif(photo, BROKEN_EXIF))
    r = run_cli("data", "check", str(root), "--json")
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    bad = json.loads(r.stdout)["bad_files"]
    assert [b["path"].split("/")[-1] for b in bad] == ["exif.jpg"] and "unreadable image" in bad[0]["reason"]
    rec = run_training_job(TrainingJobSpec("exif-skip", str(root), Hyperparameters(epochs=1), on_bad_file="skip",
                                           progress=False))
    assert rec.status == "Completed" and rec.data["skipped_files"] == 1

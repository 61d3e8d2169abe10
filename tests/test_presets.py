"""Quality presets, calibrated probabilities and the not-a-dog decision, on real photos.

The non-dog photos are the real ones scikit-image ships (a person, a cat, a cup of coffee, a rocket, a motorcycle);
the dog photos are the shared Stanford photos, of all 120 breeds, none of them seen in training.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import SHARED_DOGS, run_cli
from dogbreed.config import PRESET_NAMES, PRESETS, Hyperparameters, UserError
from dogbreed.jobs.records import job_dir
from dogbreed.models.artifact import load_card
from dogbreed.train.calibration import expected_calibration_error, fit_temperature, view_probabilities
from dogbreed.train.holdout import holdout_mask
from dogbreed.train.job import TrainingJobSpec, run_training_job

NON_DOGS = ("astronaut", "chelsea", "coffee", "rocket", "motorcycle_left")


def non_dog_photos(folder: Path) -> list[Path]:
    import skimage.data

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for name in NON_DOGS:
        array = skimage.data.stereo_motorcycle()[0] if name == "motorcycle_left" else getattr(skimage.data, name)()
        path = folder / f"{name}.jpg"
        Image.fromarray(array).convert("RGB").save(path, quality=92)
        out.append(path)
    return out


def dog_photos(per_breed: int = 2) -> list[Path]:
    """Photos of every breed from valid/ (the slice's classes included, its photos not)."""
    return [p for d in sorted((SHARED_DOGS / "valid").iterdir()) for p in sorted(d.iterdir())[-per_breed:]]


@pytest.fixture(scope="module")
def preset_jobs(dogs_slice):
    jobs = {}
    for preset in PRESET_NAMES:
        rec = run_training_job(TrainingJobSpec(f"preset-{preset}", str(dogs_slice),
                                               Hyperparameters(preset=preset, epochs=5), progress=False,
                                               track=False))
        assert rec.status == "Completed", rec.failure_reason
        jobs[preset] = rec
    return jobs


@pytest.mark.slow
@pytest.mark.parametrize("preset", PRESET_NAMES)
def test_each_preset_learns_real_breeds_and_records_its_recipe(preset_jobs, preset):
    rec = preset_jobs[preset]
    # 5 breeds: chance is 20%
    assert rec.metrics["validation:accuracy"] >= 0.8 and rec.metrics["test:accuracy"] >= 0.8
    card = load_card(job_dir(rec.name) / "model")
    assert card.preset == preset and card.backbone == PRESETS[preset]["backbone"]
    assert card.test_time_flip == PRESETS[preset]["test_time_flip"]
    assert card.calibration["holdout_photos"] >= 5 and 0.05 <= card.temperature <= 20.0
    assert card.not_a_dog["threshold"] > 0 and card.uncertain_below > 0
    for split in ("holdout", "validation", "test"):
        assert f"{split}:ece" in rec.metrics and f"{split}:ece_uncalibrated" in rec.metrics


@pytest.mark.slow
def test_last_block_fine_tuned_on_cached_activations(dogs_slice, tmp_path):
    """Not a preset's default (it did not pay on the held-out screen), but a hyperparameter: the last block trains
    on its cached input, and the dog score keeps reading a frozen copy of the original layers."""
    from dogbreed.serve.api import BreedClassifierAPI

    hp = Hyperparameters(preset="balanced", epochs=3, last_block_epochs=1)
    rec = run_training_job(TrainingJobSpec("last-block", str(dogs_slice), hp, progress=False, track=False))
    assert rec.status == "Completed", rec.failure_reason
    assert [h["stage"] for h in rec.history] == ["head"] * 3 + ["last_block"]
    assert rec.metrics["validation:accuracy"] >= 0.8
    api = BreedClassifierAPI(job_dir(rec.name) / "model", backend="onnx").setup()
    cat = non_dog_photos(tmp_path)[1]
    assert api.judge(api.predict([api.decode(cat.read_bytes())])[0])["dog"] is False


@pytest.mark.slow
def test_calibration_lowers_ece_on_held_out_photos(preset_jobs):
    """The slice's test/ photos were never used for anything; label smoothing leaves the raw head underconfident
    and the temperature fitted on the held-out part of train/ corrects that."""
    for rec in preset_jobs.values():
        assert rec.metrics["test:ece"] < rec.metrics["test:ece_uncalibrated"], rec.metrics


def test_temperature_scaling_recovers_a_known_temperature():
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 10, (2000,), generator=g)
    true_logits = torch.randn(2000, 10, generator=g) * 2
    true_logits[torch.arange(2000), labels] += 2.5
    # Labels drawn from softmax(true_logits); the model reports logits twice too sharp.
    labels = torch.multinomial(true_logits.softmax(-1), 1, generator=g).squeeze(1)
    overconfident = (true_logits * 2)[:, None]
    t = fit_temperature(overconfident, labels)
    assert 1.7 < t < 2.3
    before = expected_calibration_error(view_probabilities(overconfident, 1.0), labels)
    after = expected_calibration_error(view_probabilities(overconfident, t), labels)
    assert after < before / 2


def test_holdout_is_stratified_and_stable():
    labels = np.repeat(np.arange(4), [10, 20, 3, 1])
    mask = holdout_mask(labels, 0.2, seed=3)
    assert [int(mask[labels == c].sum()) for c in range(4)] == [2, 4, 1, 0]
    assert (mask == holdout_mask(labels, 0.2, seed=3)).all() and not holdout_mask(labels, 0.0).any()


@pytest.mark.slow
def test_not_a_dog_rejects_package_photos_and_keeps_real_dogs(preset_jobs, tmp_path):
    from dogbreed.serve.api import BreedClassifierAPI

    rec = preset_jobs["balanced"]
    api = BreedClassifierAPI(job_dir(rec.name) / "model", backend="torch").setup()
    non_dogs = non_dog_photos(tmp_path / "not-dogs")
    judged = {p.stem: api.judge(api.predict([api.decode(p.read_bytes())])[0]) for p in non_dogs}
    assert all(j["dog"] is False for j in judged.values()), judged
    dogs = dog_photos()
    rows = np.concatenate([api.predict([api.decode(p.read_bytes()) for p in dogs[i:i + 32]])
                           for i in range(0, len(dogs), 32)])
    rejected = [p.name for p, r in zip(dogs, rows) if not api.judge(r)["dog"]]
    assert len(rejected) <= 0.02 * len(dogs), rejected


@pytest.mark.slow
def test_predict_cli_says_no_dog_found(preset_jobs, tmp_path, dog_photo):
    from dogbreed.jobs.model_registry import register_job

    register_job(preset_jobs["fast"].name, "presets-fast")
    cat = non_dog_photos(tmp_path / "nd")[1]
    r = run_cli("predict", str(cat), str(dog_photo), "--model", "presets-fast:1")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert "chelsea.jpg: no dog found (dog score" in lines[0] and "no dog found" not in lines[1]
    r = run_cli("predict", str(cat), "--model", "presets-fast:1", "--json")
    answer = json.loads(r.stdout)[0]
    assert answer["dog"] is False and answer["dog_score"] < answer["dog_threshold"]


def test_preset_is_a_hyperparameter_everywhere(tmp_path):
    from dogbreed import Estimator
    from dogbreed.tune.config import parse_tuning_config

    assert Hyperparameters().preset == "balanced"
    assert Hyperparameters.from_mapping({"preset": "fast"}).backbone_name == "efficientnet_lite0"
    # An explicit value wins over the preset's.
    hp = Hyperparameters.from_mapping({"preset": "fast", "backbone": "efficientnet_lite1", "test_time_flip": "0"})
    assert hp.backbone_name == "efficientnet_lite1" and hp.use_flip is False
    with pytest.raises(UserError, match="preset='turbo' is not one of: fast, balanced, best"):
        Hyperparameters.from_mapping({"preset": "turbo"})
    est = Estimator("dogbreed", "role", instance_count=1, instance_type="local", hyperparameters={"preset": "best"})
    assert est.resolved_hyperparameters().preset == "best"
    config = parse_tuning_config({"static_hyperparameters": {"preset": "fast"},
                                  "hyperparameter_ranges": {"head_anchor": {"type": "Continuous", "min": 0,
                                                                            "max": 1}}})
    assert config.static["preset"] == "fast"
    r = run_cli("train", "--help")
    assert "--preset" in r.stdout and "fast, balanced, best" in r.stdout
    r = run_cli("train", "--data", str(tmp_path), "--job-name", "x", "--preset", "turbo")
    assert r.returncode != 0 and "preset='turbo' is not one of" in r.stderr and "Traceback" not in r.stderr

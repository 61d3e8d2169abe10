"""Damaged model files: a one-line error naming the file, never a traceback and never a silent deploy; a damaged
local copy of a registered model heals from the registry."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from conftest import run_cli
from dogbreed.jobs.model_registry import local_model_dir
from dogbreed.models.artifact import CARD, WEIGHTS, load_model, save_model


def _one_line_error(r, *messages: str) -> None:
    assert r.returncode == 2, (r.stdout[-500:], r.stderr[-2000:])
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    for m in messages:
        assert m in r.stderr, r.stderr


def _predict(photo: Path, ref: str):
    return run_cli("predict", str(photo), "--model", ref, "--json")


def test_damaged_local_copy_of_a_registered_model_heals(served_model, dog_photo):
    folder, info = local_model_dir("dogs5:1")
    good = json.loads(_predict(dog_photo, "dogs5:1").stdout)[0]["top_k"]
    weights = folder / WEIGHTS
    data = bytearray(weights.read_bytes())
    data[-100] ^= 0xFF
    weights.write_bytes(bytes(data))
    assert json.loads(_predict(dog_photo, "dogs5:1").stdout)[0]["top_k"] == good  # fetched again
    (folder / CARD).unlink()
    r = _predict(dog_photo, "dogs5:1")
    assert r.returncode == 0, r.stderr
    assert (folder / CARD).is_file()
    weights.write_bytes(weights.read_bytes()[:1000])  # truncated
    assert json.loads(_predict(dog_photo, "dogs5:1").stdout)[0]["top_k"] == good


def test_damaged_model_folders_are_one_line_errors(served_model, dog_photo, tmp_path, dogbreed_home):
    source = dogbreed_home / "jobs" / "serve-job" / "model"
    cases = {}
    for case in ("flipped", "truncated", "card-garbage", "card-missing-field", "no-weights"):
        d = tmp_path / case
        shutil.copytree(source, d)
        cases[case] = d
    w = cases["flipped"] / WEIGHTS
    data = bytearray(w.read_bytes())
    data[len(data) // 2] ^= 0x01
    w.write_bytes(bytes(data))
    (cases["truncated"] / WEIGHTS).write_bytes((source / WEIGHTS).read_bytes()[:5000])
    (cases["card-garbage"] / CARD).write_text("{not json")
    card = json.loads((source / CARD).read_text())
    del card["preprocessing"]
    (cases["card-missing-field"] / CARD).write_text(json.dumps(card))
    (cases["no-weights"] / WEIGHTS).unlink()
    expected = {"flipped": ("damaged", WEIGHTS), "truncated": ("damaged", WEIGHTS),
                "card-garbage": ("damaged", CARD), "card-missing-field": ("damaged", CARD),
                "no-weights": ("missing", WEIGHTS)}
    for case, d in cases.items():
        _one_line_error(_predict(dog_photo, str(d)), *expected[case])
    # Weights holding +inf, with a card that matches them: refused, not deployed silently.
    model, card = load_model(source)
    with torch.no_grad():
        model.get_classifier().weight[0, 0] = float("inf")
    save_model(tmp_path / "inf", model, card)
    _one_line_error(_predict(dog_photo, str(tmp_path / "inf")), "NaN or infinite", WEIGHTS)
    _one_line_error(run_cli("deploy", "--model", str(tmp_path / "inf"), "--endpoint-name", "ep-inf", "--port", "0"),
                    "NaN or infinite")
    _one_line_error(run_cli("batch-transform", "--model", str(cases["truncated"]), "--input", str(tmp_path),
                            "--output", str(tmp_path / "out")), "damaged")

"""Shared fixtures. Integration tests use small slices of the real photos in ../shared (never copied: symlinked)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SHARED_DOGS = Path(os.environ.get("DOGBREED_SHARED_DOGS", REPO.parent / "shared" / "datasets" / "stanford-dogs-120"))
SLICE_CLASSES = ("n02086240-Shih-Tzu", "n02088364-beagle", "n02099601-golden_retriever", "n02110958-pug",
                 "n02106662-German_shepherd")


@pytest.fixture(scope="session", autouse=True)
def dogbreed_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One home per test session: caches (decoded images, features) are shared between tests, as for a user."""
    home = tmp_path_factory.mktemp("dogbreed-home")
    os.environ["DOGBREED_HOME"] = str(home)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    return home


def _require_shared() -> Path:
    # CI has ../shared beside the checkout: a missing dataset is a failure, not a skip.
    assert SHARED_DOGS.is_dir(), f"real dog photos not found at {SHARED_DOGS}"
    return SHARED_DOGS


def make_slice(root: Path, classes: tuple[str, ...], n_train: int, n_valid: int, n_test: int = 0) -> Path:
    """A dataset folder of symlinks to real photos: train from train/, valid and test from disjoint parts of valid/."""
    src = _require_shared()
    for c in classes:
        train = sorted((src / "train" / c).iterdir())[:n_train]
        valid = sorted((src / "valid" / c).iterdir())
        parts = {"train": train, "valid": valid[:n_valid]}
        if n_test:
            parts["test"] = valid[n_valid:n_valid + n_test]
        for split, files in parts.items():
            d = root / split / c
            d.mkdir(parents=True, exist_ok=True)
            for f in files:
                (d / f.name).symlink_to(f)
    return root


@pytest.fixture(scope="session")
def dogs_slice(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """5 breeds x (12 train, 6 valid, 6 test) real photos."""
    return make_slice(tmp_path_factory.mktemp("dogs5"), SLICE_CLASSES, 12, 6, 6)


@pytest.fixture(scope="session")
def dog_photo() -> Path:
    return sorted((_require_shared() / "valid" / "n02085620-Chihuahua").iterdir())[0]


def write_image(path: Path, size: tuple[int, int] = (64, 48), color: tuple[int, int, int] = (200, 30, 30),
                seed: int = 0, fmt: str = "JPEG") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    arr = (rng.integers(0, 40, (size[1], size[0], 3)) + np.array(color)).clip(0, 255).astype(np.uint8)
    Image.fromarray(arr).save(path, fmt)
    return path


@pytest.fixture
def generated_dataset(tmp_path: Path) -> Path:
    """A tiny synthetic dataset in the Udacity naming (`001.Affenpinscher`)."""
    root = tmp_path / "gen"
    for split, n in (("train", 4), ("valid", 2)):
        for ci, (name, color) in enumerate((("001.Affenpinscher", (200, 30, 30)), ("002.Afghan_hound", (30, 30, 200)))):
            for i in range(n):
                write_image(root / split / name / f"{i}.jpg", color=color, seed=ci * 100 + i + (50 if split == "valid" else 0))
    return root


def run_cli(*args: str, timeout: float = 900, env: dict | None = None) -> subprocess.CompletedProcess:
    """Runs the installed `dogbreed` command the way a user does."""
    return subprocess.run([sys.executable, "-m", "dogbreed.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


@pytest.fixture(scope="session")
def served_model(dogs_slice):
    """A finished job on the 5-breed slice, registered as dogs5 (version 1, alias prod): what the endpoint,
    robustness and process tests serve."""
    from dogbreed.config import Hyperparameters
    from dogbreed.jobs.model_registry import register_job
    from dogbreed.train.job import TrainingJobSpec, run_training_job

    rec = run_training_job(TrainingJobSpec("serve-job", str(dogs_slice), Hyperparameters(epochs=5),
                                           progress=False))
    assert rec.status == "Completed", rec.failure_reason
    return register_job("serve-job", "dogs5", aliases=("prod",))


class Endpoint:
    """`dogbreed deploy` started as a user starts it, in its own process, on a free port of 127.0.0.1."""

    def __init__(self, name: str, model: str, *extra: str, env: dict | None = None):
        from dogbreed.serve.deploy import free_port

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.name = name
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dogbreed.cli", "deploy", "--model", model, "--endpoint-name", name,
             "--port", str(self.port), *extra], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, **(env or {})})
        deadline = time.time() + 180
        while time.time() < deadline:
            assert self.proc.poll() is None, self.proc.stdout.read()
            try:
                if httpx.get(f"{self.url}/ping", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise AssertionError("endpoint did not start")

    def post(self, body: bytes, content_type: str | None = "image/jpeg", params: dict | None = None,
             headers: dict | None = None, **kw) -> httpx.Response:
        h = {**({"Content-Type": content_type} if content_type else {}), **(headers or {})}
        return httpx.post(f"{self.url}/invocations", content=body, headers=h, params=params, timeout=60, **kw)

    def stop(self) -> None:
        run_cli("endpoints", "delete", self.name)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture(scope="module")
def ray_cluster():
    """A real two-node Ray cluster on 127.0.0.1: a head node and a second worker node process."""
    from dogbreed.serve.deploy import free_port

    ray_bin = str(Path(sys.executable).parent / "ray")
    port = free_port()
    address = f"127.0.0.1:{port}"
    common = ["--num-cpus=1", "--disable-usage-stats"]
    subprocess.run([ray_bin, "start", "--head", f"--port={port}", "--node-ip-address=127.0.0.1",
                    "--include-dashboard=false", *common], check=True, capture_output=True, timeout=120)
    try:
        subprocess.run([ray_bin, "start", f"--address={address}", *common], check=True, capture_output=True,
                       timeout=120)
        deadline = time.time() + 60
        while time.time() < deadline:
            status = subprocess.run([ray_bin, "status", f"--address={address}"], capture_output=True, text=True)
            if status.stdout.count(" node_") >= 2:
                break
            time.sleep(1)
        else:
            raise AssertionError("the second Ray node did not join")
        yield address
    finally:
        import ray

        ray.shutdown()  # disconnect this driver first: it would otherwise report the cluster's end at exit
        subprocess.run([ray_bin, "stop", "--force"], capture_output=True, timeout=120)

"""The example notebook runs end to end (nbclient, a real Jupyter kernel) on a small slice of the real photos."""

from __future__ import annotations

import os
from pathlib import Path

from conftest import REPO, SLICE_CLASSES, make_slice


def test_example_notebook_runs(tmp_path):
    import nbformat
    from nbclient import NotebookClient

    data = make_slice(tmp_path / "data", SLICE_CLASSES[:3], 8, 4)
    nb = nbformat.read(REPO / "examples" / "train_and_deploy.ipynb", as_version=4)
    env = {"DOGBREED_EXAMPLE_DATA": str(data), "DOGBREED_EXAMPLE_EPOCHS": "2", "DOGBREED_EXAMPLE_MAX_JOBS": "2",
           "DOGBREED_HOME": str(tmp_path / "home")}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the kernel inherits this process's environment
    try:
        NotebookClient(nb, timeout=600, kernel_name="python3",
                       resources={"metadata": {"path": str(REPO / "examples")}}).execute()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    text = "\n".join(_outputs(nb))
    assert "pre-flight: use_pretrained_model=0 trains resnet18 from random weights" in text
    assert "FinalObjectiveValue" in text and "TrainingJobName" in text  # the analytics table
    assert "image/png" in text  # the objective plot
    assert "epoch 2 [head]" in text  # the best job's log
    assert "3 class probabilities" in text and "'label':" in text  # a photo predicted
    assert "files exported" in text
    assert not list(Path(REPO / "examples").glob("dogbreed-home"))  # nothing written beside the notebook


def _outputs(nb) -> list[str]:
    out = []
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            if o.get("text"):
                out.append(o["text"])
            for mime, value in (o.get("data") or {}).items():
                out.append(mime)
                if isinstance(value, str) and mime.startswith("text/"):
                    out.append(value)
    return out

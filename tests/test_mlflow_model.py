"""A registered dogbreed model is a real MLflow model: MLflow's own `mlflow.pyfunc.load_model("models:/NAME/1")`
predicts the same classes as `dogbreed evaluate` on real photos."""

from __future__ import annotations

import base64

import numpy as np
import pandas as pd


def test_models_uri_loads_with_mlflow_pyfunc_and_predicts_like_evaluate(served_model, dogs_slice):
    import mlflow
    import mlflow.pyfunc

    from dogbreed.config import tracking_uri
    from dogbreed.train.job_evaluation import evaluate_job

    mlflow.set_tracking_uri(tracking_uri())
    mlflow.set_registry_uri(tracking_uri())
    model = mlflow.pyfunc.load_model(f"models:/{served_model.name}/{served_model.version}")
    assert model.metadata.get_input_schema().input_names() == ["image"]
    photos = sorted((dogs_slice / "test").rglob("*.jpg"))  # the evaluation's order: class folders, then files
    jpegs = [p.read_bytes() for p in photos]
    probs = model.predict(pd.DataFrame({"image": jpegs}))
    assert list(probs.columns) == model.metadata.get_output_schema().input_names()
    assert np.allclose(probs.sum(axis=1), 1, atol=1e-3)
    ev, _ = evaluate_job("serve-job", str(dogs_slice), "test")
    assert probs.to_numpy().argmax(axis=1).tolist() == ev.predictions.tolist()

    as_base64 = model.predict(pd.DataFrame({"image": [base64.b64encode(j).decode() for j in jpegs[:2]]}))
    assert np.allclose(as_base64.to_numpy(), probs.to_numpy()[:2])
    top = model.predict(pd.DataFrame({"image": jpegs[:2]}), params={"top_k": 2})
    assert [labels[0] for labels in top["labels"]] == [probs.columns[i] for i in probs.to_numpy()[:2].argmax(1)]
    assert all(len(p) == 2 and p[0] >= p[1] for p in top["probabilities"])

    # every training job's run holds the same MLflow model, registered or not
    from dogbreed.jobs import records

    run_model = mlflow.pyfunc.load_model(f"runs:/{records.load('serve-job').mlflow_run_id}/model")
    assert np.allclose(run_model.predict(pd.DataFrame({"image": jpegs[:3]})).to_numpy(), probs.to_numpy()[:3],
                       atol=1e-5)

"""Registered models: versions in the MLflow model registry, each pointing at a finished job's model artifacts.

A reference is `NAME` (latest version), `NAME:VERSION` or `NAME@ALIAS`. Resolving one gives a local folder holding
`model.safetensors` and `model.json`, downloaded once into the dogbreed home.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dogbreed.config import UserError, home, tracking_uri
from dogbreed.models.artifact import CARD, load_card
from dogbreed.train import records

_REF = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9_.\-]*)(?::(?P<version>\d+)|@(?P<alias>[A-Za-z0-9_\-]+))?$")


@dataclass(frozen=True)
class ModelVersionInfo:
    name: str
    version: str
    job: str
    run_id: str | None
    source: str
    aliases: tuple[str, ...]
    tags: dict[str, str]
    created: float

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "job": self.job, "run_id": self.run_id,
                "source": self.source, "aliases": list(self.aliases), "tags": self.tags, "created": self.created}


def _client():
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri(), registry_uri=tracking_uri())


def register_job(job: str, name: str | None = None, aliases: tuple[str, ...] = ()) -> ModelVersionInfo:
    """Registers a Completed job's model as a new version of `name` (default: the job's name)."""
    from mlflow.exceptions import MlflowException

    record = records.load(job)
    model_dir = records.job_dir(job) / "model"
    if record.status != records.COMPLETED or not model_dir.exists():
        raise UserError(f"job {job!r} has no trained model to register (status {record.status})")
    name = name or job
    if not _REF.match(name) or ":" in name or "@" in name:
        raise UserError(f"model name {name!r} is invalid: use letters, digits, '-', '_' or '.'")
    card = load_card(model_dir)
    client = _client()
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name, description="dogbreed breed classifier")
    source = _artifact_source(client, record.mlflow_run_id, model_dir)
    tags = {
        "dogbreed.job": job,
        "dogbreed.backbone": card.backbone,
        "dogbreed.num_classes": str(card.num_classes),
        "dogbreed.preprocessing": json.dumps(card.preprocessing.to_dict()),
        "dogbreed.data": json.dumps(card.lineage.get("data", {})),
        "dogbreed.hyperparameters": json.dumps(card.hyperparameters)[:4900],
        **{f"metric.{k}": f"{v:.6f}" for k, v in card.metrics.items() if isinstance(v, float)},
    }
    mv = client.create_model_version(name, source, run_id=record.mlflow_run_id, tags=tags,
                                     description=f"from job {job}")
    for alias in aliases:
        client.set_registered_model_alias(name, alias, mv.version)
    return get_version(name, mv.version)


def _artifact_source(client: Any, run_id: str | None, model_dir: Path) -> str:
    if run_id:
        run = client.get_run(run_id)
        names = {a.path for a in client.list_artifacts(run_id)}
        if "model" in names:
            return f"{run.info.artifact_uri}/model"
    return str(model_dir.resolve())  # an untracked job: the registry points at its folder


def set_alias(name: str, alias: str, version: str) -> None:
    _client().set_registered_model_alias(name, alias, version)


def get_version(name: str, version: str) -> ModelVersionInfo:
    mv = _client().get_model_version(name, version)
    return _info(mv)


def _info(mv: Any) -> ModelVersionInfo:
    return ModelVersionInfo(name=mv.name, version=str(mv.version), job=mv.tags.get("dogbreed.job", ""),
                            run_id=mv.run_id, source=mv.source, aliases=tuple(getattr(mv, "aliases", []) or []),
                            tags=dict(mv.tags), created=mv.creation_timestamp / 1000)


def list_models() -> list[dict[str, Any]]:
    client = _client()
    out = []
    for rm in client.search_registered_models():
        versions = client.search_model_versions(f"name='{rm.name}'")
        latest = max(versions, key=lambda v: int(v.version)) if versions else None
        out.append({"name": rm.name, "versions": len(versions), "latest_version": latest.version if latest else None,
                    "aliases": dict(getattr(rm, "aliases", {}) or {}),
                    "latest_job": latest.tags.get("dogbreed.job") if latest else None,
                    "validation_accuracy": latest.tags.get("metric.validation:accuracy") if latest else None})
    return out


def describe_model(name: str) -> dict[str, Any]:
    from mlflow.exceptions import MlflowException

    client = _client()
    try:
        rm = client.get_registered_model(name)
    except MlflowException:
        raise UserError(f"no registered model named {name!r} (see `dogbreed models list`)") from None
    versions = sorted(client.search_model_versions(f"name='{name}'"), key=lambda v: int(v.version))
    return {"name": rm.name, "description": rm.description, "aliases": dict(getattr(rm, "aliases", {}) or {}),
            "versions": [_info(v).to_dict() for v in versions]}


def resolve(ref: str) -> ModelVersionInfo:
    from mlflow.exceptions import MlflowException

    m = _REF.match(ref or "")
    if not m:
        raise UserError(f"model reference {ref!r} is invalid: use NAME, NAME:VERSION or NAME@ALIAS")
    client = _client()
    name = m["name"]
    try:
        if m["version"]:
            mv = client.get_model_version(name, m["version"])
        elif m["alias"]:
            mv = client.get_model_version_by_alias(name, m["alias"])
        else:
            versions = client.search_model_versions(f"name='{name}'")
            if not versions:
                raise MlflowException("no versions")
            mv = max(versions, key=lambda v: int(v.version))
    except MlflowException:
        raise UserError(f"no registered model version for {ref!r} (see `dogbreed models list`)") from None
    return _info(mv)


def local_model_dir(ref: str) -> tuple[Path, ModelVersionInfo]:
    """A local folder with the model files of `ref`, downloaded into the dogbreed home once."""
    info = resolve(ref)
    target = home() / "models" / info.name / info.version
    if (target / CARD).exists():
        return target, info
    source = Path(info.source)
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    if source.is_dir():
        shutil.copytree(source, tmp)
    else:
        import mlflow.artifacts

        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        tmp.mkdir(parents=True)
        mlflow.artifacts.download_artifacts(artifact_uri=info.source, dst_path=str(tmp),
                                            tracking_uri=tracking_uri())
        nested = tmp / "model"
        if not (tmp / CARD).exists() and (nested / CARD).exists():
            for f in nested.iterdir():
                f.rename(tmp / f.name)
            nested.rmdir()
    if not (tmp / CARD).exists():
        raise UserError(f"model version {info.name}:{info.version} has no dogbreed model files at {info.source}")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp.rename(target)
    return target, info


def model_dir_for(ref: str) -> Path:
    """A registry reference, or `job:NAME` for a finished job's model without registering it."""
    if ref.startswith("job:"):
        from dogbreed.train.predict import job_model_dir

        return job_model_dir(ref[4:])
    return local_model_dir(ref)[0]

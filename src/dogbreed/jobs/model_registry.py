"""Registered models: versions in the MLflow model registry, each pointing at a finished job's model artifacts.

A reference is `NAME` (latest version), `NAME:VERSION` or `NAME@ALIAS`; `job:JOBNAME` names a finished job's model
without registering it. Resolving a reference gives a local folder holding `model.safetensors` and `model.json`,
fetched once into the dogbreed home, checked against the SHA-256 recorded at registration every time, and fetched
again when the local copy is incomplete or damaged.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dogbreed.config import UserError, tracking_uri
from dogbreed.jobs import names, records
from dogbreed.jobs.tracking import client as _client
from dogbreed.models.artifact import CARD, WEIGHTS, load_card, sha256_of
from dogbreed.models.mlflow_pyfunc import write_mlflow_model

_REF = re.compile(r"(?P<name>[^:@]+)(?::(?P<version>\d{1,9})|@(?P<alias>[A-Za-z0-9_\-]{1,63}))?")
SHA_TAG = "dogbreed.weights_sha256"


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


def job_model_dir(job: str) -> Path:
    """The model folder of a Completed job."""
    record = records.load(job)
    model_dir = records.job_dir(job) / "model"
    if record.status != records.COMPLETED or not (model_dir / CARD).exists():
        raise UserError(f"job {job!r} has no trained model (status {record.status})")
    return model_dir


def register_job(job: str, name: str | None = None, aliases: tuple[str, ...] = ()) -> ModelVersionInfo:
    """Registers a Completed job's model as a new version of `name` (default: the job's name)."""
    from mlflow.exceptions import MlflowException

    name = names.validate(job if name is None else name, "model")
    record = records.load(job)
    model_dir = job_model_dir(job)
    for alias in aliases:
        _validate_alias(alias)
    card = load_card(model_dir)
    client = _client()
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name, description="dogbreed breed classifier")
    source = _artifact_source(client, record.mlflow_run_id, model_dir)
    # A real MLflow model (MLmodel + ONNX beside the weights), so `mlflow.pyfunc.load_model("models:/NAME/V")`
    # predicts; written at registration, where a models:/ URI first exists, not for every tuning trial.
    for written in write_mlflow_model(model_dir):
        if source != str(model_dir.resolve()):
            client.log_artifact(record.mlflow_run_id, str(written), "model")
    tags = {
        "dogbreed.job": job,
        "dogbreed.backbone": card.backbone,
        "dogbreed.num_classes": str(card.num_classes),
        "dogbreed.preprocessing": json.dumps(card.preprocessing.to_dict()),
        "dogbreed.data": json.dumps(card.lineage.get("data", {})),
        "dogbreed.hyperparameters": json.dumps(card.hyperparameters)[:4900],
        SHA_TAG: card.weights_sha256 or sha256_of(model_dir / WEIGHTS),
        **{f"metric.{k}": f"{v:.6f}" for k, v in card.metrics.items() if isinstance(v, float)},
    }
    mv = client.create_model_version(name, source, run_id=record.mlflow_run_id, tags=tags,
                                     description=f"from job {job}")
    for alias in aliases:
        client.set_registered_model_alias(name, alias, mv.version)
    return get_version(name, mv.version)


def _validate_alias(alias: str) -> str:
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_\-]{0,62}", alias or "") or alias.lower() == "latest" or \
            re.fullmatch(r"v\d+", alias or ""):
        raise UserError(f"alias {alias!r} is invalid: a letter, then letters, digits, '-' or '_' (not 'latest' "
                        "or v<number>)")
    return alias


def _artifact_source(client: Any, run_id: str | None, model_dir: Path) -> str:
    if run_id:
        run = client.get_run(run_id)
        found = {a.path for a in client.list_artifacts(run_id)}
        if "model" in found:
            return f"{run.info.artifact_uri}/model"
    return str(model_dir.resolve())  # an untracked job: the registry points at its folder


def _registered(name: str) -> Any:
    from mlflow.exceptions import MlflowException

    names.validate(name, "model")
    try:
        return _client().get_registered_model(name)
    except MlflowException:
        raise UserError(f"no registered model named {name!r} (see `dogbreed models list`)") from None


def set_alias(name: str, alias: str, version: str) -> ModelVersionInfo:
    _registered(name)
    _validate_alias(alias)
    info = resolve(f"{name}:{version}")
    _client().set_registered_model_alias(name, alias, info.version)
    return get_version(name, info.version)


def delete_alias(name: str, alias: str) -> None:
    from mlflow.exceptions import MlflowException

    if alias not in (getattr(_registered(name), "aliases", None) or {}):  # MLflow says nothing when it is absent
        raise UserError(f"model {name!r} has no alias {alias!r}")
    try:
        _client().delete_registered_model_alias(name, alias)
    except MlflowException:
        raise UserError(f"model {name!r} has no alias {alias!r}") from None


def delete_model(name: str, version: str | None = None) -> None:
    """Deletes one version, or the whole registered model, and its local copies."""
    from mlflow.exceptions import MlflowException

    _registered(name)
    client = _client()
    if version is None:
        client.delete_registered_model(name)
        shutil.rmtree(names.path_for("model", name), ignore_errors=True)
        return
    try:
        client.delete_model_version(name, version)
    except MlflowException:
        raise UserError(f"model {name!r} has no version {version}") from None
    shutil.rmtree(names.path_for("model", name) / str(int(version)), ignore_errors=True)


def get_version(name: str, version: str) -> ModelVersionInfo:
    return _info(_client().get_model_version(name, version))


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
    rm = _registered(name)
    versions = sorted(_client().search_model_versions(f"name='{name}'"), key=lambda v: int(v.version))
    return {"name": rm.name, "description": rm.description, "aliases": dict(getattr(rm, "aliases", {}) or {}),
            "versions": [_info(v).to_dict() for v in versions]}


def resolve(ref: str) -> ModelVersionInfo:
    from mlflow.exceptions import MlflowException

    m = _REF.fullmatch(ref or "")
    if not m:
        raise UserError(f"model reference {ref!r} is invalid: use NAME, NAME:VERSION or NAME@ALIAS")
    name = names.validate(m["name"], "model")
    client = _client()
    try:
        if m["version"]:
            mv = client.get_model_version(name, str(int(m["version"])))
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


def _local_copy_ok(folder: Path, info: ModelVersionInfo) -> bool:
    if not ((folder / CARD).is_file() and (folder / WEIGHTS).is_file()):
        return False
    expected = info.tags.get(SHA_TAG)
    return not expected or sha256_of(folder / WEIGHTS) == expected


def local_model_dir(ref: str) -> tuple[Path, ModelVersionInfo]:
    """A local folder with the verified model files of `ref`, fetched into the dogbreed home when needed."""
    info = resolve(ref)
    target = names.path_for("model", info.name) / info.version
    if _local_copy_ok(target, info):
        return target, info
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    source = Path(info.source)
    if source.is_dir():
        shutil.copytree(source, tmp)
    else:
        import mlflow.artifacts

        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        tmp.mkdir(parents=True)
        try:
            mlflow.artifacts.download_artifacts(artifact_uri=info.source, dst_path=str(tmp),
                                                tracking_uri=tracking_uri())
        except Exception as e:  # noqa: BLE001 - any store error means the same to the user
            shutil.rmtree(tmp, ignore_errors=True)
            raise UserError(f"cannot fetch model {info.name}:{info.version} from {info.source}: "
                            f"{str(e).splitlines()[0][:120]}") from None
        nested = tmp / "model"
        if not (tmp / CARD).exists() and (nested / CARD).exists():
            for f in nested.iterdir():
                f.rename(tmp / f.name)
            nested.rmdir()
    if not _local_copy_ok(tmp, info):
        shutil.rmtree(tmp, ignore_errors=True)
        raise UserError(f"model version {info.name}:{info.version} at {info.source} is missing or damaged "
                        f"(its {WEIGHTS} does not match the SHA-256 recorded at registration)")
    shutil.rmtree(target, ignore_errors=True)  # an incomplete or damaged earlier copy
    try:
        tmp.rename(target)
    except OSError:  # another process put a copy there meanwhile
        shutil.rmtree(tmp, ignore_errors=True)
        if not _local_copy_ok(target, info):
            raise
    return target, info


def is_folder_ref(ref: str) -> bool:
    return ref.startswith(("file://", ".", "/", "~")) or "/" in ref


def check_ref(ref: str) -> str:
    """Checks a model reference's form (nothing is read): a bad name is refused before any file is touched."""
    if not ref:
        raise UserError("model reference is missing: use NAME, NAME:VERSION, NAME@ALIAS, job:JOBNAME or a folder")
    if ref.startswith("job:"):
        names.validate(ref[4:], "job")
    elif not is_folder_ref(ref):
        m = _REF.fullmatch(ref)
        if not m:
            raise UserError(f"model reference {ref[:40]!r} is invalid: use NAME, NAME:VERSION or NAME@ALIAS")
        names.validate(m["name"], "model")
    return ref


def model_dir_for(ref: str) -> Path:
    """A registry reference (`NAME`, `NAME:VERSION`, `NAME@ALIAS`), `job:NAME` for a finished job's model without
    registering it, or a model folder (path or file:// URI, as an estimator's model_data gives)."""
    check_ref(ref)
    if ref.startswith("job:"):
        return job_model_dir(ref[4:])
    if is_folder_ref(ref):
        folder = Path(ref.removeprefix("file://")).expanduser()
        if not (folder / CARD).is_file():
            raise UserError(f"no dogbreed model in {folder} (expected {CARD} and {WEIGHTS})")
        return folder
    return local_model_dir(ref)[0]

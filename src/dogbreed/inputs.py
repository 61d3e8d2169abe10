"""`TrainingInput`: one data channel of a training job, as in the SageMaker SDK (`sagemaker.inputs`).

dogbreed reads the channel's URI (a local path, `file://`, `s3://` or any fsspec URI) and content type; SageMaker's
other settings (distribution, S3 data type, compression, shuffling) are kept as given and have no effect locally.
"""

from __future__ import annotations

from typing import Any


class ShuffleConfig:
    def __init__(self, seed: int):
        self.seed = seed


class TrainingInput:
    def __init__(self, s3_data: str, distribution: str | None = None, compression: str | None = None,
                 content_type: str | None = None, record_wrapping: str | None = None,
                 s3_data_type: str = "S3Prefix", instance_groups: list[str] | None = None,
                 input_mode: str | None = None, attribute_names: list[str] | None = None,
                 target_attribute_name: str | None = None, shuffle_config: ShuffleConfig | None = None,
                 **kwargs: Any):
        self.config: dict[str, Any] = {"DataSource": {"S3DataSource": {
            "S3DataType": s3_data_type, "S3Uri": str(s3_data),
            "S3DataDistributionType": distribution or "FullyReplicated"}}}
        for key, value in (("CompressionType", compression), ("ContentType", content_type),
                           ("RecordWrapperType", record_wrapping), ("InputMode", input_mode)):
            if value is not None:
                self.config[key] = value
        if shuffle_config is not None:
            self.config["ShuffleConfig"] = {"Seed": shuffle_config.seed}

    @property
    def uri(self) -> str:
        return self.config["DataSource"]["S3DataSource"]["S3Uri"]

    @property
    def content_type(self) -> str | None:
        return self.config.get("ContentType")

    def __repr__(self) -> str:
        ct = f", content_type={self.content_type!r}" if self.content_type else ""
        return f"TrainingInput({self.uri!r}{ct})"


class FileSystemInput:
    """Accepted so notebooks import; an EFS/FSx file system is a local folder here: pass its path instead."""

    def __init__(self, file_system_id: str, file_system_type: str, directory_path: str,
                 file_system_access_mode: str = "ro", content_type: str | None = None):
        self.directory_path, self.content_type = directory_path, content_type
        self.config = {"DataSource": {"FileSystemDataSource": {
            "FileSystemId": file_system_id, "FileSystemType": file_system_type,
            "DirectoryPath": directory_path, "FileSystemAccessMode": file_system_access_mode}}}

    @property
    def uri(self) -> str:
        return self.directory_path


def channel_of(value: Any) -> dict[str, Any] | str:
    """A channel as dogbreed's data layer takes it: a URI, or {"uri", "content_type"}."""
    if isinstance(value, (TrainingInput, FileSystemInput)):
        return {"uri": value.uri, "content_type": value.content_type} if value.content_type else value.uri
    return str(value)

"""Finding splits, classes and images in a dataset folder, local or behind an fsspec URI."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

from dogbreed.config import UserError, home

SPLITS = ("train", "valid", "test")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


def readable_label(folder: str) -> str:
    """`001.Affenpinscher` -> `Affenpinscher`; `n02085620-Chihuahua` -> `Chihuahua`; `Afghan_hound` -> `Afghan hound`."""
    name = re.sub(r"^\d+\.", "", folder)
    name = re.sub(r"^n\d{8}-", "", name)
    return name.replace("_", " ").strip() or folder


@dataclass(frozen=True)
class Split:
    name: str
    files: tuple[Path, ...]
    labels: tuple[str, ...]  # class folder of each file

    def class_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for c in self.labels:
            counts[c] = counts.get(c, 0) + 1
        return counts


@dataclass(frozen=True)
class DatasetLayout:
    root: Path
    splits: dict[str, Split]
    folders: dict[str, tuple[str, ...]] = field(default_factory=dict)  # class folders per split, empty ones too
    notes: tuple[str, ...] = ()  # what the log should say about how the data was read (manifest label style...)
    skipped: tuple[str, ...] = ()  # manifest lines skipped with on_bad_file=skip, "file:line: why"

    @property
    def classes(self) -> tuple[str, ...]:
        """Class folders, sorted: the order of the model's outputs."""
        return tuple(sorted(set().union(*self.folders.values())))

    def class_index(self) -> dict[str, int]:
        return {c: i for i, c in enumerate(self.classes)}


def discover(root: Path, *, required: tuple[str, ...] = ("train", "valid")) -> DatasetLayout:
    """Reads the folder layout; raises UserError for what makes a dataset unusable."""
    if not root.exists():
        raise UserError(f"data folder not found: {root}")
    if not root.is_dir():
        raise UserError(f"data location is not a folder: {root}")
    splits, folders = {}, {}
    for name in SPLITS:
        d = root / name
        if not d.is_dir():
            if name in required:
                raise UserError(f"data folder {root} has no {name}/ split (expected train/, valid/, optional test/)")
            continue
        splits[name], folders[name] = _read_split(d, name)
    return DatasetLayout(root=root, splits=splits, folders=folders)


# SageMaker's channel names -> dogbreed's split folders.
IMAGE_CHANNELS = {"train": "train", "validation": "valid", "valid": "valid", "test": "test"}
MANIFEST_CHANNELS = {"train_lst": "train", "validation_lst": "valid", "valid_lst": "valid", "test_lst": "test"}
MODEL_CHANNEL = "model"
RECORDIO_TYPES = ("application/x-recordio",)
SUPPORTED_LAYOUTS = ("a folder with train/ and valid/ (optional test/) of class folders; or channels train and "
                     "validation of class folders; or image channels with train_lst/validation_lst .lst manifests")


@dataclass(frozen=True)
class Channel:
    """One SageMaker input channel: where its data is, and the content type it was declared with."""
    uri: str
    content_type: str | None = None

    @classmethod
    def of(cls, value: object) -> "Channel":
        if isinstance(value, Channel):
            return value
        if isinstance(value, dict):
            return cls(str(value["uri"]), value.get("content_type"))
        if isinstance(value, (str, Path)):
            return cls(str(value))
        raise UserError(f"a channel must be a path or URI, not {type(value).__name__}")


def describe_data(data: object) -> str:
    """A short, readable name of a data spec for logs and errors."""
    if isinstance(data, dict):
        return ", ".join(f"{k}={Channel.of(v).uri}" for k, v in data.items())
    return str(data)


def discover_dataset(data: object, *, required: tuple[str, ...] = ("train", "valid"), on_bad_file: str = "error",
                     num_classes: int | None = None) -> DatasetLayout:
    """The layout of a dataset given as a folder/URI or as SageMaker channels (train, validation, test as class
    folders, optionally described by train_lst/validation_lst manifests). Raises UserError for unusable data."""
    if isinstance(data, (str, Path)):
        return discover(resolve_location(str(data)), required=required)
    if not isinstance(data, dict) or not data:
        raise UserError("data must be a folder or URI, or a mapping of channels (train, validation, ...)")
    channels = {name: Channel.of(value) for name, value in data.items()}
    unknown = sorted(set(channels) - set(IMAGE_CHANNELS) - set(MANIFEST_CHANNELS) - {MODEL_CHANNEL})
    if unknown:
        raise UserError(f"unknown channel {unknown[0]!r} (use train, validation, test, train_lst, validation_lst "
                        "or model)")
    for name, ch in channels.items():
        if (ch.content_type or "").lower() in RECORDIO_TYPES or ch.uri.endswith(".rec"):
            raise UserError(f"channel {name}: RecordIO (.rec) data is not supported; use {SUPPORTED_LAYOUTS}")
    paths = {name: resolve_location(ch.uri) for name, ch in channels.items() if name != MODEL_CHANNEL}
    for name, path in paths.items():
        if path.suffix == ".rec" or (path.is_dir() and any(path.glob("*.rec"))):
            raise UserError(f"channel {name}: RecordIO (.rec) data is not supported; use {SUPPORTED_LAYOUTS}")
    by_split = {IMAGE_CHANNELS[n]: p for n, p in paths.items() if n in IMAGE_CHANNELS}
    manifests_by_split = {MANIFEST_CHANNELS[n]: p for n, p in paths.items() if n in MANIFEST_CHANNELS}
    for split in manifests_by_split:
        if split not in by_split:
            raise UserError(f"manifest channel for {split} has no image channel to go with it")
    for split in required:
        if split not in by_split:
            channel = "validation" if split == "valid" else split
            raise UserError(f"channel {channel!r} is missing (expected {SUPPORTED_LAYOUTS})")
    if manifests_by_split:
        return _layout_from_manifests(by_split, manifests_by_split, on_bad_file, num_classes)
    splits, folders = {}, {}
    for split, path in by_split.items():
        splits[split], folders[split] = _read_split(path, split)
    return DatasetLayout(root=by_split["train"].parent, splits=splits, folders=folders)


def _layout_from_manifests(images: dict[str, Path], manifests: dict[str, Path], on_bad_file: str,
                           num_classes: int | None) -> DatasetLayout:
    from dogbreed.data.manifest import class_names, read_manifest

    read = {}
    for split, lst_path in manifests.items():
        lst = lst_path if lst_path.is_file() else _single_lst(lst_path)
        read[split] = read_manifest(lst, images[split], on_bad_file, num_classes)
    names, style = class_names(list(read.values()), num_classes)
    splits, folders, skipped = {}, {}, []
    for split, path in images.items():
        if split in read:
            m = read[split]
            files = tuple(e.path for e in m.entries)
            labels = tuple(names[e.label] for e in m.entries)
            splits[split] = Split(split, files, labels)
            folders[split] = tuple(sorted(set(labels)))
            skipped += m.skipped
        else:
            splits[split], folders[split] = _read_split(path, split)
    notes = (f".lst labels read as {style}",)
    return DatasetLayout(root=images["train"].parent, splits=splits, folders=folders, notes=notes,
                         skipped=tuple(skipped))


def _single_lst(folder: Path) -> Path:
    found = sorted(folder.glob("*.lst")) if folder.is_dir() else []
    if len(found) != 1:
        raise UserError(f"manifest channel {folder} must hold exactly one .lst file (found {len(found)})")
    return found[0]


def _read_split(d: Path, name: str) -> tuple[Split, tuple[str, ...]]:
    if not d.is_dir():
        raise UserError(f"{name} data folder not found: {d}")
    class_dirs = sorted(p for p in d.iterdir() if p.is_dir() and not p.name.startswith("."))
    files, labels = [], []
    for cd in class_dirs:
        for f in sorted(cd.iterdir()):
            if f.is_file() and not f.name.startswith("."):
                files.append(f)
                labels.append(cd.name)
    if not files:
        raise UserError(f"split {name}/ in {d.parent} has no images (expected one folder per class with images)")
    return Split(name, tuple(files), tuple(labels)), tuple(cd.name for cd in class_dirs)


_BUCKET = re.compile(r"[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]")


def bucket_path(bucket: str, key: str = "") -> Path:
    """The local folder behind `s3://bucket/key`: buckets made by `Session.upload_data` live under the home."""
    if not _BUCKET.fullmatch(bucket or ""):
        raise UserError(f"bucket name {bucket!r} is invalid (3-63 lower-case letters, digits, '.' or '-')")
    root = (home() / "buckets" / bucket).resolve()
    path = (root / key.strip("/")).resolve() if key.strip("/") else root
    if path != root and root not in path.parents:
        raise UserError(f"s3://{bucket}/{key} points outside its bucket")
    return path


def local_bucket_path(location: str) -> Path | None:
    """The local folder of an s3:// URI whose bucket exists under the home, else None (real S3)."""
    if not location.startswith("s3://"):
        return None
    bucket, _, key = location[len("s3://"):].partition("/")
    if not _BUCKET.fullmatch(bucket) or not (home() / "buckets" / bucket).is_dir():
        return None
    return bucket_path(bucket, key)


def resolve_location(location: str) -> Path:
    """A local path for a data location: a path, a file:// URI, an s3:// URI of a local bucket, or any fsspec URI
    (copied into the cache once)."""
    if "://" not in location:
        return Path(location).expanduser().resolve()
    if location.startswith("file://"):
        return Path(location[len("file://"):]).resolve()
    local = local_bucket_path(location)
    if local is not None:
        return local
    import fsspec

    try:
        fs, path = fsspec.core.url_to_fs(location)
    except (ImportError, ValueError) as e:
        raise UserError(f"cannot open {location}: {e}") from None
    local = home() / "datasets" / hashlib.sha1(location.encode()).hexdigest()[:16]
    if not (local / ".complete").exists():
        if not fs.exists(path):
            raise UserError(f"data location not found: {location}")
        local.mkdir(parents=True, exist_ok=True)
        fs.get(path.rstrip("/") + "/", str(local), recursive=True)
        (local / ".complete").touch()
    return local


def upload(src: str, dest: str) -> int:
    """Copies a local dataset folder to a location (local path or fsspec URI); returns the number of files."""
    import fsspec

    source = Path(src)
    if not source.is_dir():
        raise UserError(f"data folder not found: {source}")
    local = local_bucket_path(dest)  # s3:// of a bucket kept under the home (Session.upload_data): that folder
    try:
        fs, target = fsspec.core.url_to_fs(str(local) if local is not None else dest)
    except (ImportError, ValueError) as e:
        raise UserError(f"cannot open {dest}: {e}") from None
    files = [p for p in sorted(source.rglob("*")) if p.is_file()]
    for p in files:
        rel = p.relative_to(source).as_posix()
        out = f"{target.rstrip('/')}/{rel}"
        fs.makedirs(out.rsplit("/", 1)[0], exist_ok=True)
        fs.put_file(str(p), out)
    return len(files)

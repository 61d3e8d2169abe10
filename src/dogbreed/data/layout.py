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
        class_dirs = sorted(p for p in d.iterdir() if p.is_dir() and not p.name.startswith("."))
        files, labels = [], []
        for cd in class_dirs:
            for f in sorted(cd.iterdir()):
                if f.is_file() and not f.name.startswith("."):
                    files.append(f)
                    labels.append(cd.name)
        if not files:
            raise UserError(f"split {name}/ in {root} has no images (expected one folder per class with images)")
        splits[name] = Split(name, tuple(files), tuple(labels))
        folders[name] = tuple(cd.name for cd in class_dirs)
    return DatasetLayout(root=root, splits=splits, folders=folders)


def resolve_location(location: str) -> Path:
    """A local path for a data location: a path, a file:// URI, or any fsspec URI (copied into the cache once)."""
    if "://" not in location:
        return Path(location).expanduser().resolve()
    if location.startswith("file://"):
        return Path(location[len("file://"):]).resolve()
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
    try:
        fs, target = fsspec.core.url_to_fs(dest)
    except (ImportError, ValueError) as e:
        raise UserError(f"cannot open {dest}: {e}") from None
    files = [p for p in sorted(source.rglob("*")) if p.is_file()]
    for p in files:
        rel = p.relative_to(source).as_posix()
        out = f"{target.rstrip('/')}/{rel}"
        fs.makedirs(out.rsplit("/", 1)[0], exist_ok=True)
        fs.put_file(str(p), out)
    return len(files)

"""`.lst` manifests, as MXNet's im2rec writes them and SageMaker's image-classification algorithm reads them.

One line per image, tab-separated: `index <TAB> label <TAB> relative/path.jpg`, the path relative to the image
channel the manifest belongs to (`train_lst` -> `train`). Labels come in two styles, and which one a manifest uses
is decided from the data and said in the log:
- 0-based class indexes, usually written as floats (`0.000000`, `1.000000`, ...), as im2rec writes them;
- the class folder's own number (`001` ... `133` in the Udacity dogImages layout `001.Affenpinscher/...`), as the
  seed notebook wrote them: label L means the folder whose numeric prefix is L.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

from dogbreed.config import UserError

log = logging.getLogger("dogbreed")
_FOLDER_NUMBER = re.compile(r"^(\d+)[.\-_]")


@dataclass(frozen=True)
class ManifestEntry:
    line: int
    label: float
    path: Path  # absolute, inside the image channel
    relative: str


@dataclass(frozen=True)
class Manifest:
    file: Path
    entries: tuple[ManifestEntry, ...]
    skipped: tuple[str, ...]  # "file:line: why", for lines skipped with on_bad_file=skip


def read_manifest(lst: Path, images: Path, on_bad_file: str = "error", num_classes: int | None = None) -> Manifest:
    """Parses and checks every line; a bad line is a one-line UserError naming the file and line (or skipped)."""
    if not lst.is_file():
        raise UserError(f"manifest {lst} not found")
    root = images.resolve()
    entries, skipped, seen = [], [], set()
    try:
        lines = lst.read_text().splitlines()
    except UnicodeDecodeError:
        raise UserError(f"manifest {lst} is not a text file (an .lst file has tab-separated lines)") from None
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            entry = _parse_line(raw, number, root, num_classes)
            if entry.relative in seen:
                raise ValueError(f"{entry.relative} is listed twice")
            seen.add(entry.relative)
            entries.append(entry)
        except ValueError as e:
            where = f"{lst}:{number}"
            if on_bad_file != "skip":
                raise UserError(f"{where}: {e} (fix the line, or pass --on-bad-file skip)") from None
            skipped.append(f"{where}: {e}")
    if not entries:
        raise UserError(f"manifest {lst} lists no usable images")
    return Manifest(lst, tuple(entries), tuple(skipped))


def _parse_line(raw: str, number: int, root: Path, num_classes: int | None) -> ManifestEntry:
    parts = raw.rstrip("\n").split("\t")
    if len(parts) < 3:
        raise ValueError(f"expected 'index<TAB>label<TAB>path', found {len(parts)} column(s)")
    if len(parts) > 3:
        raise ValueError("several labels on one line (multi-label) are not supported; one breed per photo")
    index, label_text, relative = (p.strip() for p in parts)
    try:
        float(index)
    except ValueError:
        raise ValueError(f"index {index!r} is not a number") from None
    try:
        label = float(label_text)
    except ValueError:
        raise ValueError(f"label {label_text!r} is not a number") from None
    if label < 0 or not label.is_integer():
        raise ValueError(f"label {label_text} is not a class number (a whole number >= 0)")
    if num_classes is not None and label > num_classes:
        raise ValueError(f"label {label_text} is out of range for num_classes={num_classes}")
    rel = Path(relative)
    # Lexically inside the channel is what counts: a symlinked image in it (a user's own layout) is fine.
    if not relative or rel.is_absolute() or ".." in rel.parts:
        raise ValueError(f"path {relative!r} points outside the image channel")
    path = root / rel
    if not path.is_file():
        raise ValueError(f"image {relative} not found in {root}")
    return ManifestEntry(number, label, path, rel.as_posix())


def class_names(manifests: list[Manifest], num_classes: int | None = None) -> tuple[dict[float, str], str]:
    """Label -> class name for all manifests of a dataset, and which label style was found (for the log).

    With folder-number labels, a label names the folder whose numeric prefix equals it; with 0-based indexes, the
    class is named after the folder its images are in (or `class_N` when images are not in class folders)."""
    entries = [e for m in manifests for e in m.entries]
    folders: dict[float, set[str]] = {}
    for e in entries:
        parent = Path(e.relative).parent.name
        folders.setdefault(e.label, set()).add(parent)
    folder_numbers = {}
    for label, names in folders.items():
        numbers = {int(m.group(1)) for n in names if (m := _FOLDER_NUMBER.match(n))}
        folder_numbers[label] = numbers
    if folder_numbers and all(nums == {int(label)} for label, nums in folder_numbers.items()):
        style = "the class folder's number (e.g. label 1 = folder 001.*)"
    else:
        labels = sorted(folders)
        if num_classes is not None and labels and labels[-1] >= num_classes:
            raise UserError(f"label {labels[-1]:g} is out of range: 0-based labels must be below "
                            f"num_classes={num_classes}")
        style = "0-based class indexes"
    names = {}
    for label, found in folders.items():
        names[label] = sorted(found)[0] if len(found) == 1 and "" not in found else f"class_{int(label)}"
    if len(set(names.values())) != len(names):  # two labels share a folder: fall back to label names
        names = {label: f"class_{int(label)}" for label in folders}
    return names, style

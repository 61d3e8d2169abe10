"""`dogbreed data check`: what is wrong with a dataset, before a training job finds out the hard way."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from dogbreed.data.layout import DatasetLayout, discover, resolve_location
from dogbreed.data.scan import FileScan, scan_files
from dogbreed.progress import progress


@dataclass
class CheckReport:
    root: str
    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # split -> class folder -> usable images
    bad_files: list[dict] = field(default_factory=list)  # {split, path, reason}
    empty_classes: list[dict] = field(default_factory=list)  # {split, class}
    missing_classes: list[dict] = field(default_factory=list)  # {class, missing_from: [splits]}
    single_split_classes: list[str] = field(default_factory=list)
    cross_split_duplicates: list[dict] = field(default_factory=list)  # {sha1, files: [{split, path}]}
    image_sizes: dict[str, dict[str, float]] = field(default_factory=dict)  # split -> stats

    @property
    def structural_problems(self) -> list[str]:
        """Problems no flag can skip: the splits do not describe the same classes."""
        out = []
        for m in self.missing_classes:
            out.append(f"class {m['class']} is missing from {', '.join(m['missing_from'])}")
        for e in self.empty_classes:
            out.append(f"class {e['class']} has no usable images in {e['split']}/")
        return out

    @property
    def problems(self) -> list[str]:
        out = self.structural_problems
        for b in self.bad_files:
            out.append(f"{b['path']}: {b['reason']}")
        for d in self.cross_split_duplicates:
            where = ", ".join(f"{f['split']}/{f['path']}" for f in d["files"])
            out.append(f"same image in several splits: {where}")
        return out

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict:
        d = asdict(self)
        d["ok"] = self.ok
        d["problems"] = self.problems
        return d

    def summary_lines(self) -> list[str]:
        lines = [f"dataset {self.root}"]
        for split, counts in self.counts.items():
            n = sum(counts.values())
            lo, hi = (min(counts.values()), max(counts.values())) if counts else (0, 0)
            s = self.image_sizes.get(split, {})
            lines.append(f"  {split}: {n} images, {len(counts)} classes ({lo}-{hi} per class), "
                         f"sizes {s.get('min_width', 0):.0f}-{s.get('max_width', 0):.0f} x "
                         f"{s.get('min_height', 0):.0f}-{s.get('max_height', 0):.0f} px")
        problems = self.problems
        lines.append(f"  {len(problems)} problem(s)" if problems else "  no problems found")
        lines += [f"  - {p}" for p in problems[:50]]
        if len(problems) > 50:
            lines.append(f"  ... and {len(problems) - 50} more (use --json for all)")
        return lines


def build_report(layout: DatasetLayout, scans: dict[str, list[FileScan]]) -> CheckReport:
    report = CheckReport(root=str(layout.root))
    all_classes = set(layout.classes)
    by_hash: dict[str, list[dict]] = {}
    for split_name, split in layout.splits.items():
        counts = {c: 0 for c in layout.folders[split_name]}
        widths, heights = [], []
        for label, scan in zip(split.labels, scans[split_name]):
            rel = _rel(layout, scan.path)
            if scan.error:
                report.bad_files.append({"split": split_name, "path": rel, "reason": scan.error})
                continue
            counts[label] += 1
            widths.append(scan.width)
            heights.append(scan.height)
            by_hash.setdefault(scan.sha1, []).append({"split": split_name, "path": rel})
        report.counts[split_name] = counts
        report.empty_classes += [{"split": split_name, "class": c} for c, n in counts.items() if n == 0]
        if widths:
            w, h = np.array(widths), np.array(heights)
            report.image_sizes[split_name] = {"min_width": float(w.min()), "max_width": float(w.max()),
                                              "mean_width": float(w.mean()), "min_height": float(h.min()),
                                              "max_height": float(h.max()), "mean_height": float(h.mean())}
    for c in sorted(all_classes):
        missing = [s for s in layout.splits if c not in layout.folders[s]]
        if missing:
            report.missing_classes.append({"class": c, "missing_from": missing})
            if len(layout.splits) - len(missing) == 1:
                report.single_split_classes.append(c)
    for digest, files in by_hash.items():
        if len({f["split"] for f in files}) > 1:
            report.cross_split_duplicates.append({"sha1": digest, "files": files})
    return report


def _rel(layout: DatasetLayout, path: str) -> str:
    try:
        from pathlib import Path

        return str(Path(path).relative_to(layout.root))
    except ValueError:
        return path


def check_dataset(location: str, workers: int = 2, show_progress: bool = True) -> CheckReport:
    """`dogbreed data check`: scans every file of every split (no model needed)."""
    layout = discover(resolve_location(location), required=("train",))
    scans = {}
    for name, split in layout.splits.items():
        with progress(len(split.files), f"checking {name}", show_progress) as tick:
            scans[name] = [s for s, _ in scan_files(list(split.files), None, workers, tick)]
    return build_report(layout, scans)

"""A training job's data: every split decoded (or loaded from the decode cache) and checked before training."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

from dogbreed.config import Hyperparameters, UserError
from dogbreed.data.cache import CachedSplit, load_or_build
from dogbreed.data.check import CheckReport, build_report
from dogbreed.data.layout import DatasetLayout, describe_data, discover_dataset, readable_label
from dogbreed.models.registry import BackboneSpec
from dogbreed.progress import progress

log = logging.getLogger("dogbreed")


@dataclass
class PreparedData:
    layout: DatasetLayout
    report: CheckReport
    splits: dict[str, CachedSplit]
    class_folders: list[str]
    class_labels: list[str]
    skipped: list[dict]


def prepare_data(location: object, hp: Hyperparameters, spec: BackboneSpec, on_bad_file: str,
                 show_progress: bool = True, check: Callable[[], None] = lambda: None) -> PreparedData:
    """Decodes (or loads from cache) every split and applies the data check; raises UserError on problems.
    `location` is a dataset folder/URI or SageMaker channels; `check` is called as work progresses (it raises to
    stop the job)."""
    if on_bad_file not in ("error", "skip"):
        raise UserError(f"--on-bad-file must be error or skip, not {on_bad_file!r}")
    layout = discover_dataset(location, on_bad_file=on_bad_file, num_classes=hp.num_classes)
    for note in layout.notes:
        log.info("%s", note)
    for line in layout.skipped:
        log.warning("skipped manifest line %s", line)
    location = describe_data(location)
    if len(layout.classes) < 2:
        raise UserError(f"data in {layout.root} has {len(layout.classes)} class: a classifier needs at least 2")
    index = layout.class_index()
    splits, scans = {}, {}
    for name, split in layout.splits.items():
        with progress(len(split.files), f"decoding {name}", show_progress) as tick:
            def on_progress(n: int, tick=tick) -> None:
                tick(n)
                check()

            cached = load_or_build(split, spec.preprocessing, index, hp.num_workers, on_progress)
        splits[name], scans[name] = cached, list(cached.scans)
    report = build_report(layout, scans)
    if report.structural_problems:
        first = report.structural_problems[0]
        more = len(report.structural_problems) - 1
        raise UserError(f"classes differ between splits: {first}" + (f" (and {more} more)" if more else "")
                        + f"; run `dogbreed data check {location}`")
    skippable = report.problems
    if skippable and on_bad_file == "error":
        raise UserError(f"data has {len(skippable)} problem(s), first: {skippable[0]}; fix them, or pass "
                        f"--on-bad-file skip (see `dogbreed data check {location}`)")
    skipped = report.bad_files
    if skippable:
        log.warning("skipping %d bad file(s); %d image(s) found in several splits kept", len(skipped),
                    len(report.cross_split_duplicates))
        for b in skipped:
            log.warning("skipped %s/%s: %s", b["split"], b["path"], b["reason"])
    folders = list(layout.classes)
    return PreparedData(layout, report, splits, folders, [readable_label(c) for c in folders], skipped)

"""`dogbreed logs export NAME DEST`: a job's, tuning job's or endpoint's log, metrics and reports copied to a
folder or any fsspec URI (s3://...), the way the seed exported its CloudWatch logs to its bucket."""

from __future__ import annotations

from pathlib import Path

from dogbreed.config import UserError
from dogbreed.jobs import endpoint_records, names, records

# What is worth exporting from a job folder: logs, records, metrics, rule reports and the HTML reports.
PATTERNS = ("*.log", "job.json", "metrics.json", "report.html", "analytics.*", "*.png", "debug/rules/*.json",
            "evaluation/*", "evaluations/*/*", "profiler/*")


def _files(folder: Path) -> list[Path]:
    found: set[Path] = set()
    for pattern in PATTERNS:
        found.update(p for p in folder.glob(pattern) if p.is_file())
    return sorted(found)


def export_logs(name: str, dest: str) -> list[str]:
    """Copies the files to DEST/NAME/...; returns the destinations written."""
    import fsspec

    names.validate(name, "job or endpoint")
    if records.exists(name):
        record = records.load(name)
        folders = {name: records.job_dir(name)}
        if record.kind == "tuning":
            for trial in records.list_records(parent=name):
                folders[f"{name}/{trial.name}"] = records.job_dir(trial.name)
    elif endpoint_records.exists(name):
        folders = {name: endpoint_records.endpoint_dir(name)}
    else:
        raise UserError(f"no job or endpoint named {name!r}")
    from dogbreed.data.layout import local_bucket_path

    local = local_bucket_path(dest)  # an s3:// URI of a bucket kept under the home (Session.upload_data)
    try:
        fs, root = fsspec.core.url_to_fs(str(local) if local is not None else dest)
    except (ImportError, ValueError) as e:
        raise UserError(f"cannot write to {dest}: {e}") from None
    written = []
    for prefix, folder in folders.items():
        for f in _files(folder):
            target = f"{root.rstrip('/')}/{prefix}/{f.relative_to(folder).as_posix()}"
            try:
                fs.makedirs(target.rsplit("/", 1)[0], exist_ok=True)
                fs.put_file(str(f), target)
            except OSError as e:
                raise UserError(f"cannot write {target}: {e}") from None
            written.append(target)
    return written

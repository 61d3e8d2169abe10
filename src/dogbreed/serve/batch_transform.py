"""Batch transform: predictions for every image under a folder or URI, as JSON Lines, resumable after a crash.

Each finished chunk is appended and flushed to disk before the next starts; a rerun reads what is there and
skips the sources already done.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
from pathlib import Path
from typing import Callable, Iterator

from dogbreed.config import UserError, home
from dogbreed.data.images import ImageError
from dogbreed.data.layout import IMAGE_SUFFIXES, resolve_location
from dogbreed.serve.api import BreedClassifierAPI

OUTPUT_NAME = "predictions.jsonl"


def _output_file(output: str) -> tuple[Path, Callable[[], None] | None]:
    """Local file to append to, and a function that publishes it when the output is a remote URI."""
    if "://" not in output or output.startswith("file://"):
        d = Path(output.removeprefix("file://")).expanduser()
        if d.exists() and not d.is_dir():
            raise UserError(f"--output {output} is a file; give a folder (predictions go to {OUTPUT_NAME} in it)")
        try:
            d.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UserError(f"cannot create the output folder {d}: {e.strerror}") from None
        return d / OUTPUT_NAME, None
    import fsspec

    fs, target = fsspec.core.url_to_fs(output)
    remote = f"{target.rstrip('/')}/{OUTPUT_NAME}"
    local = home() / "batch" / hashlib.sha1(output.encode()).hexdigest()[:16] / OUTPUT_NAME
    local.parent.mkdir(parents=True, exist_ok=True)
    if not local.exists() and fs.exists(remote):
        fs.get_file(remote, str(local))

    def publish() -> None:
        fs.makedirs(target, exist_ok=True)
        fs.put_file(str(local), remote)

    return local, publish


@contextlib.contextmanager
def _exclusive(out_path: Path, output: str) -> Iterator[None]:
    """One batch transform at a time per output: a second one would append the same predictions again."""
    lock_path = out_path.with_name(out_path.name + ".lock")
    with lock_path.open("a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            raise UserError(f"another batch transform ({holder}) is writing to {output}; wait for it to finish or "
                            "choose another --output") from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()}")
        f.flush()
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _done_sources(path: Path) -> set[str]:
    done = set()
    if not path.exists():
        return done
    lines = path.read_text().splitlines()
    for line in lines:
        try:
            done.add(json.loads(line)["source"])
        except (ValueError, KeyError):
            break  # a torn last line from a crash: dropped and redone below
    good = [ln for ln in lines if ln.strip()][: len(done)]
    path.write_text("".join(ln + "\n" for ln in good))
    return done


def batch_transform(model_dir: Path, input_location: str, output: str, *, top_k: int | None = None,
                    chunk_size: int = 32, on_progress: Callable[[int], None] | None = None) -> dict[str, int]:
    root = resolve_location(input_location)
    if not root.is_dir():
        raise UserError(f"input folder not found: {input_location}")
    sources = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not sources:
        raise UserError(f"no images under {input_location}")
    out_path, publish = _output_file(output)
    with _exclusive(out_path, output):
        return _transform(model_dir, root, sources, out_path, publish, output, top_k, chunk_size, on_progress)


def _transform(model_dir: Path, root: Path, sources: list[Path], out_path: Path, publish: Callable[[], None] | None,
               output: str, top_k: int | None, chunk_size: int, on_progress: Callable[[int], None] | None
               ) -> dict[str, int]:
    done = _done_sources(out_path)
    todo = [p for p in sources if p.relative_to(root).as_posix() not in done]
    if on_progress:
        on_progress(len(sources) - len(todo))
    api = BreedClassifierAPI(model_dir).setup()
    errors = 0
    with out_path.open("a") as out:
        for start in range(0, len(todo), chunk_size):
            chunk = todo[start:start + chunk_size]
            squares, lines = [], {}
            for p in chunk:
                rel = p.relative_to(root).as_posix()
                try:
                    squares.append((rel, api.decode(p.read_bytes())))
                except ImageError as e:
                    lines[rel] = {"source": rel, "error": str(e)}
                    errors += 1
            if squares:
                probs = api.predict([s for _, s in squares])
                for (rel, _), pr in zip(squares, probs):
                    lines[rel] = {"source": rel, "prediction": api.encode(pr, None)}
                    if top_k:
                        lines[rel].update({"top_k": api.encode(pr, top_k), **api.judge(pr)})
            for p in chunk:
                out.write(json.dumps(lines[p.relative_to(root).as_posix()]) + "\n")
            out.flush()
            os.fsync(out.fileno())
            if publish:
                publish()
            if on_progress:
                on_progress(len(chunk))
    return {"total": len(sources), "skipped_done": len(sources) - len(todo), "processed": len(todo),
            "errors": errors, "output": str(out_path) if publish is None else output}

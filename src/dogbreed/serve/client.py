"""`dogbreed predict`: image files through a running endpoint (HTTP) or a model loaded in this process."""

from __future__ import annotations

import mimetypes
from pathlib import Path
from typing import Any

from dogbreed.config import UserError
from dogbreed.data.images import ImageError


def predict_files(paths: list[str], *, endpoint: str | None = None, model_ref: str | None = None, top_k: int = 5,
                  api_key: str | None = None) -> list[dict[str, Any]]:
    from dogbreed.jobs.model_registry import model_dir_for

    model_dir = model_dir_for(model_ref) if not endpoint else None  # a bad reference is found first
    files = [Path(p) for p in paths]
    missing = [p for p in files if not p.is_file()]
    if missing:
        raise UserError(f"image file not found: {missing[0]}")
    if endpoint:
        return [_via_endpoint(p, endpoint, top_k, api_key) for p in files]
    from dogbreed.serve.api import BreedClassifierAPI

    api = BreedClassifierAPI(model_dir).setup()
    out = []
    for p in files:
        try:
            probs = api.predict([api.decode(p.read_bytes())])[0]
        except ImageError as e:
            out.append({"source": str(p), "error": str(e)})
            continue
        out.append({"source": str(p), "top_k": api.encode(probs, top_k), **api.judge(probs)})
    return out


def _via_endpoint(path: Path, endpoint: str, top_k: int, api_key: str | None) -> dict[str, Any]:
    import httpx

    content_type = mimetypes.guess_type(path.name)[0] or "application/x-image"
    headers = {"Content-Type": content_type, **({"X-Api-Key": api_key} if api_key else {})}
    try:
        r = httpx.post(f"{endpoint.rstrip('/')}/invocations", params={"top_k": top_k}, content=path.read_bytes(),
                       headers=headers, timeout=60)
    except httpx.HTTPError as e:
        raise UserError(f"cannot reach endpoint {endpoint}: {e}") from None
    if r.status_code != 200:
        try:
            message = r.json().get("error", r.text)
        except ValueError:
            message = r.text
        return {"source": str(path), "error": f"HTTP {r.status_code}: {message}"}
    answer = r.json()
    return {"source": str(path), "top_k": answer["predictions"],
            **{k: v for k, v in answer.items() if k != "predictions"}}

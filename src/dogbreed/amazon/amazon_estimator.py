"""SDK v1's `get_image_uri`, which v2 kept as a deprecated alias of `image_uris.retrieve`."""

from __future__ import annotations

from dogbreed.image_uris import retrieve


def get_image_uri(region_name: str | None, repo_name: str, repo_version: str = "1") -> str:
    return retrieve(framework=repo_name, region=region_name, version=repo_version)

"""Backbones: a registry of named timm models whose weights carry their own preprocessing."""

from dogbreed.models.registry import BackboneSpec, get_backbone, list_backbones

__all__ = ["BackboneSpec", "get_backbone", "list_backbones"]

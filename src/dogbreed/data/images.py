"""Decoding one image into the square uint8 array that training, evaluation and serving all start from."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageOps

from dogbreed.preprocessing import Preprocessing

# Anything larger is refused before decoding: a decompression bomb must not take the process down.
MAX_PIXELS = 40_000_000
Image.MAX_IMAGE_PIXELS = MAX_PIXELS

_RESAMPLE = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR, "nearest": Image.NEAREST,
             "lanczos": Image.LANCZOS}


class ImageError(ValueError):
    """The bytes are not a usable image; the message says why in a few words."""


def open_image(data: bytes) -> Image.Image:
    """Decodes fully (truncation shows here), applies EXIF rotation, converts to RGB."""
    if not data:
        raise ImageError("empty file")
    try:
        img = Image.open(io.BytesIO(data))
        if img.width * img.height > MAX_PIXELS:
            raise ImageError(f"image too large ({img.width}x{img.height} pixels)")
        if getattr(img, "n_frames", 1) > 1:
            raise ImageError("animated images are not supported")
        img.load()
    except ImageError:
        raise
    except Image.DecompressionBombError:
        raise ImageError("image too large (decompression bomb)") from None
    except (OSError, SyntaxError, ValueError) as e:
        msg = str(e).lower()
        if "truncated" in msg or "broken data stream" in msg:
            raise ImageError("truncated image") from None
        if "cannot identify" in msg:
            raise ImageError("not an image") from None
        raise ImageError(f"unreadable image ({str(e)[:80]})") from None
    img = ImageOps.exif_transpose(img)
    if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.split()[-1])
        return background
    return img.convert("RGB")


def to_square(img: Image.Image, prep: Preprocessing) -> np.ndarray:
    """Resize the shorter side to `prep.resize_size`, centre-crop a square: HxWx3 uint8 (timm's eval resize)."""
    size = prep.resize_size
    w, h = img.size
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    img = img.resize((nw, nh), _RESAMPLE.get(prep.interpolation, Image.BICUBIC))
    left, top = (nw - size) // 2, (nh - size) // 2
    return np.asarray(img.crop((left, top, left + size, top + size)), dtype=np.uint8)


def decode_to_square(data: bytes, prep: Preprocessing) -> np.ndarray:
    return to_square(open_image(data), prep)

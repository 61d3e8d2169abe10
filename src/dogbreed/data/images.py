"""Decoding one image into the square uint8 array that training, evaluation and serving all start from.

Every failure while turning bytes into pixels (the container, EXIF, mode conversion, ICC profiles, a decoder bug)
is an `ImageError`: a bad file in `data check`, a skipped file with `--on-bad-file skip`, a 400 at the endpoint.
Large photos are decoded at reduced scale (JPEG DCT scaling) or reduced straight after decoding, so a 12-megapixel
phone photo costs what the model needs, not what the camera stored.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

from dogbreed.preprocessing import Preprocessing

# Anything larger is refused before decoding: a decompression bomb must not take the process down.
MAX_PIXELS = 40_000_000
Image.MAX_IMAGE_PIXELS = MAX_PIXELS
DCT_SCALABLE = ("JPEG", "MPO")  # formats whose decoder can skip detail (draft mode)
DECODER_VERSION = 3  # part of the decode cache key: bumped when the same bytes decode to other pixels

_RESAMPLE = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR, "nearest": Image.NEAREST,
             "lanczos": Image.LANCZOS}
_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N")
# Pillow's "possibly corrupt EXIF" warnings: a broken file is judged by whether it decodes, not announced on stderr.
# A filter, not warnings.catch_warnings(): decoding runs in threads, and catch_warnings is not thread-safe.
warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")


class ImageError(ValueError):
    """The bytes are not a usable image; the message says why in a few words."""


@dataclass(frozen=True)
class DecodedImage:
    image: Image.Image  # RGB, upright (EXIF orientation applied), possibly reduced
    width: int  # of the stored picture, upright, before any reduction
    height: int


@dataclass(frozen=True)
class ImageHeader:
    format: str
    width: int
    height: int

    def decode_pixels(self, min_side: int | None) -> int:
        """Pixels the decoder will produce: the cost of decoding, known from the header alone."""
        if min_side and self.format in DCT_SCALABLE:
            scale = 1
            while scale < 8 and min(self.width, self.height) // (scale * 2) >= min_side:
                scale *= 2
            return (self.width // scale) * (self.height // scale)
        return self.width * self.height


def read_header(data: bytes) -> ImageHeader:
    """Format and size without decoding any pixels (cheap enough for an event loop)."""
    if not data:
        raise ImageError("empty file")
    try:
        img = Image.open(io.BytesIO(data))
        return ImageHeader(img.format or "", img.width, img.height)
    except Exception as e:  # noqa: BLE001 - whatever the parser raises, the bytes are not an image we can use
        raise _as_image_error(e) from None


def decode_image(data: bytes, min_side: int | None = None) -> DecodedImage:
    """Decodes fully (truncation shows here), applies EXIF rotation, converts to RGB. With `min_side`, a large image
    is decoded or reduced to no less than `min_side` pixels on its shorter side."""
    if not data:
        raise ImageError("empty file")
    try:
        img = Image.open(io.BytesIO(data))
        if img.width * img.height > MAX_PIXELS:
            raise ImageError(f"image too large ({img.width}x{img.height} pixels)")
        if getattr(img, "n_frames", 1) > 1 and img.format != "MPO":  # MPO: a camera's extra frames
            raise ImageError("animated images are not supported")
        stored_w, stored_h = img.size
        if min_side and img.format in DCT_SCALABLE:
            img.draft(None, (min_side, min_side))
        img.load()
        decoded_size = img.size
        upright = ImageOps.exif_transpose(img)
        rotated = upright.size != decoded_size and upright.size == decoded_size[::-1]
        width, height = (stored_h, stored_w) if rotated else (stored_w, stored_h)
        if min_side:
            factor = min(upright.size) // min_side
            if factor >= 2:
                upright = upright.reduce(factor)
        return DecodedImage(_to_rgb(upright), width, height)
    except ImageError:
        raise
    except Exception as e:  # noqa: BLE001 - EXIF, ICC, mode conversion, decoder: all mean "bad image"
        raise _as_image_error(e) from None


def _as_image_error(e: BaseException) -> ImageError:
    if isinstance(e, Image.DecompressionBombError):
        return ImageError("image too large (decompression bomb)")
    if isinstance(e, MemoryError):
        return ImageError("image too large to decode")
    msg = str(e).lower()
    if "truncated" in msg or "broken data stream" in msg:
        return ImageError("truncated image")
    if "cannot identify" in msg:
        return ImageError("not an image")
    detail = f"{type(e).__name__}: {str(e)[:80]}" if not isinstance(e, OSError) else str(e)[:80]
    return ImageError(f"unreadable image ({detail})")


def _to_rgb(img: Image.Image) -> Image.Image:
    """RGB, with 16-bit and float greys scaled (not clipped) and transparency flattened onto white."""
    if img.mode in _SIXTEEN_BIT or img.mode in ("I", "F"):
        a = np.asarray(img, dtype=np.float64)
        if img.mode in _SIXTEEN_BIT or (img.mode == "I" and a.max(initial=0) > 255):
            a = a * (255.0 / 65535.0)
        elif img.mode == "F" and a.max(initial=0) <= 1.0:
            a = a * 255.0
        img = Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), "L")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.split()[-1])
        return background
    return img.convert("RGB")


def open_image(data: bytes) -> Image.Image:
    """The whole image, RGB and upright."""
    return decode_image(data).image


def to_square(img: Image.Image, prep: Preprocessing) -> np.ndarray:
    """The centre square, resized to `prep.resize_size`: HxWx3 uint8 (timm's eval resize, shorter side then centre
    crop). Only the square is resampled, so a 16x100000 strip costs a square's work, not a 256x1600000 image's."""
    size = prep.resize_size
    w, h = img.size
    side = min(w, h)
    left, top = (w - side) / 2, (h - side) / 2
    square = img.resize((size, size), _RESAMPLE.get(prep.interpolation, Image.BICUBIC),
                        box=(left, top, left + side, top + side))
    return np.asarray(square, dtype=np.uint8)


def decode_to_square(data: bytes, prep: Preprocessing) -> np.ndarray:
    return to_square(decode_image(data, prep.resize_size).image, prep)

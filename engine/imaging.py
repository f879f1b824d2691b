"""Small Pillow helpers shared by the generation backends."""

from __future__ import annotations

import io
from typing import Literal

from PIL import Image

OutputFormat = Literal["png", "jpeg"]
CONTENT_TYPES: dict[str, str] = {"png": "image/png", "jpeg": "image/jpeg"}


def open_image(data: bytes) -> Image.Image:
    """Decode validated input bytes into RGB (or RGBA when the image has transparency)."""
    image = Image.open(io.BytesIO(data))
    image.load()
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        return image.convert("RGBA")
    return image.convert("RGB")


def fit_longest_side(image: Image.Image, longest_side: int) -> Image.Image:
    """Scale, keeping the aspect ratio, so the longest side is exactly ``longest_side`` pixels."""
    width, height = image.size
    if max(width, height) == longest_side:
        return image.copy()
    scale = longest_side / max(width, height)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    if width >= height:
        size = (longest_side, size[1])
    else:
        size = (size[0], longest_side)
    return image.resize(size, Image.Resampling.LANCZOS)


def encode(image: Image.Image, fmt: OutputFormat) -> bytes:
    out = io.BytesIO()
    if fmt == "jpeg":
        image.convert("RGB").save(out, "JPEG", quality=90)
    else:
        image.save(out, "PNG", compress_level=3)
    return out.getvalue()


def content_type_for(fmt: OutputFormat) -> str:
    return CONTENT_TYPES[fmt]

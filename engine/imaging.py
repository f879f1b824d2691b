"""Small Pillow helpers shared by the generation backends."""

from __future__ import annotations

import contextlib
import io
import threading
from collections.abc import Iterator
from typing import Literal

from PIL import Image

OutputFormat = Literal["png", "jpeg"]
CONTENT_TYPES: dict[str, str] = {"png": "image/png", "jpeg": "image/jpeg"}
PNG_COMPRESS_LEVEL = 1
"""zlib level for PNG results. Measured on a 1K try-on (docs/local-backend.md): level 1 encodes in
0.14 s for a 5 % larger file than level 3 (0.18 s; 0.48 s under load) and 15 % larger than level 6
(0.54 s); a 4K result costs 16 times as much. A result is encoded once per attempt, on the job's
critical path, and stored once: the bytes are cheaper than the seconds."""


MAX_WORKING_SIDE = 4096
"""The side an input is shrunk towards when decoded: the largest result (4K) needs no more, and a
40-megapixel input (the default pixel cap) would otherwise cost hundreds of megabytes in every step
after."""
MAX_WORKING_PIXELS = 24_000_000
"""Past this an input is shrunk below ``MAX_WORKING_SIDE`` rather than kept above it: a model's 4K
answer (4096x4096, 5504x3072, 6336x2688: about 17 megapixels) keeps every pixel it has, while a
36-megapixel photo is halved instead of held at 144 MB through every step after."""
REDUCING_GAP = 3.0
"""Pillow's ``reducing_gap``: shrink by whole factors with the cheap box ``reduce()`` first, down to
3x the target, then LANCZOS the rest; at 3 the result is indistinguishable from LANCZOS alone."""
_SIXTEEN_BIT_MODES = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N"})


class _DecodeBudget:
    """How many pixels the threads of one process may hold decoded at full size at once.

    A worker runs several jobs in threads; without this, four 40-megapixel inputs decoding together
    would need 640 MB before the first is shrunk. One image over the budget takes all of it.
    """

    def __init__(self, pixels: int) -> None:
        self.pixels = pixels
        self._free = pixels
        self._ready = threading.Condition()

    @contextlib.contextmanager
    def hold(self, pixels: int) -> Iterator[None]:
        wanted = min(pixels, self.pixels)
        with self._ready:
            self._ready.wait_for(lambda: self._free >= wanted)
            self._free -= wanted
        try:
            yield
        finally:
            with self._ready:
                self._free += wanted
                self._ready.notify_all()


DECODE_BUDGET = _DecodeBudget(48_000_000)


def open_image(data: bytes, max_side: int = MAX_WORKING_SIDE) -> Image.Image:
    """Decode validated input bytes into RGB (or RGBA when the image has transparency), small enough
    for the steps after it.

    Downscaled cheaply before anything costly, and never by LANCZOS here (the caller's
    :func:`fit_longest_side` does that once, at its real target): a JPEG is decoded at 1/2, 1/4 or
    1/8 scale by libjpeg itself (``draft``), anything else is shrunk by a whole factor with the box
    ``reduce()``: to just above ``max_side``, or below it past :data:`MAX_WORKING_PIXELS` (a 6000²
    photo becomes 3000²: a 4K result from it is upscaled a little, which costs less than a resize's
    two full-size passes). The size in the header is checked against Pillow's
    bomb limit before a pixel is decoded, and full-size decodes share the process's
    :data:`DECODE_BUDGET`. An animated image gives its first frame; 16-bit grayscale is scaled to
    8 bits (Pillow's own conversion clips it to white).
    """
    source = Image.open(io.BytesIO(data))
    width, height = source.size
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and width * height > limit:
        raise Image.DecompressionBombError(f"{width}x{height} is over {limit} pixels")
    if source.format == "JPEG" and max(width, height) >= 2 * max_side:
        # the smallest of libjpeg's scales that keeps the longest side over max_side / 2
        source.draft(None, _fitted_size(source.size, max_side // 2))
    with DECODE_BUDGET.hold(source.width * source.height):
        source.load()
        image: Image.Image = source
        if image.mode in _SIXTEEN_BIT_MODES:
            image = image.convert("I").point(lambda value: value * (1 / 256)).convert("L")
        transparent = image.mode in ("RGBA", "LA", "PA") or (
            image.mode == "P" and "transparency" in image.info
        )
        target = "RGBA" if transparent else "RGB"
        if image.mode in ("P", "1"):  # Pillow shrinks these only by sampling: convert first
            image = image.convert(target)
        factor = max(1, max(image.size) // max_side)
        if (image.width // factor) * (image.height // factor) > MAX_WORKING_PIXELS:
            factor = -(-max(image.size) // max_side)  # ceiling: one pass, no intermediate image
        if factor >= 2:
            image = image.reduce(factor)
        # convert() to the same mode would copy the whole image for nothing
        return image if image.mode == target else image.convert(target)


def _fitted_size(size: tuple[int, int], longest_side: int) -> tuple[int, int]:
    width, height = size
    scale = longest_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


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
    return image.resize(size, Image.Resampling.LANCZOS, reducing_gap=REDUCING_GAP)


def encode(image: Image.Image, fmt: OutputFormat) -> bytes:
    out = io.BytesIO()
    if fmt == "jpeg":
        image.convert("RGB").save(out, "JPEG", quality=90)
    else:
        image.save(out, "PNG", compress_level=PNG_COMPRESS_LEVEL)
    return out.getvalue()


def content_type_for(fmt: OutputFormat) -> str:
    return CONTENT_TYPES[fmt]

"""``stock``: the fixed answer for test keys. Never calls a model, costs nothing.

A deterministic picture drawn in code (nothing to ship or download), scaled to
the requested size and format, so test-key integrations exercise the same
sizes, formats and links as live keys.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib

from PIL import Image, ImageDraw

from engine.backends.base import CatalogInput, GeneratedImage, OutputFormat, TryonInput
from engine.imaging import fit_longest_side

BASE_SIZE = 1024
CATALOG_QUANTITIES = (6, 12)
SHARED_PREFIX = "stock/"
"""Where the stock answers are stored, once per picture, for every test-key job to reference
(``engine.execution``): outside ``accounts/``, so an account's erasure leaves them, and never
deleted by a job's retention purge or cancel (:func:`is_shared_key`)."""
EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg"}


@functools.cache
def stock_image() -> Image.Image:
    image = Image.new("RGB", (BASE_SIZE, BASE_SIZE))
    draw = ImageDraw.Draw(image)
    for y in range(BASE_SIZE):
        shade = 225 - y * 60 // BASE_SIZE
        draw.line([(0, y), (BASE_SIZE, y)], fill=(shade, shade - 10, shade + 20))
    # a simple figure wearing a shirt
    draw.ellipse((432, 140, 592, 320), fill=(224, 188, 160))
    draw.polygon(
        [
            (300, 380),
            (430, 340),
            (594, 340),
            (724, 380),
            (800, 560),
            (700, 600),
            (680, 520),
            (680, 900),
            (344, 900),
            (344, 520),
            (324, 600),
            (224, 560),
        ],
        fill=(40, 90, 160),
    )
    draw.rectangle((0, 950, BASE_SIZE, BASE_SIZE), fill=(30, 30, 40))
    draw.text((40, 965), "TEST MODE - stock image, no model was called", fill=(240, 240, 240), font_size=36)
    return image


def stock_shot(number: int, total: int) -> Image.Image:
    """The stock picture with a shot badge, so the images of a stock catalog are distinct."""
    image = stock_image().copy()
    draw = ImageDraw.Draw(image)
    draw.rounded_rectangle((BASE_SIZE - 300, 40, BASE_SIZE - 40, 130), radius=18, fill=(30, 30, 40))
    draw.text((BASE_SIZE - 276, 58), f"SHOT {number}/{total}", fill=(240, 240, 240), font_size=48)
    return image


@functools.lru_cache(maxsize=16)
def stock_result(longest_side: int, output_format: OutputFormat) -> GeneratedImage:
    """The stock answer at one size and format, encoded once per process (the answer never changes;
    re-encoding it cost every test-key job tens of milliseconds of CPU)."""
    return GeneratedImage.encoded(fit_longest_side(stock_image(), longest_side), output_format)


@functools.lru_cache(maxsize=48)
def stock_catalog_shot(
    number: int, total: int, longest_side: int, output_format: OutputFormat
) -> GeneratedImage:
    """One shot of the stock catalog, encoded once per process like :func:`stock_result`."""
    return GeneratedImage.encoded(fit_longest_side(stock_shot(number, total), longest_side), output_format)


@functools.lru_cache(maxsize=64)
def shared_key(image: GeneratedImage) -> str:
    """The object key of a stock picture: named by its bytes' digest, so every job referencing it
    keeps exactly the picture it was answered with, whatever later versions of this module draw.
    Remembered per picture (the same few objects, whose bytes' hash Python keeps): no digest per job."""
    digest = hashlib.blake2b(image.data, digest_size=16).hexdigest()
    return f"{SHARED_PREFIX}{digest}.{EXTENSIONS[image.content_type]}"


def is_shared_key(key: str) -> bool:
    """A stock picture every test-key job of that size and format references: not one job's to delete."""
    return key.startswith(SHARED_PREFIX)


_encoded: dict[tuple[int, OutputFormat], GeneratedImage] = {}
"""The stock answers already encoded in this process (a few sizes and formats), read on the event
loop without a thread hop; encoding one the first time takes up to a second (4K) and runs in a thread."""


class StockBackend:
    name = "stock"

    async def tryon(self, request: TryonInput) -> GeneratedImage:
        key = (request.longest_side, request.output_format)
        image = _encoded.get(key)
        if image is None:
            image = await asyncio.to_thread(stock_result, *key)
            if len(_encoded) < 16:
                _encoded[key] = image
        return image

    async def catalog(self, request: CatalogInput) -> list[GeneratedImage]:
        if request.quantity not in CATALOG_QUANTITIES:
            raise ValueError(f"a catalog has 6 or 12 shots, not {request.quantity}")
        return await asyncio.to_thread(self._catalog, request)

    def _catalog(self, request: CatalogInput) -> list[GeneratedImage]:
        return [
            stock_catalog_shot(number, request.quantity, request.longest_side, request.output_format)
            for number in range(1, request.quantity + 1)
        ]

"""``stock``: the fixed answer for test keys. Never calls a model, costs nothing.

A deterministic picture drawn in code (nothing to ship or download), scaled to
the requested size and format, so test-key integrations exercise the same
sizes, formats and links as live keys.
"""

from __future__ import annotations

import asyncio
import functools

from PIL import Image, ImageDraw

from engine.backends.base import CatalogInput, GeneratedImage, OutputFormat, TryonInput
from engine.imaging import fit_longest_side

BASE_SIZE = 1024
CATALOG_QUANTITIES = (6, 12)


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


class StockBackend:
    name = "stock"

    async def tryon(self, request: TryonInput) -> GeneratedImage:
        return await asyncio.to_thread(stock_result, request.longest_side, request.output_format)

    async def catalog(self, request: CatalogInput) -> list[GeneratedImage]:
        if request.quantity not in CATALOG_QUANTITIES:
            raise ValueError(f"a catalog has 6 or 12 shots, not {request.quantity}")
        return await asyncio.to_thread(self._catalog, request)

    def _catalog(self, request: CatalogInput) -> list[GeneratedImage]:
        return [
            stock_catalog_shot(number, request.quantity, request.longest_side, request.output_format)
            for number in range(1, request.quantity + 1)
        ]

"""``stock``: the fixed answer for test keys. Never calls a model, costs nothing.

A deterministic picture drawn in code (nothing to ship or download), scaled to
the requested size and format, so test-key integrations exercise the same
sizes, formats and links as live keys.
"""

from __future__ import annotations

import asyncio
import functools

from PIL import Image, ImageDraw

from engine.backends.base import GeneratedImage, TryonInput
from engine.imaging import content_type_for, encode, fit_longest_side

BASE_SIZE = 1024


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


class StockBackend:
    name = "stock"

    async def tryon(self, request: TryonInput) -> GeneratedImage:
        return await asyncio.to_thread(self._tryon, request)

    def _tryon(self, request: TryonInput) -> GeneratedImage:
        image = fit_longest_side(stock_image(), request.longest_side)
        return GeneratedImage(
            data=encode(image, request.output_format),
            content_type=content_type_for(request.output_format),
            width=image.width,
            height=image.height,
        )

"""``local``: an offline try-on composite made with Pillow, for development and demos.

Catalog jobs turn one product photo into 6 or 12 shots (:mod:`engine.backends.catalog`).

No model: each garment is cut out of its plain background
(:mod:`engine.backends.cutout`), scaled to the person's body and laid over it —
tops over the torso below the face, bottoms below them, a third piece at the
side. The person is kept intact everywhere else (the face region is never
touched). The result has the requested longest side and format. The same inputs
and seed always give the same bytes; the seed only nudges the placement.
"""

from __future__ import annotations

import asyncio

from PIL import Image

from engine.backends.base import CatalogInput, GeneratedImage, GenerationFailed, TryonInput
from engine.backends.catalog import QUANTITIES, render_catalog
from engine.backends.cutout import cut_out
from engine.imaging import fit_longest_side, open_image

TOP_START = 0.42
"""Tops start at this fraction of the height: below the face of an upper-body photo."""
TOP_WIDTH = 0.62
BOTTOM_WIDTH = 0.42
ACCESSORY_WIDTH = 0.22


def _is_bottom(garment: Image.Image) -> bool:
    return garment.height > garment.width * 1.15


def _scaled(garment: Image.Image, width: int) -> Image.Image:
    height = max(1, round(garment.height * width / garment.width))
    return garment.resize((max(1, width), height), Image.Resampling.LANCZOS)


def compose(request: TryonInput) -> Image.Image:
    person = fit_longest_side(open_image(request.person).convert("RGB"), request.longest_side)
    width, height = person.size
    nudge = ((request.seed or 0) % 11 - 5) * width // 1000
    canvas = person.copy()
    garments = [cut_out(open_image(data)) for data in request.garments]
    tops = [garment for garment in garments if not _is_bottom(garment)]
    bottoms = [garment for garment in garments if _is_bottom(garment)]
    top = _scaled(tops[0], round(width * TOP_WIDTH)) if tops else None
    if top is not None and bottoms and top.height > height * 0.36:
        # leave room for the bottoms to show below the top's hem
        top = _scaled(tops[0], round(top.width * height * 0.36 / top.height))
    top_edge = round(height * TOP_START)
    if bottoms:
        # bottoms go under the top's hem (drawn first, so the top covers the waistband)
        bottom = _scaled(bottoms[0], round(width * BOTTOM_WIDTH))
        waist = top_edge + (round(top.height * 0.85) if top is not None else 0)
        canvas.paste(
            bottom, ((width - bottom.width) // 2 + nudge, min(waist, height - bottom.height // 4)), bottom
        )
    if top is not None:
        canvas.paste(top, ((width - top.width) // 2 + nudge, top_edge), top)
    extras = tops[1:] + bottoms[1:]
    for index, extra in enumerate(extras):
        piece = _scaled(extra, round(width * ACCESSORY_WIDTH))
        left = width - piece.width - width // 40 if index == 0 else width // 40
        canvas.paste(piece, (left, height - piece.height - height // 40), piece)
    return canvas


class LocalBackend:
    name = "local"

    async def tryon(self, request: TryonInput) -> GeneratedImage:
        return await asyncio.to_thread(self._tryon, request)

    def _tryon(self, request: TryonInput) -> GeneratedImage:
        try:
            image = compose(request)
        except OSError as exc:
            raise GenerationFailed(f"undecodable input: {exc}", code="internal_error") from exc
        return GeneratedImage.encoded(image, request.output_format)

    async def catalog(self, request: CatalogInput) -> list[GeneratedImage]:
        if request.quantity not in QUANTITIES:
            raise ValueError(f"a catalog has 6 or 12 shots, not {request.quantity}")
        return await asyncio.to_thread(self._catalog, request)

    def _catalog(self, request: CatalogInput) -> list[GeneratedImage]:
        try:
            images = render_catalog(request.product, request.quantity, request.longest_side, request.seed)
        except OSError as exc:
            raise GenerationFailed(f"undecodable input: {exc}", code="internal_error") from exc
        return [GeneratedImage.encoded(image, request.output_format) for image in images]

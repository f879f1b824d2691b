"""``local``: an offline try-on made with classical vision, for development and demos.

Catalog jobs turn one product photo into 6 or 12 shots (:mod:`engine.backends.catalog`).

No model: the person is found (:mod:`engine.backends.body`: the quality gate's face detector,
then a GrabCut person mask seeded by the face and a body prior), each garment is cut out of its
backdrop (:mod:`engine.backends.cutout`) and warped onto the body — a top over the shoulders and
torso, bottoms from the waistband down the legs, a dress over both — clipped to the person, kept
under the head, neck and bare skin, and shaded with the photo's own light
(:mod:`engine.backends.fitting`). Pixels outside the person are the photo's own. A photo in which
no person is found fails with ``generation_failed`` / ``no_person_detected`` (refunded by
default) instead of pasting blindly. The same inputs and seed always give the same bytes; the
seed only nudges the garments sideways by a few pixels.
"""

from __future__ import annotations

import asyncio

from PIL import Image

from engine.backends.base import CatalogInput, GeneratedImage, GenerationFailed, TryonInput
from engine.backends.body import find_body
from engine.backends.catalog import QUANTITIES, render_catalog
from engine.backends.cutout import cut_out
from engine.backends.fitting import dress
from engine.imaging import fit_longest_side, open_image

NO_PERSON = "no_person_detected"


def compose(request: TryonInput) -> Image.Image:
    """The person photo at the requested size with the garments worn; GenerationFailed without one."""
    person = fit_longest_side(open_image(request.person).convert("RGB"), request.longest_side)
    body = find_body(person)
    if body is None:
        raise GenerationFailed(NO_PERSON)
    garments = [cut_out(open_image(data)) for data in request.garments]
    nudge = ((request.seed or 0) % 11 - 5) * max(person.size) / 1000
    return dress(person, body, garments, nudge)


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

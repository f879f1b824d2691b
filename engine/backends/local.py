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
import functools

from PIL import Image

from engine.backends.base import CatalogInput, GeneratedImage, GenerationFailed, TryonInput
from engine.backends.body import Body, find_body
from engine.backends.catalog import QUANTITIES, render_catalog
from engine.backends.cutout import cut_out
from engine.backends.fitting import dress
from engine.backends.memo import DigestMemo
from engine.imaging import MAX_WORKING_SIDE, fit_longest_side, open_image

NO_PERSON = "no_person_detected"


_bodies: DigestMemo[Body | None] = DigestMemo(64)
"""A Body is a few lines and two masks at GrabCut's working size (about 130 KB)."""
_cutouts: DigestMemo[Image.Image] = DigestMemo(32)
"""Cut-outs of up to :data:`CUTOUT_KEPT_PIXELS` (about 8 MB each at most), so a worker keeps < 300 MB."""
CUTOUT_KEPT_PIXELS = 2_000_000


def compose(request: TryonInput) -> Image.Image:
    """The person photo at the requested size with the garments worn; GenerationFailed without one.

    The person found in a photo and each garment's cut-out are remembered by the photo's digest
    (:mod:`engine.backends.memo`): neither depends on anything else, and neither is changed here.
    """
    # decoded no larger than twice the output (open_image keeps at least half its max_side)
    decoded = open_image(request.person, min(MAX_WORKING_SIDE, 2 * request.longest_side))
    person = fit_longest_side(decoded.convert("RGB"), request.longest_side)
    body = _bodies.get(request.person, request.longest_side, functools.partial(find_body, person))
    if body is None:
        raise GenerationFailed(NO_PERSON)
    garments = [_garment(data) for data in request.garments]
    nudge = ((request.seed or 0) % 11 - 5) * max(person.size) / 1000
    return dress(person, body, garments, nudge)


def _garment(data: bytes) -> Image.Image:
    image = open_image(data)
    if image.width * image.height > CUTOUT_KEPT_PIXELS:
        return cut_out(image)
    return _cutouts.get(data, None, functools.partial(cut_out, image))


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

"""Laying cut-out garments onto a found body (:mod:`engine.backends.body`), classically.

Each garment is one of three kinds, told from its silhouette (:func:`garment_kind`):

- **bottoms** (trousers, shorts): the middle of the upper part is fabric and the middle of the
  lower part is open — the gap between the legs;
- **dress**: taller than wide (by 15 %) without that gap;
- **top**: anything else (shirts, jackets, jumpers).

**Where.** A top starts just above the shoulder line and runs down by its own proportions (1.5 to
2.3 heads), a dress starts there too and reaches at most the ankles, bottoms start at the waistband
line and end just below the ankles — in a half-body photo most of them lies below the frame.

**Layering rule.** Garments are worn dress first, then bottoms, then tops; garments of one kind in
the order given. So a top is worn *over* the trousers' waistband (untucked): its hem covers the
waistband, and with bottoms present a top ends 0.3 heads below the waistband line so the trousers
still show.

**How.** Row by row: the garment's row at the same fraction of its height is stretched from its own
left and right edges to the person's left and right edges on that row (the person mask, within a
band around the body's centre line that excludes what stands beside the person), so a shirt follows
the shoulders' slope and the torso's outline and trousers follow the legs — but a row's scale stays
within :data:`SCALE_FREEDOM` of the scale at the shoulders (bottoms: the waistband), so a garment
keeps its own cut. The result is clipped to the person mask (a dress, below the crotch, may also span
the gap between the legs), kept under the head, the neck and bare skin (hands, arms), shaded with
the photo's own light and folds (the garment's colour multiplied by the person's smoothed
luminance relative to its median there), and its edge softened by about a pixel. Pixels outside
the person (and a skirt's span) are never written.
"""

from __future__ import annotations

from typing import Any, Literal

import cv2
import numpy as np
from PIL import Image

from engine.backends.body import Body, FloatArray

Kind = Literal["top", "bottom", "dress"]
LAYER: dict[Kind, int] = {"dress": 0, "bottom": 1, "top": 2}

TOP_LENGTH = (1.5, 2.3)
"""A top's length, in heads, is its own height/width ratio times the body's width, within this."""
NECKLINE = 0.25
"""Tops and dresses start this many heads above the shoulder line: where the neck meets the trapezius."""
TOP_OVER_WAISTBAND = 0.3
"""With bottoms worn too, a top ends this many heads below the waistband line."""
BAND: dict[Kind, float] = {"top": 2.3, "bottom": 1.6, "dress": 2.3}
"""How far from the centre line (in face widths) a garment may reach on each row."""
SCALE_FREEDOM = 1.3
CENTRE_LINE = 0.7
"""Weight of the face's vertical line (against the middle of the person's row) in a row's centre."""
"""How much a row's horizontal scale may differ from the garment's scale at its anchor row."""
SHADING_DETAIL = 0.6
SHADING_LIGHT = 0.2
SHADE_RANGE = (0.55, 1.3)


def garment_kind(garment: Image.Image) -> Kind:
    """Top, bottoms or dress, from the cut-out's silhouette (see the module's docstring)."""
    alpha = np.asarray(garment.getchannel("A")) > 127
    height, width = alpha.shape
    middle = slice(round(width * 0.45), max(round(width * 0.45) + 1, round(width * 0.55)))
    upper = alpha[round(height * 0.05) : round(height * 0.2), middle]
    lower = alpha[round(height * 0.7) : round(height * 0.95), middle]
    if upper.size and lower.size and upper.mean() > 0.8 and lower.mean() < 0.3:
        return "bottom"
    if height > width * 1.15:
        return "dress"
    return "top"


def _smooth(values: FloatArray, window: int) -> FloatArray:
    """Fill gaps (NaN) by interpolation, then a running median and a blur along the rows."""
    index = np.arange(len(values))
    known = ~np.isnan(values)
    if not known.any():
        return values
    filled: FloatArray = np.interp(index, index[known], values[known]).astype(np.float32)
    if window >= 3:
        filled = cv2.medianBlur(filled.reshape(-1, 1), 5).reshape(-1)
        filled = cv2.GaussianBlur(filled.reshape(-1, 1), (1, 0), window / 3).reshape(-1)
    return filled.astype(np.float32)


def _row_extents(mask: Any, low: Any, high: Any) -> tuple[FloatArray, FloatArray]:
    """Leftmost and rightmost set column of each row of ``mask`` within [low, high] (NaN: none)."""
    columns = np.arange(mask.shape[1])[None, :]
    inside = mask & (columns >= low[:, None]) & (columns <= high[:, None])
    anywhere = inside.any(axis=1)
    left = np.where(anywhere, inside.argmax(axis=1), np.nan).astype(np.float32)
    right = np.where(anywhere, mask.shape[1] - 1 - inside[:, ::-1].argmax(axis=1), np.nan).astype(np.float32)
    return left, right


def _span(body: Body, kind: Kind, garment: Image.Image, with_bottoms: bool) -> tuple[float, float]:
    """The rows (top, bottom) of the photo the garment's first and last rows go to."""
    if kind == "bottom":
        return body.waist, body.ankle + 0.15 * body.head
    top = body.shoulder - NECKLINE * body.head
    body_width = 3.8 * body.face_width
    length = garment.height / garment.width * body_width
    if kind == "dress":
        return top, top + min(max(length, 2.6 * body.head), body.ankle - top)
    length = min(max(length, TOP_LENGTH[0] * body.head), TOP_LENGTH[1] * body.head)
    if with_bottoms:
        length = min(length, body.waist + TOP_OVER_WAISTBAND * body.head - top)
    return top, top + length


def warp(
    garment: Image.Image, kind: Kind, body: Body, person: FloatArray, nudge: float, with_bottoms: bool
) -> tuple[FloatArray, FloatArray, tuple[int, int, int, int]] | None:
    """The garment warped onto the body: premultiplied RGB and alpha over a box of the photo."""
    width, height = body.size
    top, bottom = _span(body, kind, garment, with_bottoms)
    first, last = max(0, int(np.floor(top))), min(height, int(np.ceil(bottom)))
    if last - first < 2:
        return None
    band = BAND[kind] * body.face_width
    rows = np.arange(first, last, dtype=np.float32)
    centre = np.full(len(rows), body.centre_x + nudge, np.float32)
    target_left, target_right = _row_extents(person[first:last] > 0.5, centre - band, centre + band)
    window = max(3, round(0.12 * body.head))
    target_left = _smooth(target_left, window) + nudge
    target_right = _smooth(target_right, window) + nudge
    if np.isnan(target_left).all():
        return None

    rgba = np.asarray(garment.convert("RGBA"), dtype=np.float32) / 255.0
    alpha = rgba[:, :, 3]
    garment_height, garment_width = alpha.shape
    all_columns = np.zeros(garment_height, np.float32)
    own_left, own_right = _row_extents(alpha > 0.5, all_columns, all_columns + garment_width - 1)
    own_left = _smooth(own_left, 3)
    own_right = _smooth(own_right, 3)

    source_row = (rows - top) / max(1.0, bottom - top) * (garment_height - 1)
    garment_left = np.interp(source_row, np.arange(garment_height), own_left).astype(np.float32)
    garment_right = np.interp(source_row, np.arange(garment_height), own_right).astype(np.float32)

    # each row is scaled to the body's width on that row, but never more than SCALE_FREEDOM away
    # from the scale at the shoulders (bottoms: the waistband): the garment keeps its own cut — a
    # sleeveless dress leaves the arms bare, trousers don't balloon where a hand hangs beside them
    garment_span = np.maximum(garment_right - garment_left, 1.0)
    target_span = np.maximum(target_right - target_left, 1.0)
    anchor = 0 if kind == "bottom" else round(body.shoulder + 0.1 * body.head) - first
    anchor = min(max(anchor, 0), len(rows) - 1)
    reference = target_span[anchor] / garment_span[anchor]
    scale = np.clip(target_span / garment_span, reference / SCALE_FREEDOM, reference * SCALE_FREEDOM)
    # rows are centred mostly on the face's vertical line: something held beside the body (a helmet,
    # a bag) cuts the person mask on one side and would otherwise pull the garment sideways
    target_centre = (
        CENTRE_LINE * (body.centre_x + nudge) + (1 - CENTRE_LINE) * (target_left + target_right) / 2
    )
    garment_centre = (garment_left + garment_right) / 2
    half = garment_span * scale / 2
    left = max(0, int(np.floor(np.nanmin(target_centre - half))) - 1)
    right = min(width, int(np.ceil(np.nanmax(target_centre + half))) + 2)
    if right - left < 2:
        return None
    columns = np.arange(left, right, dtype=np.float32)[None, :]
    map_x = garment_centre[:, None] + (columns - target_centre[:, None]) / scale[:, None]
    map_y = np.repeat(source_row[:, None], right - left, axis=1)
    premultiplied = np.dstack([rgba[:, :, :3] * alpha[:, :, None], alpha])
    warped = cv2.remap(
        premultiplied,
        map_x.astype(np.float32),
        map_y.astype(np.float32),
        interpolation=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(0.0, 0.0, 0.0, 0.0),
    )
    return warped[:, :, :3], warped[:, :, 3], (left, first, right, last)


def _shading(luminance: FloatArray, coverage: FloatArray, side: int) -> FloatArray:
    """How much lighter or darker each pixel is than the garment area's typical light."""
    fine = cv2.GaussianBlur(luminance, (0, 0), max(0.8, side * 0.0025))
    # the broad light is smooth: blur an eighth-size copy and scale it back
    height, width = luminance.shape
    small = cv2.resize(luminance, (max(1, width // 8), max(1, height // 8)), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), max(0.5, side * 0.03 / 8))
    broad = cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)
    inside = coverage > 0.5
    reference = float(np.median(broad[inside])) if inside.any() else float(np.median(broad))
    detail = fine / np.maximum(broad, 1e-3)
    light = broad / max(reference, 1e-3)
    shade = np.power(detail, SHADING_DETAIL) * np.power(light, SHADING_LIGHT)
    clipped: FloatArray = np.clip(shade, *SHADE_RANGE).astype(np.float32)
    return clipped


def skirt_area(body: Body, person: FloatArray, free: FloatArray) -> FloatArray:
    """Where a dress may go: the person (``free``: less head, neck and skin), and below the crotch
    also the gap between the legs (a skirt hangs across it), row by row between the outermost leg
    edges within the body's band. Hands hanging beside the hips stay in front."""
    height = body.size[1]
    first = max(0, min(height, round(body.crotch)))
    if first >= height:
        return free
    band = BAND["dress"] * body.face_width
    centre = np.full(height - first, body.centre_x, np.float32)
    left, right = _row_extents(person[first:] > 0.5, centre - band, centre + band)
    columns = np.arange(body.size[0], dtype=np.float32)[None, :]
    between = (columns >= left[:, None]) & (columns <= right[:, None])
    area = free.copy()
    gap = between & (person[first:] <= 0.5)
    area[first:] = np.where(gap, 1.0, area[first:])
    return area


def dress(photo: Image.Image, body: Body, garments: list[Image.Image], nudge: float) -> Image.Image:
    """``photo`` with ``garments`` (RGBA cut-outs) worn, layered by :data:`LAYER`."""
    kinds = [garment_kind(garment) for garment in garments]
    order = sorted(range(len(garments)), key=lambda index: LAYER[kinds[index]])
    with_bottoms = "bottom" in kinds
    original = np.asarray(photo.convert("RGB"))
    canvas = original.copy()
    person = body.person_mask()
    side = max(body.size)
    soften = max(0.6, side / 1400)
    free = person * (1.0 - body.protected())
    skin = body.full_size(body.skin, soften=soften)
    skin[: max(0, round(body.shoulder)), :] = 0.0
    free = free * (1.0 - skin)
    for index in order:
        placed = warp(garments[index], kinds[index], body, person, nudge, with_bottoms)
        if placed is None:
            continue
        colour, coverage, (left, top, right, bottom) = placed
        allowed = free if kinds[index] != "dress" else skirt_area(body, person, free)
        alpha = cv2.GaussianBlur(coverage, (0, 0), soften) * allowed[top:bottom, left:right]
        # the light comes from the photo itself, never from a garment laid on it before
        luminance = cv2.cvtColor(original[top:bottom, left:right], cv2.COLOR_RGB2GRAY).astype(np.float32)
        shade = _shading(luminance / 255.0, alpha, side)
        fabric = np.clip(colour / np.maximum(coverage, 1e-3)[:, :, None], 0.0, 1.0) * shade[:, :, None]
        region = canvas[top:bottom, left:right].astype(np.float32) / 255.0
        mixed = region * (1.0 - alpha[:, :, None]) + np.clip(fabric, 0.0, 1.0) * alpha[:, :, None]
        written = np.rint(mixed * 255.0).astype(np.uint8)
        # only where the garment is: every other pixel stays the photo's own, bit for bit
        canvas[top:bottom, left:right] = np.where(
            alpha[:, :, None] > 0, written, canvas[top:bottom, left:right]
        )
    return Image.fromarray(canvas, "RGB")

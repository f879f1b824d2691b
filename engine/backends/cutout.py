"""Cutting a garment (or a product) out of its background, plain or busy.

Everything runs on a working copy of at most 400 px; the mask is then scaled back, eroded by a
pixel (no halo) and softened.

**A plain backdrop** (most of the border within a tolerance of its median colour — a flat-lay on
white, a studio sweep):

1. *Flood fill from the borders.* Pixels connected to the image border whose colour is within a
   tolerance of the border's background colour are background. Light areas inside the garment that
   don't touch the border stay.
2. *Column closure.* A light stripe that runs out to the garment's edge *does* touch the
   background (a white stripe on a white backdrop), so the flood fill takes it too. Such a pixel is
   restored when garment pixels lie both above and below it in its column: background never sits
   between two layers of fabric, while the neck opening (open above) and the gap between trouser
   legs (open below) stay transparent.

**A busy backdrop** (a table top, a room, a hanger on a rail, a gradient): OpenCV's GrabCut,
started with a thin frame along the border as sure background, the middle as probably the subject,
and the rest (:data:`GRABCUT_FRAME`) left to colour. The part touching the centre is kept, holes
filled. GrabCut's k-means start is seeded, so the same photo always gives the same mask.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
from PIL import Image, ImageFilter

WORKING_SIZE = 400
TOLERANCE = 30
PLAIN_BORDER = 0.9
"""A backdrop is plain when at least this fraction of the border is within the tolerance."""
GRABCUT_SIDE = 320
GRABCUT_ITERATIONS = 5
GRABCUT_FRAME = 0.06
"""Width of the border frame (fraction of each side) that starts as probable background."""

ByteArray = np.ndarray[Any, Any]
"""uint8 pixels or masks (OpenCV's stubs don't keep the dtype)."""


def _border(pixels: ByteArray) -> ByteArray:
    return np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])


def _border_colour(pixels: ByteArray) -> ByteArray:
    """The median colour of the image's outermost pixels: the backdrop."""
    colour: ByteArray = np.median(_border(pixels), axis=0).astype(np.int16)
    return colour


def _background_like(pixels: ByteArray, colour: ByteArray, tolerance: int) -> ByteArray:
    """1 where a pixel is within ``tolerance`` (max channel difference) of ``colour``."""
    difference = np.abs(pixels.astype(np.int16) - colour).max(axis=2)
    close: ByteArray = (difference <= tolerance).astype(np.uint8)
    return close


def _flood_from_border(candidate: ByteArray) -> ByteArray:
    """1 on the candidate pixels connected (4-neighbours) to the image border."""
    count, components = cv2.connectedComponents(candidate, connectivity=4)
    touching = np.unique(_border(components))
    touching = touching[touching > 0]
    del count
    return np.isin(components, touching).astype(np.uint8)


def _close_columns(background: ByteArray) -> ByteArray:
    garment = background == 0
    height = garment.shape[0]
    has = garment.any(axis=0)
    first = garment.argmax(axis=0)
    last = height - 1 - garment[::-1].argmax(axis=0)
    rows = np.arange(height)[:, None]
    between = has[None, :] & (rows >= first[None, :]) & (rows <= last[None, :])
    return np.where(between, 0, background).astype(np.uint8)


def _plain_mask(pixels: ByteArray, tolerance: int) -> ByteArray:
    candidate = _background_like(pixels, _border_colour(pixels), tolerance)
    background = _close_columns(_flood_from_border(candidate))
    return np.where(background > 0, 0, 255).astype(np.uint8)


def _fill_holes(mask: ByteArray) -> ByteArray:
    padded = cv2.copyMakeBorder(mask, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
    flood = padded.copy()
    cv2.floodFill(flood, None, (0, 0), 255)
    return cv2.bitwise_or(mask, cv2.bitwise_not(flood)[1:-1, 1:-1])


def _grabcut_mask(pixels: ByteArray) -> ByteArray:
    height, width = pixels.shape[:2]
    labels = np.full((height, width), cv2.GC_PR_FGD, np.uint8)
    frame_x, frame_y = max(2, round(width * GRABCUT_FRAME)), max(2, round(height * GRABCUT_FRAME))
    labels[:frame_y, :] = labels[-frame_y:, :] = cv2.GC_PR_BGD
    labels[:, :frame_x] = labels[:, -frame_x:] = cv2.GC_PR_BGD
    labels[0, :] = labels[-1, :] = labels[:, 0] = labels[:, -1] = cv2.GC_BGD
    background_model = np.zeros((1, 65), np.float64)
    foreground_model = np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(7)
    cv2.grabCut(
        np.ascontiguousarray(pixels[:, :, ::-1]),
        labels,
        (0, 0, 0, 0),  # no rectangle: the labels say everything
        background_model,
        foreground_model,
        GRABCUT_ITERATIONS,
        cv2.GC_INIT_WITH_MASK,
    )
    chosen: ByteArray = np.where((labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD), 255, 0).astype(np.uint8)
    # an opening of ~1.5 % of the side cuts thin links (a hanger's hook and wire, a strap) to the
    # backdrop; then the largest part is the subject, not specks of the backdrop that looked like it
    side = max(3, round(max(height, width) * 0.015) | 1)
    chosen = cv2.morphologyEx(
        chosen, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (side, side))
    )
    count, components, stats, _ = cv2.connectedComponentsWithStats(chosen, connectivity=8)
    if count <= 1:
        return chosen
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    return _fill_holes(np.where(components == largest, 255, 0).astype(np.uint8))


def is_plain(image: Image.Image, tolerance: int = TOLERANCE) -> bool:
    """Whether the image's border is one colour (within ``tolerance``): a plain backdrop."""
    work = image.convert("RGB")
    work.thumbnail((WORKING_SIZE, WORKING_SIZE), Image.Resampling.BILINEAR)
    pixels: ByteArray = np.asarray(work)
    border = _border(pixels).astype(np.int16)
    close = np.abs(border - _border_colour(pixels)).max(axis=1) <= tolerance
    return bool(close.mean() >= PLAIN_BORDER)


def garment_mask(image: Image.Image, tolerance: int = TOLERANCE) -> Image.Image:
    """An ``L`` mask the size of ``image``: 255 on the garment, 0 on the background."""
    work = image.convert("RGB")
    if is_plain(work, tolerance):
        work.thumbnail((WORKING_SIZE, WORKING_SIZE), Image.Resampling.BILINEAR)
        small = _plain_mask(np.asarray(work), tolerance)
    else:
        work.thumbnail((GRABCUT_SIDE, GRABCUT_SIDE), Image.Resampling.BILINEAR)
        small = _grabcut_mask(np.asarray(work))
    # erode by a pixel (no halo) and soften at the working size, then scale up: the same edge as
    # doing it at full size, for a tenth of the work
    edge = Image.fromarray(small, "L").filter(ImageFilter.MinFilter(3)).filter(ImageFilter.GaussianBlur(0.6))
    mask = edge.resize(image.size, Image.Resampling.BILINEAR)
    return mask.point(lambda value: 0 if value < 8 else 255 if value > 247 else value)


def cut_out(image: Image.Image) -> Image.Image:
    """The garment as RGBA, cropped to its silhouette."""
    rgba = image.convert("RGBA")
    own = rgba.getchannel("A")
    # already cut out by the caller (a PNG with transparency): its own alpha is the best mask
    mask = own if int(np.asarray(own).min()) < 255 else garment_mask(image)
    rgba.putalpha(mask)
    box = mask.getbbox()
    return rgba.crop(box) if box else rgba

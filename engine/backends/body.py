"""Finding the person in a try-on photo: face, person mask, exposed skin and body lines.

No model is downloaded. The face comes from the quality gate's own detector (OpenCV's Haar
cascade, ``engine.quality._detect_faces``), so the backend and the gate agree on where the
face is. Everything else is derived from it:

- **Body lines** from the face box, in head units (``head`` = 1.5 face-box heights, top of the
  skull to the chin): chin, shoulder line (0.35 heads below the chin), waistband (1.8), hip
  (2.3), crotch (2.9) and ankle (5.9) — the proportions of an adult of ~7.5 heads. When the
  person's feet are inside the photo, the ankle line is taken from the person mask instead.
- **Person mask** from OpenCV's GrabCut on a copy of at most :data:`WORK_SIDE` pixels, seeded
  with a body prior drawn from those lines: the inner face and the chest core are sure person;
  the head and a trunk band (:data:`TRUNK`) are probable person; the arms' zone of the
  silhouette beside it is probable background, so something held at the side (a helmet) or
  behind a shoulder (a flag) is decided by colour; everything well outside is sure background.
  The part connected to the chest is kept and its small holes filled. GrabCut's k-means start
  uses OpenCV's per-thread random generator, which is seeded first, so the same photo always
  gives the same mask.
- **Skin**: pixels whose chroma (Cr, Cb) is close to the face's own — hands, arms, neck — so
  garments can be laid *under* them.

A photo without a detectable frontal face, or whose person mask is implausibly small, has no
person: :func:`find_body` answers ``None`` and the backend fails with ``no_person_detected``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import cv2
import numpy as np
from PIL import Image

# the gate's own detector, parameters and all: a face the backend dresses is one the gate finds
from engine.quality import _detect_faces as detect_faces

WORK_SIDE = 256
"""GrabCut runs on a copy whose longest side is at most this: ~0.1 s, and fine enough for a mask."""
GRABCUT_ITERATIONS = 3
DETECT_SIDE = 400
"""Faces are looked for on a copy this size: a full-length person's face is still ~30 px there."""
HEAD_PER_FACE_BOX = 1.5
TRUNK = 0.7
"""Half-width (in face widths) of the band below the chest that starts as probably person."""
MIN_MASK_FRACTION = 0.5
"""The person mask must cover at least this fraction of the sure-person seeds, else: no person."""
SKIN_DISTANCE = 2.6
"""Mahalanobis distance in (Cr, Cb) from the face's skin within which a pixel counts as skin."""

# OpenCV's stubs type every result as "any integer or float array": these say what it holds
FloatArray = np.ndarray[Any, Any]
"""float32 values, usually 0..1."""
ByteArray = np.ndarray[Any, Any]
"""uint8 values: 0 or 255 for masks."""


@dataclasses.dataclass(frozen=True)
class Body:
    """A person found in a photo of ``size``; lines in that photo's pixels, masks at work size."""

    size: tuple[int, int]
    face: tuple[int, int, int, int]
    centre_x: float
    head: float
    chin: float
    shoulder: float
    waist: float
    hip: float
    crotch: float
    ankle: float
    feet_visible: bool
    person: ByteArray
    """255 on the person, 0 elsewhere, at work size."""
    skin: ByteArray
    """255 on exposed skin of the person (not the face itself), at work size."""

    @property
    def face_width(self) -> float:
        return float(self.face[2])

    def full_size(self, mask: ByteArray, soften: float = 0.0) -> FloatArray:
        """``mask`` scaled to the photo's size as floats 0..1, edges blurred by ``soften`` px."""
        scaled: FloatArray = (
            cv2.resize(mask, self.size, interpolation=cv2.INTER_LINEAR).astype(np.float32) / 255.0
        )
        if soften > 0:
            scaled = cv2.GaussianBlur(scaled, (0, 0), soften)
        return scaled

    def person_mask(self) -> FloatArray:
        """The person at full size: 0 well outside, 1 inside, a soft edge of ~1 px between."""
        scaled = self.full_size(self.person, soften=max(0.6, 0.5 * max(self.size) / WORK_SIDE))
        # sharpen the upsampled edge again: the garment's border lies on the person's outline
        return np.clip((scaled - 0.5) * 2.5 + 0.5, 0.0, 1.0).astype(np.float32)

    def protected(self) -> FloatArray:
        """Head (face, hair) and neck at full size: 1 where no garment may go."""
        width, height = self.size
        out = np.zeros((height, width), np.float32)
        x, y, w, h = self.face
        centre = (round(x + w / 2), round(y + h * 0.42))
        axes = (round(w * 0.78), round(h * 0.95))
        cv2.ellipse(out, centre, axes, 0, 0, 360, 1.0, -1)
        neck_half = w * 0.34
        top = round(y + h * 0.6)
        bottom = round(self.shoulder - self.head * 0.15)  # below that, the garment's own neckline decides
        cv2.rectangle(
            out, (round(self.centre_x - neck_half), top), (round(self.centre_x + neck_half), bottom), 1.0, -1
        )
        return cv2.GaussianBlur(out, (0, 0), max(1.0, w * 0.03))


def _lines(face: tuple[int, int, int, int]) -> dict[str, float]:
    x, y, w, h = face
    head = HEAD_PER_FACE_BOX * h
    chin = y + 1.15 * h
    return {
        "centre_x": x + w / 2,
        "head": head,
        "chin": chin,
        "shoulder": chin + 0.35 * head,
        "waist": chin + 1.8 * head,
        "hip": chin + 2.3 * head,
        "crotch": chin + 2.9 * head,
        "ankle": chin + 5.9 * head,
    }


def _prior(shape: tuple[int, int], lines: dict[str, float], face: tuple[float, ...]) -> ByteArray:
    """GrabCut's starting labels at work size, from the body lines (already in work pixels)."""
    height = shape[0]
    _, y, w, h = face
    cx, head = lines["centre_x"], lines["head"]
    shoulder, hip, crotch, ankle = lines["shoulder"], lines["hip"], lines["crotch"], lines["ankle"]
    feet = ankle + 0.35 * head

    def pt(dx: float, py: float) -> tuple[int, int]:
        return round(cx + dx * w), round(py)

    silhouette = np.zeros(shape, np.uint8)
    outline = [
        pt(-1.0, shoulder - 0.25 * head),
        pt(1.0, shoulder - 0.25 * head),
        pt(2.1, shoulder + 0.3 * head),
        pt(2.4, hip),
        pt(1.8, crotch),
        pt(1.5, feet),
        pt(-1.5, feet),
        pt(-1.8, crotch),
        pt(-2.4, hip),
        pt(-2.1, shoulder + 0.3 * head),
    ]
    cv2.fillPoly(silhouette, [np.array(outline, np.int32)], 1)
    cv2.ellipse(silhouette, pt(0, y + 0.4 * h), (round(0.85 * w), round(1.0 * h)), 0, 0, 360, 1, -1)
    cv2.rectangle(silhouette, pt(-0.55, y + h), pt(0.55, shoulder), 1, -1)

    margin = max(3, round(0.5 * w))
    near = cv2.dilate(silhouette, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * margin + 1,) * 2))
    # the trunk is probably person; the arms' zone beside it is left to colour (a helmet held at
    # the side, a flag behind the shoulder belong to the background there)
    trunk = np.zeros(shape, np.uint8)
    trunk_outline = [
        pt(-0.9, shoulder - 0.2 * head),
        pt(0.9, shoulder - 0.2 * head),
        pt(1.5, shoulder + 0.3 * head),
        pt(TRUNK, shoulder + 0.8 * head),
        pt(TRUNK, feet),
        pt(-TRUNK, feet),
        pt(-TRUNK, shoulder + 0.8 * head),
        pt(-1.5, shoulder + 0.3 * head),
    ]
    cv2.fillPoly(trunk, [np.array(trunk_outline, np.int32)], 1)
    labels = np.full(shape, cv2.GC_BGD, np.uint8)
    labels[near > 0] = cv2.GC_PR_BGD
    labels[(silhouette > 0) & (trunk > 0)] = cv2.GC_PR_FGD
    head_zone = np.zeros(shape, np.uint8)
    cv2.ellipse(head_zone, pt(0, y + 0.4 * h), (round(0.85 * w), round(1.0 * h)), 0, 0, 360, 1, -1)
    labels[head_zone > 0] = cv2.GC_PR_FGD
    # nothing of the person lies far above the head
    labels[: max(0, round(y - 0.75 * h)), :] = cv2.GC_BGD
    sure = np.zeros(shape, np.uint8)
    cv2.rectangle(sure, pt(-0.3, y + 0.2 * h), pt(0.3, y + 0.95 * h), 1, -1)
    core_bottom = min(hip, height - 1)
    if core_bottom > shoulder + 0.3 * head:
        cv2.rectangle(sure, pt(-0.5, shoulder + 0.3 * head), pt(0.5, core_bottom), 1, -1)
    labels[sure > 0] = cv2.GC_FGD
    return labels


def _largest_with(mask: ByteArray, seeds: ByteArray, largest_hole: int) -> ByteArray:
    """The connected parts of ``mask`` that touch ``seeds``, holes of at most ``largest_hole``
    pixels filled (a badge GrabCut took for background; not the gap between legs that touch)."""
    count, components = cv2.connectedComponents(mask, connectivity=8)
    keep = np.unique(components[(seeds > 0) & (mask > 0)])
    keep = keep[keep > 0]
    person = np.isin(components, keep).astype(np.uint8) * 255
    # fill holes: whatever the border's flood cannot reach belongs to the person
    padded = cv2.copyMakeBorder(person, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
    flood = padded.copy()
    cv2.floodFill(flood, None, (0, 0), 255)
    holes = cv2.bitwise_not(flood)[1:-1, 1:-1]
    del count
    count, parts, stats, _ = cv2.connectedComponentsWithStats(holes, connectivity=4)
    small = [index for index in range(1, count) if stats[index, cv2.CC_STAT_AREA] <= largest_hole]
    return cv2.bitwise_or(person, np.isin(parts, small).astype(np.uint8) * 255)


def _skin(work: ByteArray, face: tuple[float, ...], person: ByteArray) -> ByteArray:
    """Pixels of the person whose chroma matches the cheeks' (hands, arms, neck)."""
    x, y, w, h = face
    ycrcb = cv2.cvtColor(work, cv2.COLOR_RGB2YCrCb).astype(np.float32)
    cheeks = ycrcb[round(y + 0.45 * h) : round(y + 0.8 * h), round(x + 0.2 * w) : round(x + 0.8 * w)]
    samples = cheeks.reshape(-1, 3)[:, 1:]
    if len(samples) < 8:
        return np.zeros(person.shape, np.uint8)
    mean = samples.mean(axis=0)
    covariance = np.cov(samples, rowvar=False) + np.eye(2, dtype=np.float64) * 4.0
    inverse = np.linalg.inv(covariance)
    delta = ycrcb[:, :, 1:] - mean
    distance = np.einsum("...i,ij,...j->...", delta, inverse, delta)
    skin = ((distance < SKIN_DISTANCE**2) & (ycrcb[:, :, 0] > 45) & (person > 0)).astype(np.uint8) * 255
    skin[: max(0, round(y + h)), :] = 0  # the head is protected as a whole, see Body.protected
    # specks of skin-like fabric are not hands: drop parts smaller than ~a fingertip
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
    skin = cv2.morphologyEx(skin, cv2.MORPH_OPEN, kernel)
    count, components, stats, _ = cv2.connectedComponentsWithStats(skin, connectivity=8)
    small = max(6, round(0.02 * w * h))
    for index in range(1, count):
        if stats[index, cv2.CC_STAT_AREA] < small:
            skin[components == index] = 0
    return skin


def _faces(photo: Image.Image) -> list[tuple[int, ...]]:
    """The gate's detector on a copy small enough to be quick, then — for the small face of a
    full-length person in a landscape photo — on one twice as large."""
    for side in (DETECT_SIDE, 2 * DETECT_SIDE):
        scale = min(1.0, side / max(photo.size))
        small = photo.resize(
            (max(1, round(photo.width * scale)), max(1, round(photo.height * scale))),
            Image.Resampling.BILINEAR,
        )
        faces = [tuple(round(value / scale) for value in box) for box in detect_faces(small)]
        if faces or scale == 1.0:
            return faces
    return []


def find_body(photo: Image.Image) -> Body | None:
    """The largest person in ``photo`` (RGB), or ``None`` when there is none to dress."""
    faces = _faces(photo)
    if not faces:
        return None
    fx, fy, fw, fh = faces[0]
    face = (fx, fy, fw, fh)
    width, height = photo.size
    scale = min(1.0, WORK_SIDE / max(width, height))
    work_size = (max(1, round(width * scale)), max(1, round(height * scale)))
    work: ByteArray = np.asarray(photo.convert("RGB").resize(work_size, Image.Resampling.BILINEAR))
    lines = _lines(face)
    work_lines = {name: value * scale for name, value in lines.items()}
    work_face = tuple(value * scale for value in face)
    labels = _prior((work_size[1], work_size[0]), work_lines, work_face)
    sure = (labels == cv2.GC_FGD).astype(np.uint8)
    # GrabCut only where the answer is open: the box around everything not sure background
    rows = np.flatnonzero((labels != cv2.GC_BGD).any(axis=1))
    cols = np.flatnonzero((labels != cv2.GC_BGD).any(axis=0))
    if not len(rows) or not len(cols):
        return None
    pad = 4
    top, bottom = max(0, rows[0] - pad), min(labels.shape[0], rows[-1] + 1 + pad)
    left, right = max(0, cols[0] - pad), min(labels.shape[1], cols[-1] + 1 + pad)
    window = np.ascontiguousarray(labels[top:bottom, left:right])
    background_model = np.zeros((1, 65), np.float64)
    foreground_model = np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(14)
    cv2.grabCut(
        np.ascontiguousarray(cv2.cvtColor(work[top:bottom, left:right], cv2.COLOR_RGB2BGR)),
        window,
        (0, 0, 0, 0),  # no rectangle: the labels say everything
        background_model,
        foreground_model,
        GRABCUT_ITERATIONS,
        cv2.GC_INIT_WITH_MASK,
    )
    labels[top:bottom, left:right] = window
    chosen: ByteArray = np.where((labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD), 255, 0).astype(np.uint8)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
    chosen = cv2.morphologyEx(chosen, cv2.MORPH_OPEN, kernel)
    person = _largest_with(chosen, sure, largest_hole=round(work_face[2] * work_face[3]))
    if int(np.count_nonzero(person[sure > 0])) < MIN_MASK_FRACTION * max(1, int(np.count_nonzero(sure))):
        return None

    # feet inside the photo (the mask ends well above the bottom edge): legs end there
    rows = np.flatnonzero(person.max(axis=1) > 0)
    lowest = (rows[-1] + 1) / scale if len(rows) else height
    feet_visible = bool(lowest < height * 0.97 and lowest > lines["hip"] + lines["head"])
    if feet_visible:
        lines["ankle"] = lowest - 0.3 * lines["head"]
        lines["crotch"] = min(lines["crotch"], lines["hip"] + 0.4 * (lines["ankle"] - lines["hip"]))
    return Body(
        size=(width, height),
        face=face,
        centre_x=lines["centre_x"],
        head=lines["head"],
        chin=lines["chin"],
        shoulder=lines["shoulder"],
        waist=lines["waist"],
        hip=lines["hip"],
        crotch=lines["crotch"],
        ankle=lines["ankle"],
        feet_visible=feet_visible,
        person=person,
        skin=_skin(work, work_face, person),
    )

"""The quality gate: checks a generated result before its job may succeed.

A result must decode, have the requested size, not be blank or one flat colour, and — when the
person photo is given — still show that person's face: a frontal face found in the person photo
must be found at about the same place in the result, and the result's pixels at that place must
be close to the person's face by a perceptual hash (``imagehash.phash``).

The face detector is OpenCV's Haar cascade ``haarcascade_frontalface_default.xml``, which ships
inside ``opencv-python-headless`` 4.x (``cv2.data.haarcascades``); nothing is downloaded at run
time. OpenCV 5 dropped ``CascadeClassifier`` and the cascade files, so the package must stay < 5.

The stock backend of test keys passes ``person=None``: only decoding and size are checked.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import math
import threading
from collections import OrderedDict
from typing import Any, NamedTuple

import cv2
import imagehash
import msgspec
import numpy as np
from cv2.data import haarcascades as HAARCASCADES
from PIL import Image, ImageStat

# Faces are detected on a grayscale copy whose longest side is at most this many pixels: a face in
# a full-length photo is still ~60 px there, and detection costs ~0.1-0.25 s instead of seconds.
DETECT_MAX_SIDE = 640
# Results with more pixels than this are not decoded at all (decompression bombs).
MAX_PIXELS = 64_000_000
# How many person photos' faces are remembered (a digest, a box and a hash each).
REFERENCE_CACHE_SIZE = 64
# How many verdicts on results checked without a person are remembered (a digest and a verdict each).
VERDICT_CACHE_SIZE = 64

Box = tuple[int, int, int, int]  # x, y, width, height


class QualityThresholds(msgspec.Struct, frozen=True, kw_only=True):
    """Settings of the quality gate (defaults tuned on the person fixture, see the tests).

    min_stddev: the result's grayscale standard deviation (0..255) must be at least this; a blank
        or single-colour image has ~0, a smooth gradient a few units, any real photo 30+.
    size_tolerance: the result's longest side may differ from the requested one by this fraction
        (0.02 = ±2%, so 1004..1044 for 1024), allowing a backend's rounding but not a wrong size.
    face_position_tolerance: a face must be found in the result whose centre is within this
        fraction of the result's diagonal from the person's face centre (mapped to the result);
        0.08 is ~116 px at 1024x1024 — about half a face width at head-and-shoulders framing.
    face_max_hash_distance: Hamming distance (of 64 bits) allowed between the phash of the
        person's face crop and the result's crop at the same place (or at the face found there).
        Measured on the fixture: resized, JPEG, blurred or re-lit copies score 0-4, a head tilted
        3-6 degrees 8-10, a mirrored face or other content in its place 28-36 (~32 is random).
    """

    min_stddev: float = 6.0
    size_tolerance: float = 0.02
    face_position_tolerance: float = 0.08
    face_max_hash_distance: int = 18


class QualityVerdict(msgspec.Struct, frozen=True, kw_only=True):
    ok: bool
    reason: str | None = None


PASSED = QualityVerdict(ok=True)


def _fail(reason: str) -> QualityVerdict:
    return QualityVerdict(ok=False, reason=reason)


_local = threading.local()


def _cascade() -> Any:
    """The face detector, loaded once per thread: ``detectMultiScale`` mutates the classifier's
    internal state, so one instance must not be used by two threads at once."""
    classifier = getattr(_local, "cascade", None)
    if classifier is None:
        path = HAARCASCADES + "haarcascade_frontalface_default.xml"
        classifier = cv2.CascadeClassifier(path)
        if classifier.empty():
            raise RuntimeError(f"could not load the face detector from {path}")
        _local.cascade = classifier
    return classifier


def _decode(data: bytes) -> Image.Image | None:
    try:
        image = Image.open(io.BytesIO(data))
        if image.width * image.height > MAX_PIXELS:
            return None
        image.load()
    except Exception:
        return None
    return image


def _detect_faces(image: Image.Image) -> list[Box]:
    """Frontal faces in ``image``, in its own pixel coordinates, largest first."""
    gray = image.convert("L")
    scale = min(1.0, DETECT_MAX_SIDE / max(gray.size))
    if scale < 1.0:
        small = (max(1, round(gray.width * scale)), max(1, round(gray.height * scale)))
        gray = gray.resize(small, Image.Resampling.BILINEAR)
    pixels = np.asarray(gray, dtype=np.uint8)
    # minNeighbors=6 and a minimum face of 1/20 of the image keep spurious hits (a suit's collar
    # ring, a badge) out; histogram equalisation was tried and added such hits.
    min_side = max(24, max(gray.size) // 20)
    found = _cascade().detectMultiScale(pixels, scaleFactor=1.1, minNeighbors=6, minSize=(min_side, min_side))
    boxes = [
        (round(x / scale), round(y / scale), round(w / scale), round(h / scale))
        for x, y, w, h in (tuple(int(v) for v in face) for face in found)
    ]
    return sorted(boxes, key=lambda box: box[2] * box[3], reverse=True)


def _map_box(box: Box, source: tuple[int, int], target: tuple[int, int]) -> Box:
    sx, sy = target[0] / source[0], target[1] / source[1]
    x, y, w, h = box
    return round(x * sx), round(y * sy), max(1, round(w * sx)), max(1, round(h * sy))


def _centre(box: Box) -> tuple[float, float]:
    return box[0] + box[2] / 2, box[1] + box[3] / 2


def _face_hash(image: Image.Image, box: Box) -> Any:
    x, y, w, h = box
    return imagehash.phash(image.convert("L").crop((x, y, x + w, y + h)))


class _Reference(NamedTuple):
    """The person's largest face: the photo's size, the face box and the face crop's phash."""

    size: tuple[int, int]
    box: Box
    hash: Any


_references: OrderedDict[bytes, _Reference | None] = OrderedDict()
_references_lock = threading.Lock()


def _reference(person_bytes: bytes) -> _Reference | None:
    """The person's face, remembered (by digest) for the last few person photos: one photo is
    often tried on with several garments, and detection is the costliest step of the gate."""
    key = hashlib.blake2b(person_bytes, digest_size=16).digest()
    with _references_lock:
        if key in _references:
            _references.move_to_end(key)
            return _references[key]
    reference = None
    person = _decode(person_bytes)
    faces = _detect_faces(person) if person is not None else []
    if person is not None and faces:
        reference = _Reference(size=person.size, box=faces[0], hash=_face_hash(person, faces[0]))
    with _references_lock:
        _references[key] = reference
        while len(_references) > REFERENCE_CACHE_SIZE:
            _references.popitem(last=False)
    return reference


def _check_face(result: Image.Image, person_bytes: bytes, thresholds: QualityThresholds) -> QualityVerdict:
    reference = _reference(person_bytes)
    if reference is None:
        # Undecodable (inputs are validated elsewhere) or no detectable face: nothing to keep.
        return PASSED
    expected = _map_box(reference.box, reference.size, result.size)
    ex, ey = _centre(expected)
    result_faces = _detect_faces(result)
    if not result_faces:
        return _fail("face missing")
    limit = thresholds.face_position_tolerance * math.hypot(*result.size)
    near = [box for box in result_faces if math.hypot(_centre(box)[0] - ex, _centre(box)[1] - ey) <= limit]
    if not near:
        return _fail("face moved")
    # Compare the person's face with the result at the mapped place and at the faces found near
    # it; the best match counts, so a slightly re-framed face is not taken for a different one.
    distance = min(int(reference.hash - _face_hash(result, box)) for box in [expected, *near])
    if distance > thresholds.face_max_hash_distance:
        return _fail(f"face changed (distance {distance})")
    return PASSED


def check_result(
    result: bytes,
    *,
    longest_side: int,
    person: bytes | None,
    thresholds: QualityThresholds,
    content: bool | None = None,
) -> QualityVerdict:
    """Check a generated image.

    Decoding and size are always checked. ``content`` adds the flat-image check (default:
    whenever ``person`` is given); ``person`` adds the face check against that photo. The
    stock backend of test keys gets decoding and size only (``person=None``); a live
    catalog, which has no person, gets ``person=None, content=True``.
    """
    if content is None:
        content = person is not None
    image = _decode(result)
    if image is None:
        return _fail("undecodable")
    actual = max(image.size)
    if abs(actual - longest_side) > thresholds.size_tolerance * longest_side:
        return _fail(f"wrong size {image.width}x{image.height} (wanted longest side {longest_side})")
    if not content:
        return PASSED
    stddev = ImageStat.Stat(image.convert("L")).stddev[0]
    if stddev < thresholds.min_stddev:
        return _fail("blank or flat image")
    if person is None:
        return PASSED
    return _check_face(image, person, thresholds)


_VerdictKey = tuple[bytes, int, bool | None, QualityThresholds]
_verdicts: OrderedDict[_VerdictKey, QualityVerdict] = OrderedDict()
_verdicts_lock = threading.Lock()


async def check_result_async(
    result: bytes,
    *,
    longest_side: int,
    person: bytes | None,
    thresholds: QualityThresholds,
    content: bool | None = None,
) -> QualityVerdict:
    """``check_result`` in a worker thread (decoding and face detection are CPU-bound).

    Without a person the verdict depends on the result's bytes, the size and the thresholds only,
    so it is remembered by the bytes' digest for the last few results: the stock backend of test
    keys answers the same bytes per size and format, and decoding them again cost every test-key
    job more CPU than the rest of its run. Hashing is ~100x cheaper than decoding; a result never
    seen before is checked in full, whatever backend made it.
    """
    if person is not None:
        return await asyncio.to_thread(
            check_result,
            result,
            longest_side=longest_side,
            person=person,
            thresholds=thresholds,
            content=content,
        )
    key = (hashlib.blake2b(result, digest_size=16).digest(), longest_side, content, thresholds)
    with _verdicts_lock:
        known = _verdicts.get(key)
        if known is not None:
            _verdicts.move_to_end(key)
            return known
    verdict = await asyncio.to_thread(
        check_result, result, longest_side=longest_side, person=None, thresholds=thresholds, content=content
    )
    with _verdicts_lock:
        _verdicts[key] = verdict
        while len(_verdicts) > VERDICT_CACHE_SIZE:
            _verdicts.popitem(last=False)
    return verdict

"""The quality gate on real images: the person fixture and edits of it that a try-on backend might
return (good ones) or must never be let through (blank, wrong size, face lost, moved or changed)."""

from __future__ import annotations

import functools
import io

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter, ImageOps

from engine.quality import (
    QualityThresholds,
    QualityVerdict,
    _detect_faces,
    _map_box,
    check_result,
    check_result_async,
)
from tests.support.gateway import fixture_bytes

SIDE = 1024
THRESHOLDS = QualityThresholds()


@functools.cache
def person_bytes() -> bytes:
    return fixture_bytes("person-astronaut.png")


def person_image() -> Image.Image:
    return Image.open(io.BytesIO(person_bytes())).convert("RGB")


@functools.cache
def _person_at_side() -> Image.Image:
    return person_image().resize((SIDE, SIDE), Image.Resampling.LANCZOS)


def person_at_side() -> Image.Image:
    return _person_at_side().copy()


@functools.cache
def face_box() -> tuple[int, int, int, int]:
    """The person's face as (left, top, right, bottom) in the 1024 px copy."""
    faces = _detect_faces(person_image())
    assert faces, "the fixture's face must be detectable"
    x, y, w, h = _map_box(faces[0], (512, 512), (SIDE, SIDE))
    return x, y, x + w, y + h


def encode(image: Image.Image, fmt: str = "PNG") -> bytes:
    out = io.BytesIO()
    if fmt == "PNG":
        image.save(out, "PNG", compress_level=1)
    else:
        image.save(out, fmt, quality=90)
    return out.getvalue()


def check(image: Image.Image | bytes, *, person: bytes | None = None, side: int = SIDE) -> QualityVerdict:
    data = image if isinstance(image, bytes) else encode(image)
    return check_result(data, longest_side=side, person=person, thresholds=THRESHOLDS)


def with_shirt(image: Image.Image) -> Image.Image:
    """A plausible try-on: a new garment over the torso, everything from ~45% height down."""
    draw = ImageDraw.Draw(image)
    draw.rounded_rectangle((130, 460, 900, SIDE), radius=140, fill=(40, 90, 200))
    draw.rectangle((420, 470, 600, 560), fill=(230, 230, 235))  # a collar
    return image


# Good results -----------------------------------------------------------------------------------


def test_the_fixture_face_is_found_once_near_the_top_centre() -> None:
    left, top, right, bottom = face_box()
    assert 300 < (left + right) / 2 < 600 and (top + bottom) / 2 < 400
    # Not also the suit's collar ring or a badge (a too-eager detector finds those).
    assert len(_detect_faces(person_at_side())) == 1


def test_the_person_resized_to_the_requested_size_passes() -> None:
    assert check(person_at_side(), person=person_bytes()) == QualityVerdict(ok=True, reason=None)


def test_a_realistic_try_on_with_a_new_shirt_passes() -> None:
    assert check(with_shirt(person_at_side()), person=person_bytes()).ok


def test_a_jpeg_result_passes() -> None:
    jpeg = encode(with_shirt(person_at_side()), "JPEG")
    assert jpeg[:2] == b"\xff\xd8"
    assert check(jpeg, person=person_bytes()).ok


def test_a_slightly_reframed_result_passes() -> None:
    canvas = Image.new("RGB", (SIDE, SIDE), (120, 120, 120))
    canvas.paste(with_shirt(person_at_side()), (40, 30))
    assert check(canvas, person=person_bytes()).ok


def test_a_re_rendered_slightly_tilted_face_passes() -> None:
    """Generative backends redraw the whole image: the face may tilt a little and be softer."""
    tilted = with_shirt(person_at_side()).rotate(5, resample=Image.Resampling.BICUBIC, fillcolor=(128,) * 3)
    data = encode(tilted.filter(ImageFilter.GaussianBlur(2)), "JPEG")
    assert check(data, person=person_bytes()).ok
    strict = QualityThresholds(face_max_hash_distance=4)
    verdict = check_result(data, longest_side=SIDE, person=person_bytes(), thresholds=strict)
    assert verdict.reason is not None and verdict.reason.startswith("face changed")


def test_a_person_without_a_detectable_face_skips_the_face_check() -> None:
    garment = fixture_bytes("garment-shirt-red-stripes.png")
    assert not _detect_faces(Image.open(io.BytesIO(garment)))
    result = Image.new("RGB", (SIDE, SIDE), (200, 60, 60))
    ImageDraw.Draw(result).rectangle((100, 100, 900, 900), fill=(240, 240, 240))
    assert check(result, person=garment).ok


# Decoding, size and blank results ---------------------------------------------------------------


def test_undecodable_bytes_fail() -> None:
    verdict = check(b"\x89PNG\r\n\x1a\n" + b"not really a png" * 20, person=person_bytes())
    assert verdict == QualityVerdict(ok=False, reason="undecodable")


def test_a_truncated_image_fails_as_undecodable() -> None:
    data = encode(person_at_side())
    assert check(data[: len(data) // 2]).reason == "undecodable"


def test_a_flat_gray_image_fails() -> None:
    verdict = check(Image.new("RGB", (SIDE, SIDE), (128, 128, 128)), person=person_bytes())
    assert verdict == QualityVerdict(ok=False, reason="blank or flat image")


def test_a_nearly_flat_image_with_jpeg_noise_fails() -> None:
    gray = Image.new("RGB", (SIDE, SIDE), (250, 250, 250))
    ImageDraw.Draw(gray).line((0, 0, SIDE, SIDE), fill=(245, 245, 245), width=3)
    assert check(encode(gray, "JPEG"), person=person_bytes()).reason == "blank or flat image"


def test_a_wrong_size_fails() -> None:
    result = person_image().resize((1000, 1000), Image.Resampling.LANCZOS)
    verdict = check(result, person=person_bytes())
    assert verdict == QualityVerdict(ok=False, reason="wrong size 1000x1000 (wanted longest side 1024)")


def test_a_size_within_tolerance_passes() -> None:
    result = person_image().resize((1040, 1040), Image.Resampling.LANCZOS)  # +1.6%
    assert check(result, person=person_bytes()).ok


def test_the_size_is_the_longest_side_of_a_portrait_result() -> None:
    portrait = person_image().resize((683, 1024), Image.Resampling.LANCZOS)
    assert check(portrait).ok
    assert check(portrait, side=683).reason == "wrong size 683x1024 (wanted longest side 683)"


def test_without_a_person_only_decoding_and_size_are_checked() -> None:
    """The stock backend of test keys: a flat image of the right size passes."""
    flat = Image.new("RGB", (SIDE, SIDE), (128, 128, 128))
    assert check(flat, person=None).ok
    assert not check(flat.resize((512, 512)), person=None).ok
    assert check(b"garbage", person=None).reason == "undecodable"


# The face ----------------------------------------------------------------------------------------


def face_replaced(patch: Image.Image) -> Image.Image:
    image = with_shirt(person_at_side())
    left, top, right, bottom = face_box()
    image.paste(patch.resize((right - left, bottom - top)), (left, top))
    return image


def test_a_face_covered_by_a_flat_patch_fails() -> None:
    verdict = check(face_replaced(Image.new("RGB", (8, 8), (205, 170, 150))), person=person_bytes())
    assert verdict.reason == "face missing"


def test_a_blurred_face_fails() -> None:
    blurred = person_at_side().crop(face_box()).filter(ImageFilter.GaussianBlur(25))
    assert check(face_replaced(blurred), person=person_bytes()).reason == "face missing"


def test_a_face_replaced_by_noise_fails() -> None:
    noise = np.random.default_rng(7).integers(0, 256, (190, 190, 3), dtype=np.uint8)
    assert check(face_replaced(Image.fromarray(noise)), person=person_bytes()).reason == "face missing"


def test_a_face_replaced_by_other_content_fails() -> None:
    left, top, right, bottom = face_box()
    rocket = person_at_side().crop((740, 0, 740 + right - left, bottom - top))
    assert check(face_replaced(rocket), person=person_bytes()).reason == "face missing"


def test_a_changed_face_at_the_same_place_fails() -> None:
    """The detector still finds a face there, but it is not the person's face as it was."""
    mirrored = ImageOps.mirror(person_at_side().crop(face_box()))
    verdict = check(face_replaced(mirrored), person=person_bytes())
    assert not verdict.ok
    assert verdict.reason is not None and verdict.reason.startswith("face changed (distance ")
    distance = int(verdict.reason.removeprefix("face changed (distance ").rstrip(")"))
    assert distance > THRESHOLDS.face_max_hash_distance
    lenient = QualityThresholds(face_max_hash_distance=64)
    data = encode(face_replaced(mirrored))
    assert check_result(data, longest_side=SIDE, person=person_bytes(), thresholds=lenient).ok


def test_the_person_shrunk_into_a_corner_fails() -> None:
    canvas = Image.new("RGB", (SIDE, SIDE), (128, 128, 128))
    canvas.paste(person_image().resize((400, 400), Image.Resampling.LANCZOS), (600, 600))
    assert check(canvas, person=person_bytes()).reason == "face moved"


def test_a_mirrored_result_fails_as_the_face_moved() -> None:
    assert check(ImageOps.mirror(person_at_side()), person=person_bytes()).reason == "face moved"


def test_the_position_tolerance_is_a_setting() -> None:
    canvas = Image.new("RGB", (SIDE, SIDE), (120, 120, 120))
    canvas.paste(person_at_side(), (0, 60))
    data = encode(canvas)
    assert check(data, person=person_bytes()).ok
    strict = QualityThresholds(face_position_tolerance=0.02)
    verdict = check_result(data, longest_side=SIDE, person=person_bytes(), thresholds=strict)
    assert verdict.reason == "face moved"


# Async wrapper -----------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_check_result_async_gives_the_same_verdicts() -> None:
    good = await check_result_async(
        encode(person_at_side()), longest_side=SIDE, person=person_bytes(), thresholds=THRESHOLDS
    )
    bad = await check_result_async(b"nope", longest_side=SIDE, person=None, thresholds=THRESHOLDS)
    assert good.ok and bad == QualityVerdict(ok=False, reason="undecodable")

"""The offline composite: sizes, formats, an intact face, the garment really worn, and cut-outs
that keep light stripes."""

from __future__ import annotations

import io

import pytest
from PIL import Image, ImageChops, ImageStat

from engine.backends import TryonInput, build_backend
from engine.backends.cutout import garment_mask
from engine.imaging import fit_longest_side
from tests.support.gateway import fixture_bytes

PERSON = fixture_bytes("person-astronaut.png")
SHIRT = fixture_bytes("garment-shirt-red-stripes.png")
TROUSERS = fixture_bytes("garment-trousers-blue.png")


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def reddish_fraction(image: Image.Image, box: tuple[int, int, int, int]) -> float:
    """Pixels of red fabric: red far above green and blue, at any brightness — the garment now
    carries the photo's shading, so its red is darker in the folds (the orange suit is not red)."""
    region = image.convert("RGB").crop(box)
    pixels = region.get_flattened_data() if hasattr(region, "get_flattened_data") else region.getdata()
    red = sum(1 for r, g, b in pixels if r > 70 and r > 4 * g and r > 4 * b)
    return red / (region.width * region.height)


def bluish_fraction(image: Image.Image, box: tuple[int, int, int, int]) -> float:
    region = image.convert("RGB").crop(box)
    pixels = region.get_flattened_data() if hasattr(region, "get_flattened_data") else region.getdata()
    return sum(1 for r, g, b in pixels if b > 120 and r < 80) / (region.width * region.height)


@pytest.mark.parametrize(("size", "fmt", "pillow_format"), [(1024, "png", "PNG"), (2048, "jpeg", "JPEG")])
async def test_result_has_the_requested_size_and_format(size: int, fmt: str, pillow_format: str) -> None:
    result = await build_backend("local").tryon(
        TryonInput(person=PERSON, garments=(SHIRT,), longest_side=size, output_format=fmt)  # type: ignore[arg-type]
    )
    image = decode(result.data)
    assert image.format == pillow_format
    assert max(image.size) == size == max(result.width, result.height)
    assert result.content_type == f"image/{fmt}"


async def test_face_is_untouched_and_the_shirt_is_worn() -> None:
    result = await build_backend("local").tryon(
        TryonInput(person=PERSON, garments=(SHIRT,), longest_side=1024)
    )
    image = decode(result.data).convert("RGB")
    person = fit_longest_side(Image.open(io.BytesIO(PERSON)).convert("RGB"), 1024)
    face = (0, 0, 1024, int(1024 * 0.40))
    difference = ImageStat.Stat(ImageChops.difference(image.crop(face), person.crop(face))).mean
    assert max(difference) < 0.5
    torso = (300, 480, 724, 900)
    assert reddish_fraction(person, torso) < 0.08
    assert reddish_fraction(image, torso) > 0.45


async def test_light_stripes_are_fabric_not_holes() -> None:
    mask = garment_mask(Image.open(io.BytesIO(SHIRT)))
    # white stripes at (400, 190) mid-body and (245, 370) where the stripe meets the shirt's edge
    for point in [(400, 190), (245, 370), (555, 430), (400, 690)]:
        assert mask.getpixel(point) == 255, point
    # the backdrop, the neck opening and the area under a sleeve stay transparent
    for point in [(20, 20), (400, 130), (150, 400), (780, 780)]:
        assert mask.getpixel(point) == 0, point


async def test_gap_between_trouser_legs_stays_transparent() -> None:
    mask = garment_mask(Image.open(io.BytesIO(TROUSERS)))
    assert mask.getpixel((400, 700)) == 0
    assert mask.getpixel((300, 500)) == 255 and mask.getpixel((500, 500)) == 255


async def test_top_and_bottom_both_show() -> None:
    result = await build_backend("local").tryon(
        TryonInput(person=PERSON, garments=(SHIRT, TROUSERS), longest_side=1024)
    )
    image = decode(result.data).convert("RGB")
    assert reddish_fraction(image, (350, 460, 674, 700)) > 0.3
    # this is a half-length photo: the trousers start at her waistband, near the bottom edge, and the
    # shirt's hem covers that waistband; they are never laid over her chest (or the helmet beside her)
    assert bluish_fraction(image, (350, 460, 674, 860)) < 0.02
    assert bluish_fraction(image, (380, 960, 560, 1024)) > 0.5
    assert bluish_fraction(image, (700, 860, 900, 1024)) < 0.02


async def test_same_inputs_give_the_same_bytes_and_the_seed_moves_only_the_garment() -> None:
    request = TryonInput(person=PERSON, garments=(SHIRT,), longest_side=1024, seed=3)
    first = await build_backend("local").tryon(request)
    second = await build_backend("local").tryon(request)
    assert first.data == second.data
    other = await build_backend("local").tryon(
        TryonInput(person=PERSON, garments=(SHIRT,), longest_side=1024, seed=9)
    )
    assert other.data != first.data


async def test_stock_backend_answers_a_fixed_image_at_any_size() -> None:
    for size, fmt in [(1024, "png"), (4096, "png"), (2048, "jpeg")]:
        result = await build_backend("stock").tryon(
            TryonInput(person=b"", garments=(), longest_side=size, output_format=fmt)  # type: ignore[arg-type]
        )
        image = decode(result.data)
        assert max(image.size) == size
        assert image.format == ("PNG" if fmt == "png" else "JPEG")


def test_unknown_backend_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown generation backend"):
        build_backend("midjourney")

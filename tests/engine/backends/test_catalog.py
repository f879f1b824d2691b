"""Catalog shots: count, size, format, distinct recipes, determinism, and what each key shot shows."""

from __future__ import annotations

import io
import itertools
import random

import pytest
from PIL import Image, ImageChops, ImageDraw, ImageStat

from engine.backends import build_backend
from engine.backends.base import CatalogInput
from engine.backends.catalog import RECIPES, SHOT_NAMES, prepare_product, render_catalog, render_shot
from engine.imaging import open_image
from tests.support.gateway import fixture_bytes

PRODUCT = fixture_bytes("product-coffee-cup.png")
DISTINCT = 8.0
"""Mean absolute difference (0-255) between two shots at 64x64 that counts as clearly distinct."""


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def difference(first: Image.Image, second: Image.Image) -> float:
    small = [image.convert("RGB").resize((64, 64), Image.Resampling.BILINEAR) for image in (first, second)]
    return sum(ImageStat.Stat(ImageChops.difference(small[0], small[1])).mean) / 3


def foreground_fraction(image: Image.Image, background: tuple[int, int, int], tolerance: int = 30) -> float:
    rgb = image.convert("RGB")
    diff = ImageChops.difference(rgb, Image.new("RGB", rgb.size, background))
    red, green, blue = diff.split()
    largest = ImageChops.lighter(ImageChops.lighter(red, green), blue)
    histogram = largest.histogram()
    return sum(histogram[tolerance + 1 :]) / (rgb.width * rgb.height)


def shot(images: list[Image.Image], name: str) -> Image.Image:
    return images[SHOT_NAMES.index(name)]


@pytest.fixture(scope="module")
def catalog_1024() -> list[Image.Image]:
    return render_catalog(PRODUCT, 12, 1024, seed=7)


def test_recipes_are_twelve_named_shots_and_the_first_six_are_a_varied_set() -> None:
    assert len(SHOT_NAMES) == len(set(SHOT_NAMES)) == 12
    first_six = SHOT_NAMES[:6]
    assert "white" in first_six and "detail_crop" in first_six and "portrait" in first_six
    assert any(name.startswith("backdrop_") for name in first_six)
    assert any("gradient" in name for name in first_six)
    assert any("shadow" in name for name in first_six)


@pytest.mark.parametrize(
    ("quantity", "size", "fmt", "pillow_format"),
    [
        (6, 1024, "jpeg", "JPEG"),
        (12, 1024, "png", "PNG"),
        (6, 2048, "png", "PNG"),
        (12, 2048, "jpeg", "JPEG"),
    ],
)
async def test_local_catalog_count_size_and_format(
    quantity: int, size: int, fmt: str, pillow_format: str
) -> None:
    results = await build_backend("local").catalog(
        CatalogInput(product=PRODUCT, quantity=quantity, longest_side=size, output_format=fmt)  # type: ignore[arg-type]
    )
    assert len(results) == quantity
    for result in results:
        image = decode(result.data)
        assert image.format == pillow_format
        assert result.content_type == f"image/{fmt}"
        assert max(image.size) == size
        assert (image.width, image.height) == (result.width, result.height)
    portrait = decode(results[SHOT_NAMES.index("portrait")].data)
    assert portrait.height == size and portrait.width == round(size * 4 / 5)


async def test_quantity_other_than_6_or_12_is_a_bug() -> None:
    for name in ("local", "stock"):
        with pytest.raises(ValueError):
            await build_backend(name).catalog(CatalogInput(product=PRODUCT, quantity=5, longest_side=1024))


def test_every_recipe_renders_differently_with_the_same_randomness() -> None:
    # the same rng state for every recipe: two recipes that rendered alike would differ by 0 here
    product = prepare_product(open_image(PRODUCT))
    images = [render_shot(product, recipe, 256, random.Random(1)) for recipe in RECIPES]
    for (first, a), (second, b) in itertools.combinations(zip(SHOT_NAMES, images, strict=True), 2):
        assert difference(a, b) > DISTINCT, f"{first} and {second} look the same"


def test_catalog_images_are_pairwise_distinct(catalog_1024: list[Image.Image]) -> None:
    for (first, a), (second, b) in itertools.combinations(zip(SHOT_NAMES, catalog_1024, strict=True), 2):
        assert difference(a, b) > DISTINCT, f"{first} and {second} look the same"


async def test_same_seed_same_bytes_and_another_seed_changes_the_set() -> None:
    backend = build_backend("local")

    async def run(seed: int | None) -> list[bytes]:
        request = CatalogInput(
            product=PRODUCT, quantity=6, longest_side=1024, output_format="jpeg", seed=seed
        )
        return [result.data for result in await backend.catalog(request)]

    first, again, other = await run(42), await run(42), await run(43)
    assert first == again
    assert first != other
    assert await run(None) == await run(0)


def test_six_shots_are_the_first_six_of_twelve(catalog_1024: list[Image.Image]) -> None:
    six = render_catalog(PRODUCT, 6, 1024, seed=7)
    for small, large in zip(six, catalog_1024, strict=False):
        assert small.tobytes() == large.tobytes()


def test_white_shot_has_white_corners_and_the_product_in_the_middle(catalog_1024: list[Image.Image]) -> None:
    white = shot(catalog_1024, "white").convert("RGB")
    size = white.width
    for x, y in ((4, 4), (size - 5, 4), (4, size - 5), (size - 5, size - 5)):
        pixel = white.getpixel((x, y))
        assert isinstance(pixel, tuple)
        assert min(pixel) >= 250, (x, y, pixel)
    centre = white.crop((size * 3 // 8, size * 3 // 8, size * 5 // 8, size * 5 // 8))
    assert foreground_fraction(centre, (255, 255, 255)) > 0.8
    # the cup is there: its red-brown saucer and crema
    mean = ImageStat.Stat(centre).mean
    assert mean[0] > mean[2] + 40


def test_detail_crop_magnifies_the_product(catalog_1024: list[Image.Image]) -> None:
    white = shot(catalog_1024, "white")
    detail = shot(catalog_1024, "detail_crop")
    white_fraction = foreground_fraction(white, (255, 255, 255))
    assert 0.2 < white_fraction < 0.7
    assert foreground_fraction(detail, (248, 248, 246)) > max(0.9, white_fraction + 0.2)
    # a magnified view of the product, not another backdrop: it looks like the product's middle
    product = open_image(PRODUCT).convert("RGB")
    middle = product.crop((150, 100, 450, 300))
    assert difference(detail, middle) < difference(detail, white)


def test_portrait_is_taller_than_wide_and_square_shots_are_square(catalog_1024: list[Image.Image]) -> None:
    for name, image in zip(SHOT_NAMES, catalog_1024, strict=True):
        if name == "portrait":
            assert image.height > image.width
        else:
            assert image.width == image.height == 1024


def test_coloured_backdrops_have_their_colour(catalog_1024: list[Image.Image]) -> None:
    def corner(name: str) -> list[float]:
        return ImageStat.Stat(shot(catalog_1024, name).crop((0, 0, 60, 60))).mean

    sage, navy, dark = corner("backdrop_sage"), corner("backdrop_navy"), corner("dark_studio")
    assert sage[1] > sage[0] and sage[1] > sage[2]
    assert navy[2] > navy[0] + 15 and max(navy) < 120
    assert max(dark) < 60


def test_a_product_on_a_plain_background_is_cut_out() -> None:
    photo = Image.new("RGB", (600, 400), (255, 255, 255))
    ImageDraw.Draw(photo).ellipse((200, 100, 400, 300), fill=(30, 90, 200))
    buffer = io.BytesIO()
    photo.save(buffer, "PNG")
    product = prepare_product(open_image(buffer.getvalue()))
    assert abs(product.width - 200) <= 10 and abs(product.height - 200) <= 10
    corner_alpha = product.getchannel("A").getpixel((2, 2))
    assert corner_alpha == 0
    images = render_catalog(buffer.getvalue(), 6, 512, seed=1)
    sage = shot(images, "backdrop_sage").convert("RGB")
    # the white photo background did not come along: no white square around the blue ball
    assert foreground_fraction(sage.crop((100, 100, 412, 412)), (255, 255, 255), 20) > 0.98


async def test_stock_catalog_count_size_and_distinct_images() -> None:
    results = await build_backend("stock").catalog(
        CatalogInput(product=PRODUCT, quantity=12, longest_side=2048, output_format="jpeg")
    )
    assert len(results) == 12
    images = [decode(result.data) for result in results]
    assert all(image.size == (2048, 2048) and image.format == "JPEG" for image in images)
    assert len({image.tobytes() for image in images}) == 12
    png = await build_backend("stock").catalog(
        CatalogInput(product=PRODUCT, quantity=6, longest_side=1024, output_format="png")
    )
    assert len(png) == 6 and all(decode(result.data).format == "PNG" for result in png)


def test_the_cup_is_cut_out_of_its_busy_table_and_stands_on_a_ground_shadow(
    catalog_1024: list[Image.Image],
) -> None:
    # GrabCut takes the cup and saucer off the wooden table: a cut-out, not the photo as a card
    product = prepare_product(open_image(PRODUCT))
    alpha = product.getchannel("A")
    assert alpha.getpixel((2, 2)) == 0 and alpha.getpixel((product.width - 3, product.height - 3)) == 0
    coverage = sum(alpha.histogram()[128:]) / (product.width * product.height)
    assert 0.5 < coverage < 0.9
    # no wood came along: the white shot's backdrop stays white right beside the saucer
    white = shot(catalog_1024, "white").convert("RGB")
    assert foreground_fraction(white.crop((0, 0, 1024, 90)), (255, 255, 255)) < 0.02
    # the ground-shadow shot is darker just below the product than at the same height near the edge
    ground = shot(catalog_1024, "ground_shadow").convert("L")
    rows = [y for y in range(1023, 0, -1) if ImageStat.Stat(ground.crop((312, y, 712, y + 1))).stddev[0] > 8]
    lowest = rows[0]
    below = ImageStat.Stat(ground.crop((420, lowest + 4, 604, lowest + 24))).mean[0]
    edge = ImageStat.Stat(ground.crop((10, lowest + 4, 60, lowest + 24))).mean[0]
    assert below < edge - 10, (below, edge)

"""Product catalog shots for the ``local`` backend: one photo, 6 or 12 e-commerce images.

The product is cut out of its background once (:mod:`engine.backends.cutout`:
a flood fill from a plain backdrop, GrabCut from a busy one such as the coffee
cup's wooden table). When the cut-out is still not believable — the mask covers
nearly the whole photo or nearly nothing — the whole photo is used instead, as
a card with rounded corners. Each :class:`ShotRecipe` then
places the product on a backdrop (white, studio gradient, coloured paper, a
wall-and-floor set, a dark studio), optionally with a ground shadow, a drop
shadow or a reflection, in a square or 4:5 portrait frame, or magnifies a
detail. The first six recipes are already a complete, varied set.

All randomness (small backdrop hue shifts, product scale and offset) comes from
``random.Random(seed or 0)``: the same seed gives the same pixels. Expensive
steps (gradients, blurs) are computed on small images and scaled up once.
"""

from __future__ import annotations

import colorsys
import dataclasses
import random
from typing import Literal

from PIL import Image, ImageChops, ImageDraw, ImageFilter, ImageOps

from engine.backends.cutout import cut_out
from engine.imaging import open_image

Colour = tuple[int, int, int]
Backdrop = Literal["solid", "vertical", "radial", "floor"]
Effect = Literal["none", "contact_shadow", "ground_shadow", "drop_shadow", "reflection"]

QUANTITIES = (6, 12)
MIN_COVERAGE = 0.03
MAX_COVERAGE = 0.85
"""A cut-out mask outside these fractions of the photo is not trusted: the whole photo is used."""
MAX_PRODUCT_SIDE = 2048
SMALL = 256
"""Backdrops and shadows are drawn at about this size and scaled up (smooth and fast)."""


@dataclasses.dataclass(frozen=True)
class ShotRecipe:
    name: str
    backdrop: Backdrop
    top: Colour
    """Solid colour, the top of a vertical gradient / the wall, or the centre of a radial one."""
    bottom: Colour
    """The bottom of a vertical gradient / the floor, or the edge of a radial one."""
    effect: Effect = "none"
    portrait: bool = False
    scale: float = 0.72
    """Fraction of the frame's width and height the product may fill."""
    centre: tuple[float, float] = (0.5, 0.5)
    """Where the product's centre sits, as fractions of the frame."""
    jitter: bool = True
    """Shift the backdrop's hue a little with the seed (never for pure white)."""
    detail: float = 0.0
    """When non-zero: magnify the centre of the product, showing this fraction of its short side."""


RECIPES: tuple[ShotRecipe, ...] = (
    ShotRecipe("white", "solid", (255, 255, 255), (255, 255, 255), scale=0.8, jitter=False),
    ShotRecipe(
        "studio_gradient", "radial", (250, 250, 250), (200, 202, 206), effect="contact_shadow", scale=0.68
    ),
    ShotRecipe(
        "backdrop_sage",
        "vertical",
        (196, 212, 192),
        (164, 184, 160),
        effect="contact_shadow",
        scale=0.66,
        centre=(0.5, 0.52),
    ),
    ShotRecipe(
        "ground_shadow",
        "floor",
        (244, 241, 236),
        (222, 216, 206),
        effect="ground_shadow",
        scale=0.6,
        centre=(0.5, 0.56),
    ),
    ShotRecipe(
        "portrait",
        "vertical",
        (246, 244, 241),
        (214, 210, 204),
        effect="contact_shadow",
        portrait=True,
        scale=0.74,
        centre=(0.5, 0.54),
    ),
    ShotRecipe("detail_crop", "solid", (248, 248, 246), (248, 248, 246), detail=0.5, jitter=False),
    ShotRecipe(
        "reflection",
        "vertical",
        (236, 238, 242),
        (250, 251, 253),
        effect="reflection",
        scale=0.56,
        centre=(0.5, 0.4),
    ),
    ShotRecipe(
        "backdrop_sand", "vertical", (234, 214, 184), (208, 184, 150), effect="drop_shadow", scale=0.66
    ),
    ShotRecipe("backdrop_navy", "radial", (52, 70, 112), (18, 26, 48), effect="contact_shadow", scale=0.66),
    ShotRecipe("square_centered", "solid", (238, 241, 245), (238, 241, 245), effect="drop_shadow", scale=0.9),
    ShotRecipe(
        "backdrop_blush",
        "vertical",
        (242, 214, 212),
        (226, 188, 188),
        effect="drop_shadow",
        scale=0.56,
        centre=(0.34, 0.5),
    ),
    ShotRecipe(
        "dark_studio",
        "radial",
        (78, 78, 82),
        (14, 14, 16),
        effect="reflection",
        scale=0.56,
        centre=(0.5, 0.4),
    ),
)
SHOT_NAMES: tuple[str, ...] = tuple(recipe.name for recipe in RECIPES)


def _jittered(colour: Colour, hue: float, value: float) -> Colour:
    h, s, v = colorsys.rgb_to_hsv(*(channel / 255 for channel in colour))
    red, green, blue = colorsys.hsv_to_rgb((h + hue) % 1.0, s, min(1.0, max(0.0, v + value)))
    return round(red * 255), round(green * 255), round(blue * 255)


def _blend(first: Colour, second: Colour, mask: Image.Image) -> Image.Image:
    """``first`` where ``mask`` is 0, ``second`` where it is 255."""
    return Image.composite(Image.new("RGB", mask.size, second), Image.new("RGB", mask.size, first), mask)


def _backdrop(kind: Backdrop, top: Colour, bottom: Colour, size: tuple[int, int]) -> Image.Image:
    if kind == "solid":
        return Image.new("RGB", size, top)
    small = (SMALL, max(1, round(SMALL * size[1] / size[0])))
    if kind == "vertical":
        mask = Image.linear_gradient("L").resize(small, Image.Resampling.BILINEAR)
    elif kind == "radial":
        # 0 in the centre, 255 at the corners; the light spot sits a little above the middle
        mask = Image.radial_gradient("L").resize((small[0] * 3 // 2, small[1] * 3 // 2))
        left = (mask.width - small[0]) // 2
        top_edge = (mask.height - small[1]) // 2 - small[1] // 10
        mask = mask.crop((left, top_edge, left + small[0], top_edge + small[1]))
    else:
        # a wall meeting a floor at 62 % of the height, with a soft seam
        horizon = round(small[1] * 0.62)
        mask = Image.new("L", small, 0)
        draw = ImageDraw.Draw(mask)
        for y in range(small[1]):
            if y < horizon:
                shade = round(40 * y / horizon)
            else:
                shade = 255 - round(90 * (y - horizon) / max(1, small[1] - horizon))
            draw.line([(0, y), (small[0], y)], fill=shade)
        mask = mask.filter(ImageFilter.GaussianBlur(1.5))
    return _blend(top, bottom, mask).resize(size, Image.Resampling.BICUBIC)


def _shade(backdrop: Image.Image, mask: Image.Image, strength: float) -> Image.Image:
    """Darken ``backdrop`` where ``mask`` is set: a shadow tinted by the backdrop itself."""
    darker = ImageChops.multiply(backdrop, Image.new("RGB", backdrop.size, (96, 96, 100)))
    return Image.composite(darker, backdrop, mask.point(lambda value: round(value * strength)))


def _shadow_mask(
    size: tuple[int, int], shape: Image.Image, box: tuple[int, int, int, int], blur: float
) -> Image.Image:
    """``shape`` (an ``L`` image) stretched into ``box`` and blurred, drawn small and scaled up."""
    factor = SMALL / max(size)
    small = Image.new("L", (max(1, round(size[0] * factor)), max(1, round(size[1] * factor))), 0)
    left, top, right, bottom = (round(edge * factor) for edge in box)
    piece = shape.resize((max(1, right - left), max(1, bottom - top)), Image.Resampling.BILINEAR)
    small.paste(piece, (left, top))
    small = small.filter(ImageFilter.GaussianBlur(max(0.5, blur * factor)))
    return small.resize(size, Image.Resampling.BICUBIC)


def _fit(product: Image.Image, width: int, height: int) -> Image.Image:
    scale = min(width / product.width, height / product.height)
    size = (max(1, round(product.width * scale)), max(1, round(product.height * scale)))
    return product.resize(size, Image.Resampling.LANCZOS)


def render_shot(
    product_rgba: Image.Image, recipe: ShotRecipe, longest_side: int, rng: random.Random
) -> Image.Image:
    """One catalog shot: RGB, square or 4:5 portrait, the longest side exactly ``longest_side``."""
    hue, value = rng.uniform(-0.025, 0.025), rng.uniform(-0.02, 0.02)
    scale_jitter = rng.uniform(0.96, 1.04)
    dx, dy = rng.uniform(-0.015, 0.015), rng.uniform(-0.015, 0.015)
    height = longest_side
    width = round(longest_side * 4 / 5) if recipe.portrait else longest_side
    top, bottom = recipe.top, recipe.bottom
    if recipe.jitter:
        top, bottom = _jittered(top, hue, value), _jittered(bottom, hue, value)
    canvas = _backdrop(recipe.backdrop, top, bottom, (width, height))

    if recipe.detail:
        side = max(1, round(min(product_rgba.size) * recipe.detail))
        cx = product_rgba.width / 2 + dx * product_rgba.width
        cy = product_rgba.height / 2 + dy * product_rgba.height
        left = min(max(0, round(cx - side / 2)), product_rgba.width - side)
        upper = min(max(0, round(cy - side / 2)), product_rgba.height - side)
        crop = product_rgba.crop((left, upper, left + side, upper + side))
        crop = crop.resize((width, height), Image.Resampling.LANCZOS)
        canvas.paste(crop, (0, 0), crop)
        return canvas

    scale = recipe.scale * scale_jitter
    product = _fit(product_rgba, round(width * scale), round(height * scale))
    alpha = product.getchannel("A")
    left = round(width * (recipe.centre[0] + dx) - product.width / 2)
    upper = round(height * (recipe.centre[1] + dy) - product.height / 2)
    right, lower = left + product.width, upper + product.height

    if recipe.effect == "contact_shadow":
        ellipse = Image.new("L", (64, 16), 0)
        ImageDraw.Draw(ellipse).ellipse((4, 2, 60, 14), fill=255)
        inset = product.width // 10
        depth = max(2, product.height // 14)
        box = (left + inset, lower - depth, right - inset, lower + depth)
        canvas = _shade(canvas, _shadow_mask(canvas.size, ellipse, box, depth * 0.8), 0.55)
    elif recipe.effect == "ground_shadow":
        # the silhouette laid down behind the product, as if lit from the front left
        flat = alpha.transpose(Image.Transpose.FLIP_TOP_BOTTOM)
        skew = product.width // 5
        box = (left + skew, lower - product.height // 10, right + skew, lower + product.height // 5)
        canvas = _shade(canvas, _shadow_mask(canvas.size, flat, box, product.height / 14), 0.4)
        ellipse = Image.new("L", (64, 16), 0)
        ImageDraw.Draw(ellipse).ellipse((2, 2, 62, 14), fill=255)
        contact = (
            left + product.width // 20,
            lower - product.height // 30,
            right,
            lower + product.height // 30,
        )
        canvas = _shade(canvas, _shadow_mask(canvas.size, ellipse, contact, product.height / 60), 0.6)
    elif recipe.effect == "drop_shadow":
        offset = max(2, round(longest_side * 0.018))
        box = (left + offset, upper + offset, right + offset, lower + offset)
        canvas = _shade(canvas, _shadow_mask(canvas.size, alpha, box, longest_side * 0.02), 0.5)
    elif recipe.effect == "reflection":
        mirrored = product.transpose(Image.Transpose.FLIP_TOP_BOTTOM)
        fade = Image.linear_gradient("L").resize(mirrored.size, Image.Resampling.BILINEAR)
        fade = ImageOps.invert(fade).point(lambda value: max(0, round((value - 110) * 0.55)))
        mirrored.putalpha(ImageChops.multiply(mirrored.getchannel("A"), fade))
        gap = max(1, round(longest_side * 0.004))
        canvas.paste(mirrored, (left, lower + gap), mirrored)

    canvas.paste(product, (left, upper), product)
    return canvas


def _rounded_card(photo: Image.Image) -> Image.Image:
    card = photo.convert("RGBA")
    radius = max(2, min(card.size) // 28)
    mask = Image.new("L", card.size, 0)
    ImageDraw.Draw(mask).rounded_rectangle((0, 0, card.width - 1, card.height - 1), radius=radius, fill=255)
    card.putalpha(mask)
    return card


def prepare_product(photo: Image.Image) -> Image.Image:
    """The product as RGBA cropped to it, or the whole photo as a card when no clean cut-out exists."""
    photo = photo.copy()
    photo.thumbnail((MAX_PRODUCT_SIDE, MAX_PRODUCT_SIDE), Image.Resampling.LANCZOS)
    if photo.mode == "RGBA" and photo.getchannel("A").histogram()[255] < photo.width * photo.height:
        # already cut out by the caller: keep its transparency
        box = photo.getchannel("A").getbbox()
        return photo.crop(box) if box else photo
    rgb = photo.convert("RGB")
    product = cut_out(rgb)
    histogram = product.getchannel("A").histogram()
    coverage = sum(histogram[128:]) / (rgb.width * rgb.height)
    if not MIN_COVERAGE <= coverage <= MAX_COVERAGE:
        return _rounded_card(rgb)
    return product


def render_catalog(
    product_bytes: bytes, quantity: int, longest_side: int, seed: int | None
) -> list[Image.Image]:
    """``quantity`` (6 or 12) distinct shots, each with the longest side ``longest_side``."""
    if quantity not in QUANTITIES:
        raise ValueError(f"a catalog has 6 or 12 shots, not {quantity}")
    product = prepare_product(open_image(product_bytes))
    rng = random.Random(seed or 0)
    return [render_shot(product, recipe, longest_side, rng) for recipe in RECIPES[:quantity]]

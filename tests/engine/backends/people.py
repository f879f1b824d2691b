"""Person photos and garments made in code for the offline try-on's measured tests.

A made person is the repository's astronaut's head (a real face, so the quality gate's detector
finds it) on a body drawn from simple shapes, standing on a plain, a busy or an outdoor backdrop,
anywhere in a portrait or landscape frame, full-length or cut at the hips. Because the body is
drawn here, its true masks are known exactly: the whole person, the torso a top must cover and the
legs trousers must cover. Made garments cover what the fixtures don't: a dress, a jumper on a
gradient backdrop, shorts, and the striped shirt on a hanger in front of a bookshelf.

Everything is deterministic (fixed random seeds) and takes a few milliseconds per image.
"""

from __future__ import annotations

import dataclasses
import io
import random
from typing import Any

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from tests.support.gateway import fixture_bytes

Array = np.ndarray[Any, Any]

# The astronaut's head in the 512 px fixture: hair top ~15, chin ~185; the Haar face box there is
# about (177, 66, 95, 95).
HEAD_BOX = (138, 4, 312, 196)
SKIN = (212, 172, 148)
"""The astronaut's own cheeks' colour: hands and neck of the same person."""


@dataclasses.dataclass(frozen=True)
class MadePerson:
    photo: Image.Image
    person: Array
    """True person mask (bool), the photo's size."""
    torso: Array
    """Where a top must go: the torso between the shoulders and the waist, arms excluded."""
    legs: Array
    """Where trousers must go: the legs between the crotch and the ankles."""

    def png(self) -> bytes:
        return to_png(self.photo)


def to_png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def _head(mirror: bool) -> Image.Image:
    source = Image.open(io.BytesIO(fixture_bytes("person-astronaut.png"))).convert("RGB")
    head = source.crop(HEAD_BOX)
    if mirror:
        head = head.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    alpha = Image.new("L", head.size, 0)
    ImageDraw.Draw(alpha).ellipse((16, 8, head.width - 16, head.height - 2), fill=255)
    head.putalpha(alpha.filter(ImageFilter.GaussianBlur(2)))
    return head


def backdrop(kind: str, size: tuple[int, int], seed: int = 1) -> Image.Image:
    """``plain``, ``studio`` (a gradient), ``shelf`` (busy books), ``wood`` or ``outdoor``."""
    width, height = size
    rng = random.Random(seed)
    if kind == "plain":
        return Image.new("RGB", size, (232, 232, 228))
    if kind == "studio":
        ramp = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
        top, bottom = np.array([196, 208, 222]), np.array([120, 132, 150])
        pixels = top * (1 - ramp) + bottom * ramp
        return Image.fromarray(np.repeat(pixels, width, axis=1).astype(np.uint8))
    if kind == "wood":
        cup = Image.open(io.BytesIO(fixture_bytes("product-coffee-cup.png"))).convert("RGB")
        plank = cup.crop((482, 0, 600, 400))
        tiled = Image.new("RGB", (plank.width * (width // plank.width + 1), plank.height))
        for x in range(0, tiled.width, plank.width):
            tiled.paste(
                plank if (x // plank.width) % 2 == 0 else plank.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
                (x, 0),
            )
        return tiled.resize((tiled.width, height)).crop((0, 0, width, height))
    image = Image.new("RGB", size, (70, 52, 40))
    draw = ImageDraw.Draw(image)
    if kind == "shelf":
        shelf = height // 4
        for row in range(4):
            x = 0
            while x < width:
                book = rng.randint(width // 60, width // 25)
                tall = rng.randint(shelf * 6 // 10, shelf - 8)
                colour = (rng.randint(30, 230), rng.randint(30, 200), rng.randint(30, 200))
                draw.rectangle(
                    (x, (row + 1) * shelf - tall, x + book - 2, (row + 1) * shelf - 6), fill=colour
                )
                x += book
            draw.rectangle((0, (row + 1) * shelf - 6, width, (row + 1) * shelf), fill=(120, 90, 60))
        return image
    # outdoor: sky, distant trees, a lawn
    horizon = round(height * 0.55)
    for y in range(horizon):
        t = y / horizon
        draw.line([(0, y), (width, y)], fill=(round(120 + 80 * t), round(170 + 60 * t), 235))
    draw.rectangle((0, horizon, width, height), fill=(88, 140, 70))
    for _ in range(40):
        x, r = rng.randint(0, width), rng.randint(height // 30, height // 12)
        draw.ellipse((x - r, horizon - r * 2, x + r, horizon + r // 2), fill=(40, rng.randint(80, 110), 45))
    grass = np.asarray(image).astype(np.int16)
    noise = np.random.default_rng(seed).integers(-14, 15, size=grass.shape[:2])[:, :, None]
    grass[horizon:] += noise[horizon:]
    return Image.fromarray(np.clip(grass, 0, 255).astype(np.uint8))


def person(
    size: tuple[int, int],
    *,
    unit: float,
    centre_x: float,
    top: float,
    scene: str,
    shirt: tuple[int, int, int] = (70, 90, 120),
    trousers: tuple[int, int, int] = (60, 60, 66),
    mirror: bool = False,
    legs_longer: float = 1.0,
    seed: int = 1,
) -> MadePerson:
    """A standing person whose head's face box is ``unit / 1.5`` tall, hair top at ``top``."""
    width, height = size
    canvas = backdrop(scene, size, seed)
    person_mask = np.zeros((height, width), np.uint8)
    torso_mask = np.zeros_like(person_mask)
    legs_mask = np.zeros_like(person_mask)
    body = np.array(canvas).astype(np.float32)
    head = _head(mirror)
    # the head crop's face box is ~95 px tall in a 192 px crop: scale the crop to the unit
    scale = unit / 1.5 / 95
    head = head.resize((round(head.width * scale), round(head.height * scale)), Image.Resampling.LANCZOS)
    chin = top + head.height * 0.94
    u, cx = unit, centre_x

    def poly(points: list[tuple[float, float]]) -> Array:
        return np.array([[round(cx + dx * u), round(y)] for dx, y in points], np.int32)

    shoulder, waist, hip = chin + 0.35 * u, chin + 1.8 * u, chin + 2.3 * u
    crotch = chin + 2.9 * u * legs_longer**0.2
    ankle = chin + 5.9 * u * legs_longer
    torso = poly(
        [
            (-0.25, chin - 0.1 * u),
            (0.25, chin - 0.1 * u),
            (0.95, shoulder),
            (0.85, shoulder + 0.6 * u),
            (0.7, waist),
            (0.78, hip),
            (0.8, crotch),
            (-0.8, crotch),
            (-0.78, hip),
            (-0.7, waist),
            (-0.85, shoulder + 0.6 * u),
            (-0.95, shoulder),
        ]
    )
    arms = [
        poly(
            [
                (side * 0.85, shoulder),
                (side * 1.12, shoulder + 0.15 * u),
                (side * 1.2, hip),
                (side * 0.95, hip),
                (side * 0.82, shoulder + 0.8 * u),
            ]
        )
        for side in (-1, 1)
    ]
    hands = [(round(cx + side * 1.08 * u), round(hip + 0.18 * u)) for side in (-1, 1)]
    legs = [
        poly(
            [
                (side * 0.8, crotch - 0.6 * u),
                (side * 0.05, crotch - 0.6 * u),
                (side * 0.1, ankle),
                (side * 0.42, ankle),
            ]
        )
        for side in (-1, 1)
    ]
    neck = poly([(-0.2, chin - 0.3 * u), (0.2, chin - 0.3 * u), (0.22, shoulder), (-0.22, shoulder)])

    def fill(points: Array, colour: tuple[int, int, int], *masks: Array) -> None:
        layer = np.zeros((height, width), np.uint8)
        cv2.fillPoly(layer, [points], 1)
        body[layer > 0] = colour
        for mask in masks:
            mask[layer > 0] = 1

    for leg in legs:
        fill(leg, trousers, person_mask, legs_mask)
    for side in (-1, 1):
        foot = np.zeros((height, width), np.uint8)
        cv2.ellipse(
            foot,
            (round(cx + side * 0.3 * u), round(ankle + 0.08 * u)),
            (round(0.3 * u), round(0.12 * u)),
            0,
            0,
            360,
            1,
            -1,
        )
        body[foot > 0] = (30, 26, 24)
        person_mask[foot > 0] = 1
    fill(neck, SKIN, person_mask)
    fill(torso, shirt, person_mask, torso_mask)
    for arm in arms:
        fill(arm, tuple(max(0, c - 18) for c in shirt), person_mask)  # type: ignore[arg-type]
    for hand in hands:
        layer = np.zeros((height, width), np.uint8)
        cv2.circle(layer, hand, round(0.16 * u), 1, -1)
        body[layer > 0] = SKIN
        person_mask[layer > 0] = 1
    # light from the upper left, and a few folds: shading the backend must carry over
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    light = 1.08 - 0.25 * np.clip((xx - cx) / (2 * u) + 0.5, 0, 1) * np.clip((yy - chin) / (4 * u), 0, 1)
    folds = 1 - 0.12 * np.maximum(0, np.sin((xx - cx) / (0.09 * u) + (yy - chin) / (0.5 * u))) ** 8
    shade = np.where(person_mask[:, :, None] > 0, (light * folds)[:, :, None], 1.0)
    torso_mask[:] = torso_mask & (yy >= shoulder + 0.15 * u) & (yy <= waist)
    legs_mask[:] = legs_mask & (yy >= crotch) & (yy <= ankle)
    photo = Image.fromarray(np.clip(body * shade, 0, 255).astype(np.uint8))
    photo.paste(head, (round(cx - head.width / 2), round(top)), head)
    head_alpha = np.zeros((height, width), np.uint8)
    left, upper = round(cx - head.width / 2), round(top)
    alpha = np.asarray(head.getchannel("A")) > 127
    region = head_alpha[max(0, upper) : upper + head.height, max(0, left) : left + head.width]
    region[:] = alpha[: region.shape[0], : region.shape[1]]
    person_mask |= head_alpha
    return MadePerson(photo=photo, person=person_mask > 0, torso=torso_mask > 0, legs=legs_mask > 0)


def _garment_canvas(size: tuple[int, int], scene: str) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    canvas = backdrop(scene, size, seed=5) if scene != "white" else Image.new("RGB", size, (250, 250, 250))
    return canvas, ImageDraw.Draw(canvas)


def dress() -> Image.Image:
    """A sleeveless A-line dress, teal with white dots, flat on white."""
    canvas, draw = _garment_canvas((600, 900), "white")
    outline = [
        (230, 40),
        (270, 40),
        (300, 80),
        (330, 40),
        (370, 40),
        (400, 200),
        (380, 330),
        (520, 860),
        (80, 860),
        (220, 330),
        (200, 200),
    ]
    draw.polygon(outline, fill=(20, 130, 140))
    mask = Image.new("L", canvas.size, 0)
    ImageDraw.Draw(mask).polygon(outline, fill=255)
    dots = Image.new("RGB", canvas.size, (20, 130, 140))
    dot_draw = ImageDraw.Draw(dots)
    for y in range(60, 880, 46):
        for x in range(40 + (y // 46 % 2) * 23, 580, 46):
            dot_draw.ellipse((x - 7, y - 7, x + 7, y + 7), fill=(245, 245, 240))
    canvas.paste(dots, (0, 0), mask)
    return canvas


def jumper() -> Image.Image:
    """A long-sleeved green jumper with ribs, photographed on a grey studio gradient."""
    canvas, draw = _garment_canvas((800, 700), "studio")
    body = [
        (300, 60),
        (500, 60),
        (640, 110),
        (770, 520),
        (690, 550),
        (600, 300),
        (600, 650),
        (200, 650),
        (200, 300),
        (110, 550),
        (30, 520),
        (160, 110),
    ]
    draw.polygon(body, fill=(46, 120, 64))
    for x in range(215, 600, 22):
        draw.line([(x, 320), (x, 640)], fill=(38, 100, 54), width=4)
    draw.ellipse((340, 40, 460, 110), fill=(196, 208, 222))
    return canvas


def shorts() -> Image.Image:
    """Khaki trousers, flat on light grey."""
    canvas, draw = _garment_canvas((600, 800), "white")
    draw.polygon(
        [(150, 40), (450, 40), (500, 760), (330, 760), (300, 260), (270, 760), (100, 760)],
        fill=(176, 150, 100),
    )
    draw.rectangle((150, 40, 450, 80), fill=(150, 126, 84))
    return canvas


def shirt_on_hanger(scene: str = "wood") -> Image.Image:
    """The striped shirt fixture on a hanger, on a busy backdrop (wooden planks by default)."""
    from engine.backends.cutout import garment_mask

    shirt = Image.open(io.BytesIO(fixture_bytes("garment-shirt-red-stripes.png"))).convert("RGB")
    mask = garment_mask(shirt)
    canvas = backdrop(scene, (900, 900), seed=9)
    draw = ImageDraw.Draw(canvas)
    draw.line([(450, 20), (450, 70)], fill=(190, 190, 196), width=6)
    draw.line([(300, 130), (450, 70), (600, 130)], fill=(190, 190, 196), width=8)
    canvas.paste(shirt, (50, 60), mask)
    return canvas


def no_person_photos() -> list[tuple[str, bytes]]:
    """Photos with nobody in them: the coffee cup, an empty lawn, an empty studio."""
    return [
        ("coffee-cup", fixture_bytes("product-coffee-cup.png")),
        ("empty-lawn", to_png(backdrop("outdoor", (1024, 700), seed=3))),
        ("empty-studio", to_png(backdrop("studio", (700, 1024)))),
    ]


@dataclasses.dataclass(frozen=True)
class Pair:
    name: str
    person: bytes
    garments: tuple[bytes, ...]
    truth: MadePerson | None
    """Known masks for a made person; None for the astronaut photo."""
    kinds: tuple[str, ...]


def pairs() -> list[Pair]:
    """Every person/garment pair the measured suite runs."""
    astronaut = fixture_bytes("person-astronaut.png")
    red = fixture_bytes("garment-shirt-red-stripes.png")
    blue = fixture_bytes("garment-trousers-blue.png")
    standing = person((768, 1024), unit=112, centre_x=384, top=40, scene="plain")
    off_centre = person(
        (760, 1024),
        unit=108,
        centre_x=500,
        top=50,
        scene="outdoor",
        shirt=(200, 190, 170),
        trousers=(90, 80, 70),
        mirror=True,
        legs_longer=1.05,
    )
    half_landscape = person((1024, 640), unit=200, centre_x=330, top=30, scene="shelf", shirt=(230, 230, 226))
    wide_full = person(
        (1024, 720),
        unit=78,
        centre_x=700,
        top=30,
        scene="shelf",
        shirt=(150, 60, 60),
        trousers=(40, 44, 60),
        legs_longer=0.95,
    )
    half_portrait = person(
        (800, 1000), unit=230, centre_x=400, top=60, scene="studio", shirt=(210, 120, 40), mirror=True
    )
    return [
        Pair("astronaut-shirt", astronaut, (red,), None, ("top",)),
        Pair("astronaut-shirt-trousers", astronaut, (red, blue), None, ("top", "bottom")),
        Pair("standing-shirt-trousers", standing.png(), (red, blue), standing, ("top", "bottom")),
        Pair("off-centre-dress", off_centre.png(), (to_png(dress()),), off_centre, ("dress",)),
        Pair(
            "landscape-half-hanger-shirt",
            half_landscape.png(),
            (to_png(shirt_on_hanger()),),
            half_landscape,
            ("top",),
        ),
        Pair(
            "landscape-full-jumper-trousers",
            wide_full.png(),
            (to_png(jumper()), to_png(shorts())),
            wide_full,
            ("top", "bottom"),
        ),
        Pair("portrait-half-jumper", half_portrait.png(), (to_png(jumper()),), half_portrait, ("top",)),
    ]

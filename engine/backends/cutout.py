"""Cutting a flat-lay garment (or a product) out of its plain background.

Two passes over a working copy of at most 400 px:

1. **Flood fill from the borders.** Pixels connected to the image border whose
   colour is within a tolerance of the border's background colour are
   background. Light areas inside the garment that don't touch the border stay.
2. **Column closure.** A light stripe that runs out to the garment's edge *does*
   touch the background (a white stripe on a white backdrop), so the flood fill
   takes it too. Such a pixel is restored when garment pixels lie both above and
   below it in its column: background never sits between two layers of fabric,
   while the neck opening (open above) and the gap between trouser legs (open
   below) stay transparent.

The mask is then scaled back, eroded by a pixel (no halo) and softened.
"""

from __future__ import annotations

from collections import deque

from PIL import Image, ImageChops, ImageFilter, ImageStat

WORKING_SIZE = 400
TOLERANCE = 30


def _border_colour(image: Image.Image) -> tuple[int, int, int]:
    """The median colour of the image's outermost pixels: the backdrop."""
    width, height = image.size
    border = Image.new("RGB", (2 * width + 2 * height, 1))
    border.paste(image.crop((0, 0, width, 1)), (0, 0))
    border.paste(image.crop((0, height - 1, width, height)), (width, 0))
    border.paste(image.crop((0, 0, 1, height)).transpose(Image.Transpose.ROTATE_90), (2 * width, 0))
    border.paste(
        image.crop((width - 1, 0, width, height)).transpose(Image.Transpose.ROTATE_90),
        (2 * width + height, 0),
    )
    red, green, blue = ImageStat.Stat(border).median
    return int(red), int(green), int(blue)


def _background_like(image: Image.Image, colour: tuple[int, int, int], tolerance: int) -> bytearray:
    """1 where a pixel is within ``tolerance`` (max channel difference) of ``colour``."""
    backdrop = Image.new("RGB", image.size, colour)
    difference = ImageChops.difference(image.convert("RGB"), backdrop)
    red, green, blue = difference.split()
    largest = ImageChops.lighter(ImageChops.lighter(red, green), blue)
    return bytearray(1 if value <= tolerance else 0 for value in largest.tobytes())


def _flood_from_border(candidate: bytearray, width: int, height: int) -> bytearray:
    background = bytearray(width * height)
    queue: deque[int] = deque()
    for x in range(width):
        queue.extend((x, (height - 1) * width + x))
    for y in range(height):
        queue.extend((y * width, y * width + width - 1))
    while queue:
        index = queue.popleft()
        if background[index] or not candidate[index]:
            continue
        background[index] = 1
        x, y = index % width, index // width
        if x > 0:
            queue.append(index - 1)
        if x < width - 1:
            queue.append(index + 1)
        if y > 0:
            queue.append(index - width)
        if y < height - 1:
            queue.append(index + width)
    return background


def _close_columns(background: bytearray, width: int, height: int) -> None:
    for x in range(width):
        column = range(x, width * height, width)
        garment_rows = [row for row, index in enumerate(column) if not background[index]]
        if len(garment_rows) < 2:
            continue
        for row in range(garment_rows[0], garment_rows[-1] + 1):
            background[row * width + x] = 0


def garment_mask(image: Image.Image, tolerance: int = TOLERANCE) -> Image.Image:
    """An ``L`` mask the size of ``image``: 255 on the garment, 0 on the background."""
    work = image.convert("RGB")
    work.thumbnail((WORKING_SIZE, WORKING_SIZE), Image.Resampling.BILINEAR)
    width, height = work.size
    candidate = _background_like(work, _border_colour(work), tolerance)
    background = _flood_from_border(candidate, width, height)
    _close_columns(background, width, height)
    mask = Image.frombytes("L", (width, height), bytes(0 if value else 255 for value in background))
    mask = mask.resize(image.size, Image.Resampling.BILINEAR).point(lambda value: 255 if value >= 128 else 0)
    return mask.filter(ImageFilter.MinFilter(3)).filter(ImageFilter.GaussianBlur(1))


def cut_out(image: Image.Image) -> Image.Image:
    """The garment as RGBA, cropped to its silhouette."""
    rgba = image.convert("RGBA")
    mask = garment_mask(image)
    rgba.putalpha(mask)
    box = mask.getbbox()
    return rgba.crop(box) if box else rgba

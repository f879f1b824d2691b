"""Draw the offline try-on's contact sheet: ``python -m tests.engine.backends.contact_sheet``.

Each row is one pair of the measured suite (:mod:`tests.engine.backends.people`): the person
photo, the garments, and the ``local`` backend's 1K result. Written to
``docs/local-backend-contact-sheet.png`` and shown in the README.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

from PIL import Image, ImageDraw

from engine.backends.base import TryonInput
from engine.backends.local import compose
from tests.engine.backends.people import pairs

ROW = 300
GAP = 8
OUTPUT = Path(__file__).resolve().parents[3] / "docs" / "local-backend-contact-sheet.png"


def _fit(image: Image.Image, height: int) -> Image.Image:
    scale = height / image.height
    return image.convert("RGB").resize((max(1, round(image.width * scale)), height), Image.Resampling.LANCZOS)


def _open(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def render(path: Path = OUTPUT) -> Path:
    rows: list[list[Image.Image]] = []
    for pair in pairs():
        person = _fit(_open(pair.person), ROW)
        garments = [_fit(_open(data), ROW // len(pair.garments) - GAP) for data in pair.garments]
        column = Image.new("RGB", (max(g.width for g in garments), ROW), (255, 255, 255))
        y = 0
        for garment in garments:
            column.paste(garment, ((column.width - garment.width) // 2, y))
            y += garment.height + GAP
        result = _fit(compose(TryonInput(person=pair.person, garments=pair.garments, longest_side=1024)), ROW)
        rows.append([person, column, result])
    widths = [max(row[index].width for row in rows) for index in range(3)]
    header = 28
    sheet = Image.new("RGB", (sum(widths) + GAP * 4, header + len(rows) * (ROW + GAP) + GAP), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    x = GAP
    for title, width in zip(("person photo", "garments", "local backend, 1K result"), widths, strict=True):
        draw.text((x + 4, 8), title, fill=(40, 40, 40))
        x += width + GAP
    for index, row in enumerate(rows):
        x, y = GAP, header + index * (ROW + GAP)
        for cell, width in zip(row, widths, strict=True):
            sheet.paste(cell, (x + (width - cell.width) // 2, y))
            x += width + GAP
    sheet.save(path, "PNG", optimize=True)
    return path


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else OUTPUT
    print(render(target))

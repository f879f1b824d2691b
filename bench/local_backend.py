"""The ``local`` backend at 1K/2K/4K against Pillow doing the same resize + composite + encode alone.

The backend's try-on (:meth:`engine.backends.local.LocalBackend._tryon`: find the body, cut the
garment out, fit it, shade it, encode) on the test fixtures' astronaut and striped shirt, against
the floor any composite pays: decode both images, resize the person to the size, resize the
garment, alpha-composite it onto the torso and encode the same format at the same zlib level. Each
is timed ``repeats`` times in turn, in this process, and the best time is kept (the machine is
shared; the best is the least disturbed).
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable

from PIL import Image

from bench.report import Run
from bench.world import GARMENT, PERSON
from engine.backends.base import TryonInput
from engine.backends.local import LocalBackend
from engine.imaging import PNG_COMPRESS_LEVEL

SIZES = {"1K": 1024, "2K": 2048, "4K": 4096}
RATIO_TARGET = 2.0
FOUR_K_SECONDS = 3.0


def pillow_alone(person: bytes, garment: bytes, side: int) -> bytes:
    """The bare image path: decode, resize, composite, encode as PNG."""
    base = Image.open(io.BytesIO(person)).convert("RGB")
    scale = side / max(base.size)
    base = base.resize((round(base.width * scale), round(base.height * scale)), Image.Resampling.LANCZOS)
    cloth = Image.open(io.BytesIO(garment)).convert("RGBA")
    width = base.width // 2
    cloth = cloth.resize((width, round(cloth.height * width / cloth.width)), Image.Resampling.LANCZOS)
    layer = Image.new("RGBA", base.size)
    layer.paste(cloth, (base.width // 4, base.height // 3))
    out = Image.alpha_composite(base.convert("RGBA"), layer).convert("RGB")
    buffer = io.BytesIO()
    out.save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buffer.getvalue()


def _best(work: Callable[[], object], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - started)
    return best


def measure(run: Run, *, repeats: int = 3, sizes: tuple[str, ...] = tuple(SIZES)) -> None:
    person, garment = PERSON.read_bytes(), GARMENT.read_bytes()
    backend = LocalBackend()
    timings: dict[str, tuple[float, float]] = {}
    for label in sizes:
        side = SIZES[label]
        request = TryonInput(person=person, garments=(garment,), longest_side=side, output_format="png")
        local = _best(lambda request=request: backend._tryon(request), repeats)  # type: ignore[misc]
        pillow = _best(lambda side=side: pillow_alone(person, garment, side), repeats)  # type: ignore[misc]
        timings[label] = (local, pillow)
        run.add("local", f"local try-on {label}", local * 1000, "ms", f"best of {repeats}")
        run.add("local", f"Pillow alone {label}", pillow * 1000, "ms", "resize + composite + PNG encode")
    local_1k, pillow_1k = timings["1K"]
    run.at_most("local 1K try-on / Pillow alone 1K", local_1k / pillow_1k, RATIO_TARGET, "x", strict=False)
    if "4K" in timings:
        run.at_most("local 4K try-on", timings["4K"][0], FOUR_K_SECONDS, "s")

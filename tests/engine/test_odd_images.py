"""Image bombs and odd images through the real API (issue 11): each either makes a finished try-on
or is a 400 whose detail names the problem, sent both inline (base64) and by URL, with ``serve`` and
``worker`` as their own processes so their peak memory (``VmHWM``) can be read afterwards.

Every image is made here, with Pillow or by hand with zlib for the bombs; nothing is mocked.
"""

from __future__ import annotations

import asyncio
import base64
import io
import struct
import subprocess
import sys
import zlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import numpy as np
import pytest
from PIL import Image, ImageOps

from engine.imaging import open_image
from tests.support import services
from tests.support.gateway import ADMIN_TOKEN, fixture_bytes, free_port
from tests.support.image_host import ImageHost, make_bomb_png, make_gif
from tests.support.processes import child_env

CLI = [sys.executable, "-m", "gateway.cli"]
MEMORY_LIMIT_MB = 500
PERSON = fixture_bytes("person-astronaut.png")
SHIRT = fixture_bytes("garment-shirt-red-stripes.png")


# --- making the images ------------------------------------------------------------------------


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _png_from_rows(width: int, height: int, depth: int, colour: int, rows: Callable[[], Any]) -> bytes:
    """A PNG assembled by hand from an iterator of raw rows (filter byte included)."""
    compressor = zlib.compressobj(9)
    data = b"".join(compressor.compress(row) for row in rows()) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", data) + _chunk(b"IEND", b"")


def _save(image: Image.Image, fmt: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _rgb(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data)).convert("RGB")


def declared_only_png(side: int) -> bytes:
    """A PNG header declaring ``side`` x ``side`` pixels followed by almost no data."""
    return _png_from_rows(side, side, 8, 2, lambda: [b"\x00" * 64])


def deeply_compressed_png() -> bytes:
    """The shirt in the middle of a 6000 x 6000 white canvas: ~1000 times smaller than its pixels,
    within every cap (36 megapixels), so it must work, in bounded memory."""
    shirt = _rgb(SHIRT)
    side = 6000
    white_row = b"\x00" + b"\xff" * (3 * side)
    top = (side - shirt.height) // 2
    left = (side - shirt.width) // 2
    pixels = np.asarray(shirt)

    def rows() -> Any:
        for y in range(side):
            if top <= y < top + shirt.height:
                row = bytearray(white_row)
                row[1 + 3 * left : 1 + 3 * (left + shirt.width)] = pixels[y - top].tobytes()
                yield bytes(row)
            else:
                yield white_row

    return _png_from_rows(side, side, 8, 2, rows)


def sixteen_bit_rgb_png(data: bytes) -> bytes:
    """A 16-bit-per-channel RGB PNG (Pillow cannot write one), by hand."""
    pixels = np.asarray(_rgb(data)).astype(">u2") * 257
    height, width, _ = pixels.shape
    return _png_from_rows(
        width, height, 16, 2, lambda: (b"\x00" + pixels[y].tobytes() for y in range(height))
    )


def sixteen_bit_gray_png(data: bytes) -> bytes:
    """A 16-bit grayscale PNG: Pillow opens it as I;16, whose own conversion clips to white."""
    gray = np.asarray(_rgb(data).convert("L")).astype(np.uint16) * 257
    return _save(Image.fromarray(gray), "PNG")


def exif_rotated_jpeg(data: bytes) -> bytes:
    """The pixels stored on their side with EXIF orientation 6: only a reader that honours EXIF
    sees an upright picture (and finds the face in it)."""
    upright = _rgb(data)
    stored = upright.rotate(90, expand=True)
    exif = Image.Exif()
    exif[0x0112] = 6
    rotated = _save(stored, "JPEG", quality=92, exif=exif.tobytes())
    assert ImageOps.exif_transpose(Image.open(io.BytesIO(rotated))).size == upright.size
    return rotated


def palette_with_transparency(data: bytes) -> bytes:
    """The garment as a palette PNG whose backdrop colour is transparent."""
    paletted = _rgb(data).convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    backdrop = paletted.getpixel((0, 0))
    return _save(paletted, "PNG", transparency=backdrop)


def animated(data: bytes, fmt: str) -> bytes:
    first = _rgb(data)
    frames = [first.rotate(angle) for angle in (5, 10, 15)]
    return _save(first, fmt, save_all=True, append_images=frames, duration=100, loop=0)


def animated_gif() -> bytes:
    frames = [Image.new("RGB", (64, 64), colour) for colour in ((200, 0, 0), (0, 200, 0))]
    return _save(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def text_chunk_bomb() -> bytes:
    """A small valid PNG with a zTXt chunk that inflates to 200 MB of metadata."""
    valid = _save(_rgb(SHIRT), "PNG")
    compressor = zlib.compressobj(9)
    inflated = b"".join(compressor.compress(b"\x00" * 1_000_000) for _ in range(200)) + compressor.flush()
    bomb = _chunk(b"zTXt", b"Comment\x00\x00" + inflated)
    return valid[:33] + bomb + valid[33:]  # after IHDR, before the image data


# The cases: (name, person bytes, garment bytes, expected). ``expected`` is "ok" (a finished
# try-on) or the start of the 400's detail (the field is added by the test).
Case = tuple[str, bytes, bytes, str]


def cases() -> list[Case]:
    person_cmyk = _save(_rgb(PERSON).convert("CMYK"), "JPEG", quality=92)
    shirt_jpeg = _save(_rgb(SHIRT), "JPEG", quality=90)
    shirt_webp = _save(_rgb(SHIRT), "WEBP", quality=80)
    shirt_png = _save(_rgb(SHIRT), "PNG")
    return [
        ("declared 50,000² PNG", PERSON, make_bomb_png(50_000), "image too large"),
        ("declared 50,000², no data", declared_only_png(50_000), SHIRT, "image too large"),
        ("49 megapixels of zeros", PERSON, make_bomb_png(7_000), "image too large"),
        ("deeply compressed 6000² PNG", PERSON, deeply_compressed_png(), "ok"),
        ("zTXt metadata bomb", PERSON, text_chunk_bomb(), "unsupported image format"),
        ("animated GIF", PERSON, animated_gif(), "unsupported image format"),
        ("animated WebP", PERSON, animated(SHIRT, "WEBP"), "ok"),
        ("APNG", PERSON, animated(SHIRT, "PNG"), "ok"),
        ("CMYK JPEG person", person_cmyk, SHIRT, "ok"),
        ("16-bit RGB garment", PERSON, sixteen_bit_rgb_png(SHIRT), "ok"),
        ("16-bit gray person", sixteen_bit_gray_png(PERSON), SHIRT, "ok"),
        ("palette with transparency", PERSON, palette_with_transparency(SHIRT), "ok"),
        ("EXIF-rotated JPEG person", exif_rotated_jpeg(PERSON), SHIRT, "ok"),
        ("truncated PNG", PERSON, shirt_png[: len(shirt_png) // 2], "unsupported image format"),
        ("truncated JPEG", PERSON, shirt_jpeg[: len(shirt_jpeg) // 2], "unsupported image format"),
        ("truncated WebP", PERSON, shirt_webp[: len(shirt_webp) // 2], "unsupported image format"),
        ("JPEG with a ZIP appended", PERSON, shirt_jpeg + b"PK\x03\x04" + b"\x00" * 200, "ok"),
        ("PNG with HTML after IEND", PERSON, shirt_png + b"<html><script>alert(1)</script></html>", "ok"),
        ("HTML before a PNG", PERSON, b"<html><!--" + shirt_png + b"--></html>", "unsupported image format"),
        (
            "GIF/JavaScript polyglot",
            PERSON,
            b"GIF89a/*\x01\x00\x01\x00*/=alert(1);//",
            "unsupported image format",
        ),
        ("a real GIF", PERSON, make_gif(), "unsupported image format"),
    ]


# --- the decoder alone --------------------------------------------------------------------------


def test_sixteen_bit_gray_keeps_its_tones() -> None:
    """Pillow's own I;16 -> L conversion clips: the astronaut came out (almost) all white."""
    original = np.asarray(_rgb(PERSON).convert("L"), dtype=np.float64)
    decoded = np.asarray(open_image(sixteen_bit_gray_png(PERSON)).convert("L"), dtype=np.float64)
    assert abs(decoded.mean() - original.mean()) < 2, (decoded.mean(), original.mean())


def test_large_inputs_are_decoded_small() -> None:
    big_jpeg = _save(Image.new("RGB", (9000, 6000), (20, 120, 200)), "JPEG", quality=80)
    assert open_image(big_jpeg).size == (2250, 1500)  # decoded at 1/4 scale by libjpeg itself
    assert open_image(deeply_compressed_png()).size == (3000, 3000)  # 36 megapixels: reduce(2)
    model_answer = _save(Image.new("RGB", (5504, 3072), (20, 120, 200)), "PNG", compress_level=1)
    assert open_image(model_answer).size == (5504, 3072)  # a 4K 16:9 answer keeps every pixel


# --- through the API, in child processes ------------------------------------------------------------


class Children:
    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = env
        self.logs = logs
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        log = (self.logs / f"{args[0]}-{len(self.started)}.log").open("wb")
        child = subprocess.Popen([*CLI, *args], env=self.env, stdout=log, stderr=subprocess.STDOUT)
        self.started.append(child)
        return child

    def stop(self) -> None:
        for child in self.started:
            if child.poll() is None:
                child.terminate()
        for child in self.started:
            try:
                child.wait(timeout=20)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmHWM for {pid}")


@pytest.fixture
async def children(
    redis_url: str, s3: services.S3Endpoint, image_host: ImageHost, tmp_path: Path
) -> AsyncIterator[Children]:
    await services.check_postgres()
    database, database_url = await services.create_database()
    env = child_env(
        database_url=database_url,
        redis_url=redis_url,
        s3=s3,
        image_host=image_host,
        TRYON_LOG_LEVEL="warning",
        TRYON_RATE_LIMIT_PER_MIN="1000",
        TRYON_READ_RATE_LIMIT_PER_MIN="100000",
    )
    group = Children(env, tmp_path)
    try:
        yield group
    finally:
        group.stop()
        await services.drop_database(database)


async def _call(http: aiohttp.ClientSession, method: str, url: str, token: str, body: Any = None) -> Any:
    async with http.request(method, url, json=body, headers={"Authorization": f"Bearer {token}"}) as response:
        return response.status, await response.json(content_type=None)


async def _ready(http: aiohttp.ClientSession, base: str, serve: subprocess.Popen[bytes]) -> None:
    for _ in range(600):
        assert serve.poll() is None, "serve exited"
        try:
            async with http.get(base + "/readyz") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    raise AssertionError("serve never became ready")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def test_odd_images_work_or_are_a_clear_400_in_bounded_memory(
    children: Children, http: aiohttp.ClientSession, image_host: ImageHost
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    serve = children.start("serve", "--port", str(port))
    # two job threads: enough to exercise DECODE_BUDGET; a 1K local try-on alone costs ~95 MB
    worker = children.start("worker", "--threads", "2")
    await _ready(http, base, serve)
    status, account = await _call(
        http,
        "POST",
        base + "/admin/accounts",
        ADMIN_TOKEN,
        {"name": "Odd", "dialect": "fitinview", "credits": 10**6},
    )
    assert status == 201, account
    status, minted = await _call(
        http, "POST", f"{base}/admin/accounts/{account['id']}/keys", ADMIN_TOKEN, {"mode": "live"}
    )
    key = minted["key"]

    burst = asyncio.Semaphore(8)  # a burst, not a flood: 42 at once only measures the test machine

    async def submit(index: int, case: Case, by_url: bool) -> tuple[str, str, bool, bool, int, Any]:
        async with burst:
            return await submit_now(index, case, by_url)

    async def submit_now(index: int, case: Case, by_url: bool) -> tuple[str, str, bool, bool, int, Any]:
        name, person, garment, expected = case
        if by_url:
            body: dict[str, Any] = {
                "person_url": image_host.put(f"odd-{index}-person", person),
                "garment_urls": [image_host.put(f"odd-{index}-garment", garment)],
            }
        else:
            body = {"person_image_b64": _b64(person), "garment_images_b64": [_b64(garment)]}
        status, answer = await _call(http, "POST", base + "/api/v1/tryon", key, {**body, "wait": False})
        label = name + (" by URL" if by_url else " inline")
        return label, expected, person is not PERSON, by_url, status, answer

    submitted = await asyncio.gather(
        *(submit(index, case, by_url) for index, case in enumerate(cases()) for by_url in (False, True))
    )
    pending: dict[str, str] = {}
    problems: list[str] = []
    for label, expected, odd_person, by_url, status, answer in submitted:
        if expected == "ok":
            if status != 200 or "job_id" not in answer:
                problems.append(f"{label}: expected a job, got {status} {answer}")
            else:
                pending[label] = answer["job_id"]
            continue
        field = (
            ("person_url" if by_url else "person_image_b64")
            if odd_person
            else ("garment_urls[0]" if by_url else "garment_images_b64[0]")
        )
        detail = answer.get("detail", "") if isinstance(answer, dict) else ""
        if status != 400 or not detail.startswith(f"{expected}: {field}"):
            problems.append(f"{label}: expected 400 '{expected}: {field}', got {status} {answer}")

    deadline = asyncio.get_running_loop().time() + 300
    while pending and asyncio.get_running_loop().time() < deadline:
        for label, job_id in list(pending.items()):
            status, job = await _call(http, "GET", f"{base}/api/v1/tryon/{job_id}", key)
            assert status == 200, job
            if job["status"] == "succeeded":
                del pending[label]
            elif job["status"] == "failed":
                problems.append(f"{label}: job failed: {msgspec.json.encode(job).decode()[:300]}")
                del pending[label]
        await asyncio.sleep(0.5)
    problems.extend(f"{label}: job {job_id} never finished" for label, job_id in pending.items())

    worker_peak, serve_peak = peak_rss_mb(worker.pid), peak_rss_mb(serve.pid)
    print(f"\npeak RSS after the matrix: worker {worker_peak:.0f} MB, serve {serve_peak:.0f} MB")
    assert not problems, "\n".join(problems)
    assert worker_peak < MEMORY_LIMIT_MB, f"worker peak RSS {worker_peak:.0f} MB"
    assert serve_peak < MEMORY_LIMIT_MB, f"serve peak RSS {serve_peak:.0f} MB"

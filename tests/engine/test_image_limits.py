"""Image bombs by shape: a small PNG declaring 40,000,000 x 1 pixels is within the pixel cap, yet
scaling it once took ~2 GB and ~9 s in a worker (issue 11). Each side and the aspect ratio are now
capped from the header, before a byte of pixels is decoded and before any charge."""

from __future__ import annotations

import base64
import io
import struct
import zlib

import pytest
from PIL import Image

from engine.errors import ImageRejected
from engine.inputs import ImageLimits, validate_image
from tests.support.gateway import RunningGateway, fixture_b64


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def strip_png(width: int, height: int) -> bytes:
    """A valid 1-bit grayscale PNG of zeros, built row by row so the test never holds its pixels."""
    row = b"\x00" * (1 + (width + 7) // 8)
    compressor = zlib.compressobj(9)
    compressed = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", compressed) + _chunk(b"IEND", b"")


def png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (120, 80, 40)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_long_side_is_too_large_even_within_the_pixel_cap() -> None:
    bomb = strip_png(40_000_000, 1)
    assert len(bomb) < 200_000  # small on the wire, 40 megapixels declared: within the pixel cap
    with pytest.raises(ImageRejected) as caught:
        validate_image(bomb, "person_image_b64", ImageLimits())
    assert caught.value.message == (
        "image too large: person_image_b64 — 40000000x1, a side over 12000 pixels"
    )
    assert caught.value.field == "person_image_b64"


@pytest.mark.parametrize(("width", "height"), [(2100, 100), (50, 1200)])
def test_a_strip_is_refused_for_its_aspect_ratio(width: int, height: int) -> None:
    with pytest.raises(ImageRejected) as caught:
        validate_image(png(width, height), "garment_urls[0]", ImageLimits())
    assert caught.value.message.startswith("unsupported image format: garment_urls[0] — aspect ratio")
    assert "over 20:1" in caught.value.message


def test_limits_are_settings() -> None:
    image = validate_image(png(2000, 100), "person_url", ImageLimits(max_aspect=20.0))
    assert (image.width, image.height) == (2000, 100)  # exactly 20:1 is accepted
    with pytest.raises(ImageRejected, match="a side over 1999 pixels"):
        validate_image(png(2000, 100), "person_url", ImageLimits(max_side=1999))


async def test_the_bomb_is_a_400_before_any_charge_in_both_dialects(gateway: RunningGateway) -> None:
    bomb = base64.b64encode(strip_png(40_000_000, 1)).decode()
    account_id, key = await gateway.account_with_key(credits=100)
    body = {
        "person_image_b64": bomb,
        "garment_images_b64": [fixture_b64("garment-shirt-red-stripes.png")],
        "wait": False,
    }
    status, answer, _ = await gateway.request("POST", "/api/v1/tryon", key=key, json=body)
    assert status == 400, answer
    assert answer["detail"].startswith("image too large: person_image_b64"), answer

    ftmvai_account, ftmvai_key = await gateway.account_with_key(dialect="ftmvai", credits=100)
    body = {"person_image": fixture_b64("person-astronaut.png"), "clothing_image": bomb}
    status, answer, _ = await gateway.request("POST", "/api/v1/generate", key=ftmvai_key, json=body)
    assert status == 400, answer
    assert answer["error"]["code"] == "INVALID_REQUEST"
    assert answer["error"]["message"].startswith("image too large: clothing_image"), answer

    for account in (account_id, ftmvai_account):
        detail = await gateway.admin("GET", f"/accounts/{account}")
        assert detail["credits_remaining"] == 100 == detail["ledger_sum"]

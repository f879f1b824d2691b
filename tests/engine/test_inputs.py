"""Input images: base64 decoding, validation and fetching by URL.

URL fetches go to the local image host only; these tests never reach the internet.
"""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator
from io import BytesIO

import aiohttp
import pytest
import pytest_asyncio
from PIL import Image, ImageFile

from engine.errors import ImageRejected, InvalidRequest
from engine.inputs import (
    ImageLimits,
    InputImage,
    decode_base64,
    load_image_from_base64,
    load_image_from_url,
    validate_image,
)
from engine.outbound import OutboundPolicy, make_session
from tests.support.image_host import FIXTURES_DIR, ImageHost, make_bomb_png, make_gif, serve_image_host

LIMITS = ImageLimits(max_bytes=15 * 1024 * 1024, max_pixels=40_000_000)
PERSON_BYTES = (FIXTURES_DIR / "person-astronaut.png").read_bytes()
SHIRT_BYTES = (FIXTURES_DIR / "garment-shirt-red-stripes.png").read_bytes()

RED = (255, 0, 0)
BLUE = (0, 0, 255)


def encode(image: Image.Image, image_format: str, **save_options: object) -> bytes:
    buffer = BytesIO()
    image.save(buffer, format=image_format, **save_options)
    return buffer.getvalue()


def left_red_right_blue(width: int = 40, height: int = 20) -> Image.Image:
    image = Image.new("RGB", (width, height), BLUE)
    image.paste(RED, (0, 0, width // 2, height))
    return image


def jpeg_with_orientation(orientation: int) -> bytes:
    image = left_red_right_blue()
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(image, "JPEG", exif=exif.tobytes(), quality=95)


def assert_rejected(caught: pytest.ExceptionInfo[ImageRejected], word: str, field: str) -> None:
    message = str(caught.value)
    assert message.startswith(f"{word}: {field}"), message
    assert caught.value.field == field


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def image_host() -> AsyncIterator[ImageHost]:
    async with serve_image_host() as host:
        yield host


@pytest_asyncio.fixture(loop_scope="session")
async def policy(image_host: ImageHost) -> OutboundPolicy:
    return OutboundPolicy(
        allow_http=True,
        allow_hosts=frozenset({image_host.host_port}),
        timeout_seconds=2.0,
        max_redirects=3,
        max_bytes=LIMITS.max_bytes,
    )


@pytest_asyncio.fixture(loop_scope="session")
async def session(policy: OutboundPolicy) -> AsyncIterator[aiohttp.ClientSession]:
    async with make_session(policy) as client:
        yield client


# --- base64 --------------------------------------------------------------------------


def test_decode_raw_base64() -> None:
    assert decode_base64(base64.b64encode(SHIRT_BYTES).decode(), "garment_image") == SHIRT_BYTES


def test_decode_tolerates_a_data_url_prefix_and_line_breaks() -> None:
    encoded = base64.encodebytes(SHIRT_BYTES).decode()  # wrapped every 76 characters
    assert "\n" in encoded
    assert decode_base64(f"data:image/png;base64,{encoded}", "garment_image") == SHIRT_BYTES
    assert decode_base64(f"  DATA:image/png;BASE64,{encoded}\r\n", "garment_image") == SHIRT_BYTES


def test_decode_tolerates_missing_padding_and_url_safe_alphabet() -> None:
    encoded = base64.urlsafe_b64encode(SHIRT_BYTES).decode().rstrip("=")
    assert decode_base64(encoded, "garment_image") == SHIRT_BYTES


@pytest.mark.parametrize("value", ["not base64 at all!", "abc$def", "a", "data:image/png;base64,@@@@"])
def test_invalid_base64_is_rejected(value: str) -> None:
    with pytest.raises(ImageRejected) as caught:
        decode_base64(value, "person_image")
    assert_rejected(caught, "invalid base64 image", "person_image")


@pytest.mark.parametrize("value", ["", "   ", "data:image/png;base64,", "\n"])
def test_empty_base64_is_an_invalid_request(value: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        decode_base64(value, "person_image")
    assert not isinstance(caught.value, ImageRejected)
    assert caught.value.field == "person_image"


async def test_load_image_from_base64() -> None:
    image = await load_image_from_base64(base64.b64encode(PERSON_BYTES).decode(), "person_image", LIMITS)
    assert image.data == PERSON_BYTES
    assert image.format == "png"
    assert image.content_type == "image/png"
    with Image.open(BytesIO(PERSON_BYTES)) as reference:
        assert (image.width, image.height) == reference.size


async def test_load_image_from_base64_refuses_oversized_text_before_decoding() -> None:
    small = ImageLimits(max_bytes=1000, max_pixels=LIMITS.max_pixels)
    with pytest.raises(ImageRejected) as caught:
        await load_image_from_base64("A" * 10_000, "person_image", small)
    assert_rejected(caught, "image too large", "person_image")


# --- validation ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("image_format", "expected", "content_type"),
    [("PNG", "png", "image/png"), ("JPEG", "jpeg", "image/jpeg"), ("WEBP", "webp", "image/webp")],
)
def test_accepted_formats_keep_their_bytes(image_format: str, expected: str, content_type: str) -> None:
    data = encode(left_red_right_blue(), image_format)
    image = validate_image(data, "person_image", LIMITS)
    assert image == InputImage(data=data, format=expected, content_type=content_type, width=40, height=20)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("data", "label"),
    [
        (make_gif(), "gif"),
        (encode(left_red_right_blue(), "BMP"), "bmp"),
        (encode(left_red_right_blue(), "TIFF"), "tiff"),
        (b"this is not an image\n", "text"),
        (b"\x89PNG\r\n\x1a\n", "png signature only"),
        (b"\x00" * 64, "zeros"),
    ],
)
def test_other_formats_are_unsupported(data: bytes, label: str) -> None:
    with pytest.raises(ImageRejected) as caught:
        validate_image(data, "garment_image", LIMITS)
    assert_rejected(caught, "unsupported image format", "garment_image")


def test_too_many_bytes_is_too_large() -> None:
    with pytest.raises(ImageRejected) as caught:
        validate_image(SHIRT_BYTES, "garment_image", ImageLimits(max_bytes=100, max_pixels=LIMITS.max_pixels))
    assert_rejected(caught, "image too large", "garment_image")


def test_too_many_pixels_is_too_large() -> None:
    limits = ImageLimits(max_bytes=LIMITS.max_bytes, max_pixels=799)
    with pytest.raises(ImageRejected) as caught:
        validate_image(encode(left_red_right_blue(), "PNG"), "person_image", limits)
    assert_rejected(caught, "image too large", "person_image")
    assert validate_image(encode(left_red_right_blue(), "PNG"), "person_image", ImageLimits(max_pixels=800))


@pytest.mark.parametrize("side", [20_000, 8_000])
def test_decompression_bomb_is_refused_without_decoding(side: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """20000² trips Pillow's own bomb check at open; 8000² (64 MP) only ours, before load."""

    def refuse_to_decode(self: ImageFile.ImageFile) -> None:
        raise AssertionError("the bomb was decoded")

    bomb = make_bomb_png(side)
    assert len(bomb) < 100_000
    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse_to_decode)
    started = time.monotonic()
    with pytest.raises(ImageRejected) as caught:
        validate_image(bomb, "person_image", LIMITS)
    assert time.monotonic() - started < 0.5
    assert_rejected(caught, "image too large", "person_image")


@pytest.mark.parametrize("keep", [0.5, 0.9])
def test_truncated_png_is_rejected_clearly(keep: float) -> None:
    truncated = PERSON_BYTES[: int(len(PERSON_BYTES) * keep)]
    with pytest.raises(ImageRejected) as caught:
        validate_image(truncated, "person_image", LIMITS)
    assert_rejected(caught, "unsupported image format", "person_image")
    assert "truncated" in str(caught.value)


def test_exif_orientation_is_applied() -> None:
    """Orientation 6 means "rotate 90° clockwise to display": the stored left half ends up on top."""
    data = jpeg_with_orientation(6)
    image = validate_image(data, "person_image", LIMITS)
    assert (image.format, image.content_type) == ("png", "image/png")
    assert (image.width, image.height) == (20, 40)
    with Image.open(BytesIO(image.data)) as upright:
        assert upright.size == (20, 40)
        assert upright.getexif().get(0x0112) in (None, 1)
        rgb = upright.convert("RGB")
        top, bottom = rgb.getpixel((10, 5)), rgb.getpixel((10, 35))
    assert isinstance(top, tuple) and isinstance(bottom, tuple)
    assert top[0] > 200 and top[2] < 60, top
    assert bottom[2] > 200 and bottom[0] < 60, bottom


@pytest.mark.parametrize("orientation", [None, 1])
def test_upright_jpeg_keeps_its_original_bytes(orientation: int | None) -> None:
    data = (
        encode(left_red_right_blue(), "JPEG") if orientation is None else jpeg_with_orientation(orientation)
    )
    image = validate_image(data, "person_image", LIMITS)
    assert image.data == data
    assert (image.format, image.width, image.height) == ("jpeg", 40, 20)


# --- URLs ---------------------------------------------------------------------------------


async def test_load_image_from_url(
    session: aiohttp.ClientSession, policy: OutboundPolicy, image_host: ImageHost
) -> None:
    image = await load_image_from_url(session, image_host.url("/shirt.png"), "garment_url", policy, LIMITS)
    assert image.data == SHIRT_BYTES
    assert image.format == "png"


async def test_load_image_from_url_applies_exif_orientation(
    session: aiohttp.ClientSession, policy: OutboundPolicy, image_host: ImageHost
) -> None:
    url = image_host.put("rotated.jpg", jpeg_with_orientation(6), "image/jpeg")
    image = await load_image_from_url(session, url, "person_url", policy, LIMITS)
    assert (image.format, image.width, image.height) == ("png", 20, 40)


@pytest.mark.parametrize(
    ("path", "word", "detail"),
    [
        ("/status/404", "image fetch failed", "HTTP 404"),
        ("/redirect/4", "image fetch failed", "too many redirects"),
        ("/huge", "image too large", None),
        ("/big-length", "image too large", None),
        ("/gif", "unsupported image format", None),
        ("/text", "unsupported image format", None),
        ("/bomb.png", "image too large", None),
        ("/redirect-to?url=http://127.0.0.2/shirt.png", "invalid URL", "address is not public"),
        ("/redirect-to?url=http://localhost/shirt.png", "invalid URL", "host name is internal"),
    ],
)
async def test_url_failures_map_to_contract_words(
    session: aiohttp.ClientSession,
    policy: OutboundPolicy,
    image_host: ImageHost,
    path: str,
    word: str,
    detail: str | None,
) -> None:
    with pytest.raises(ImageRejected) as caught:
        await load_image_from_url(session, image_host.url(path), "garment_url", policy, LIMITS)
    assert_rejected(caught, word, "garment_url")
    if detail is not None:
        assert str(caught.value) == f"{word}: garment_url — {detail}"


@pytest.mark.parametrize(
    "url", ["https://127.0.0.1/a.png", "ftp://images.example.com/a.png", "not a url", "https://localhost/"]
)
async def test_bad_urls_are_invalid_url(
    session: aiohttp.ClientSession, policy: OutboundPolicy, url: str
) -> None:
    with pytest.raises(ImageRejected) as caught:
        await load_image_from_url(session, url, "person_url", policy, LIMITS)
    assert_rejected(caught, "invalid URL", "person_url")


async def test_plain_http_is_invalid_url_unless_allowed(image_host: ImageHost) -> None:
    policy = OutboundPolicy(allow_http=False, allow_hosts=frozenset({image_host.host_port}))
    async with make_session(policy) as client:
        with pytest.raises(ImageRejected) as caught:
            await load_image_from_url(client, image_host.url("/shirt.png"), "person_url", policy, LIMITS)
    assert_rejected(caught, "invalid URL", "person_url")


async def test_fetch_stops_at_the_smaller_byte_cap(
    session: aiohttp.ClientSession, policy: OutboundPolicy, image_host: ImageHost
) -> None:
    limits = ImageLimits(max_bytes=1024, max_pixels=LIMITS.max_pixels)
    with pytest.raises(ImageRejected) as caught:
        await load_image_from_url(session, image_host.url("/shirt.png"), "garment_url", policy, limits)
    assert_rejected(caught, "image too large", "garment_url")


async def test_slow_fetch_is_image_fetch_failed(image_host: ImageHost) -> None:
    policy = OutboundPolicy(
        allow_http=True, allow_hosts=frozenset({image_host.host_port}), timeout_seconds=0.5
    )
    async with make_session(policy) as client:
        with pytest.raises(ImageRejected) as caught:
            await load_image_from_url(client, image_host.url("/slow"), "person_url", policy, LIMITS)
    assert str(caught.value) == "image fetch failed: person_url — timed out"

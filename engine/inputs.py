"""Turning request image fields (base64 or URL) into validated images.

Every image a job uses passes through here, so bad input ends as a clear
:class:`~engine.errors.ImageRejected` (a 400 in both dialects) and never as a
crash or as a decompression bomb in a worker.

Message format: ``"{word}: {field}"``, optionally followed by ``" — {detail}"``,
where ``word`` is one of the contract's words (``invalid URL``, ``image fetch
failed``, ``image too large``, ``unsupported image format``) or ``invalid base64
image``; for example ``"image fetch failed: person_url — HTTP 404"``. The
error's ``field`` attribute names the field as well, so routers need not parse
the message.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
from concurrent.futures import ThreadPoolExecutor
from io import BytesIO
from typing import Literal

import aiohttp
import msgspec
from PIL import Image, ImageOps, UnidentifiedImageError

from engine.errors import ImageRejected, InvalidRequest
from engine.imaging import PNG_COMPRESS_LEVEL
from engine.outbound import FetchFailed, OutboundPolicy, OutboundRefused, TooLarge, fetch_bytes

__all__ = [
    "ImageLimits",
    "InputImage",
    "decode_base64",
    "load_image_from_base64",
    "load_image_from_url",
    "load_images_from_base64",
    "validate_image",
]

ImageFormat = Literal["jpeg", "png", "webp"]

INVALID_URL = "invalid URL"
FETCH_FAILED = "image fetch failed"
TOO_LARGE = "image too large"
UNSUPPORTED_FORMAT = "unsupported image format"
INVALID_BASE64 = "invalid base64 image"

# Pillow format names we accept, mapped to ours. MPO is how Pillow reports a
# JPEG that carries extra pictures (many phone cameras); it is still a JPEG.
_FORMATS: dict[str, ImageFormat] = {"JPEG": "jpeg", "MPO": "jpeg", "PNG": "png", "WEBP": "webp"}
_CONTENT_TYPES: dict[ImageFormat, str] = {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp"}
_PILLOW_OPEN_FORMATS = ["JPEG", "PNG", "WEBP"]

# EXIF tag 0x0112; values 2-8 mean the stored pixels must be flipped/rotated.
_EXIF_ORIENTATION = 0x0112
_PNG_MODES = frozenset({"1", "L", "LA", "I", "I;16", "P", "RGB", "RGBA"})

_DATA_URL_PREFIX = re.compile(r"^data:[^,]*?;base64,", re.IGNORECASE)
_WHITESPACE = re.compile(r"\s+")
_VALIDATION_POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="image-validation")
"""Where inputs are decoded: its own few threads, so a burst of large images bounds the process's
memory (two full-size decodes at a time) and never queues the storage calls that share asyncio's
default executor behind seconds of decoding."""


class InputImage(msgspec.Struct, frozen=True):
    """A validated input image.

    ``data`` is what to store and send on: the original bytes, or a PNG
    re-encoding when an EXIF orientation had to be applied (backends and
    browsers disagree on honouring EXIF, so we bake it into the pixels).
    ``width``/``height`` describe ``data`` as displayed.
    """

    data: bytes
    format: ImageFormat
    content_type: str
    width: int
    height: int


class ImageLimits(msgspec.Struct, frozen=True):
    """Size limits for one input image; built from the ``TRYON_*`` settings."""

    max_bytes: int = 15 * 1024 * 1024
    max_pixels: int = 40_000_000
    max_side: int = 12_000
    """Longest accepted side: a 40,000,000 x 1 PNG is within the pixel cap yet costs gigabytes to scale."""
    max_aspect: float = 20.0
    """Longest side over shortest side; a strip is no photo of a person or a garment."""


def _message(word: str, field: str, detail: str | None = None) -> str:
    return f"{word}: {field}" if not detail else f"{word}: {field} — {detail}"


def _rejected(word: str, field: str, detail: str | None = None) -> ImageRejected:
    return ImageRejected(_message(word, field, detail), field=field)


def decode_base64(value: str, field: str) -> bytes:
    """Decode a base64 image field.

    The contract asks for raw base64 but clients often send a data URL or
    wrapped lines, so a ``data:...;base64,`` prefix and whitespace are
    tolerated. URL-safe alphabet and missing padding are tolerated too, since
    the intent is unambiguous.

    Raises :class:`InvalidRequest` for an empty value and
    :class:`ImageRejected` (``invalid base64 image``) for anything undecodable.
    """
    try:
        # The common case, raw standard base64 as the contract asks, in one pass: strict mode accepts
        # exactly what the steps below would leave unchanged and decode the same way (no prefix, no
        # whitespace, standard alphabet, correct padding); their regexes cost ten times as much.
        data = binascii.a2b_base64(value, strict_mode=True)
    except (binascii.Error, ValueError):
        pass
    else:
        if not data:
            raise InvalidRequest(f"empty image: {field}", field=field)
        return data
    text = _DATA_URL_PREFIX.sub("", value.strip(), count=1)
    text = _WHITESPACE.sub("", text)
    if not text:
        raise InvalidRequest(f"empty image: {field}", field=field)
    if "-" in text or "_" in text:
        text = text.replace("-", "+").replace("_", "/")
    text += "=" * (-len(text) % 4)
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise _rejected(INVALID_BASE64, field) from None
    if not data:
        raise InvalidRequest(f"empty image: {field}", field=field)
    return data


def validate_image(data: bytes, field: str, limits: ImageLimits) -> InputImage:
    """Check that ``data`` is a usable JPEG, PNG or WebP within ``limits``.

    The pixel count, each side and the aspect ratio are checked from the header, before any pixel data is
    decompressed, so a small file declaring a huge canvas costs nothing.
    Pillow's own bomb check fires even earlier for truly huge declarations;
    that is reported the same way. Then the image is fully decoded once, to
    catch truncated or corrupt files here rather than in a worker, and an EXIF
    orientation is applied.

    Raises :class:`ImageRejected` (``image too large`` or ``unsupported image
    format``).
    """
    if len(data) > limits.max_bytes:
        raise _rejected(TOO_LARGE, field, f"over {limits.max_bytes} bytes")
    try:
        image = Image.open(BytesIO(data), formats=_PILLOW_OPEN_FORMATS)
    except Image.DecompressionBombError:
        raise _rejected(TOO_LARGE, field, f"over {limits.max_pixels} pixels") from None
    except UnidentifiedImageError:
        raise _rejected(UNSUPPORTED_FORMAT, field, "expected JPEG, PNG or WebP") from None
    except Exception:
        # A header Pillow recognised but could not parse.
        raise _rejected(UNSUPPORTED_FORMAT, field, "could not read the image") from None
    with image:
        image_format = _FORMATS.get(image.format or "")
        if image_format is None:
            raise _rejected(UNSUPPORTED_FORMAT, field, "expected JPEG, PNG or WebP")
        width, height = image.size
        if width <= 0 or height <= 0:
            raise _rejected(UNSUPPORTED_FORMAT, field, "image has no pixels")
        if width * height > limits.max_pixels:
            raise _rejected(TOO_LARGE, field, f"over {limits.max_pixels} pixels")
        if max(width, height) > limits.max_side:
            raise _rejected(TOO_LARGE, field, f"{width}x{height}, a side over {limits.max_side} pixels")
        if max(width, height) > limits.max_aspect * min(width, height):
            raise _rejected(
                UNSUPPORTED_FORMAT,
                field,
                f"aspect ratio of {width}x{height} is over {limits.max_aspect:g}:1",
            )
        if image_format == "jpeg" and _exif_orientation(image) not in range(2, 9):
            # libjpeg reads every byte even at 1/8 scale, so a truncated file is still caught,
            # for 1/64 of the memory; an image to rotate is re-encoded at full size below.
            image.draft(None, (max(1, width // 8), max(1, height // 8)))
        try:
            image.load()
        except Image.DecompressionBombError:
            raise _rejected(TOO_LARGE, field, f"over {limits.max_pixels} pixels") from None
        except Exception:
            raise _rejected(UNSUPPORTED_FORMAT, field, "image data is truncated or corrupt") from None
        return _apply_orientation(image, data, image_format, field, (width, height))


def _exif_orientation(image: Image.Image) -> int:
    """The EXIF orientation, or 1 (as stored) if there is none or it is unreadable."""
    try:
        value = image.getexif().get(_EXIF_ORIENTATION, 1)
    except Exception:
        return 1
    return value if isinstance(value, int) else 1


def _apply_orientation(
    image: Image.Image, data: bytes, image_format: ImageFormat, field: str, size: tuple[int, int]
) -> InputImage:
    """Return the image as displayed: the original bytes, or a PNG of the first frame, upright.

    An animated PNG or WebP is accepted as its first frame (what a shop page shows before it
    plays), re-encoded as a still so every backend and the stored input agree on the pixels.
    """
    orientation = _exif_orientation(image)
    animated = image_format != "jpeg" and bool(getattr(image, "is_animated", False))
    if orientation not in range(2, 9) and not animated:
        return InputImage(
            data=data,
            format=image_format,
            content_type=_CONTENT_TYPES[image_format],
            width=size[0],  # from the header: a JPEG was decoded at 1/8 scale
            height=size[1],
        )
    try:
        upright = ImageOps.exif_transpose(image)
        if upright.mode not in _PNG_MODES:
            upright = upright.convert("RGBA" if "A" in upright.getbands() else "RGB")
        buffer = BytesIO()
        icc_profile = image.info.get("icc_profile")
        if icc_profile:
            upright.save(buffer, format="PNG", icc_profile=icc_profile, compress_level=PNG_COMPRESS_LEVEL)
        else:
            upright.save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    except Exception:
        raise _rejected(UNSUPPORTED_FORMAT, field, "could not re-encode the image upright") from None
    return InputImage(
        data=buffer.getvalue(),
        format="png",
        content_type=_CONTENT_TYPES["png"],
        width=upright.width,
        height=upright.height,
    )


async def _validate(data: bytes, field: str, limits: ImageLimits) -> InputImage:
    """Validate in the image pool, never on the event loop: a 150 KB PNG can declare 36 megapixels
    and take seconds to decode, and every other request of the process would wait that long."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_VALIDATION_POOL, validate_image, data, field, limits)


def _decode_field(value: str, field: str, limits: ImageLimits) -> bytes:
    if len(value) > limits.max_bytes * 3 // 2 + 4096:
        # Too big even allowing for base64's 4/3 and line breaks; spare the decoding.
        raise _rejected(TOO_LARGE, field, f"over {limits.max_bytes} bytes")
    return decode_base64(value, field)


async def load_image_from_base64(value: str, field: str, limits: ImageLimits) -> InputImage:
    """Decode and validate a base64 image field (see :func:`decode_base64`)."""
    return await _validate(_decode_field(value, field, limits), field, limits)


def _validate_each(decoded: list[tuple[bytes, str]], limits: ImageLimits) -> list[InputImage]:
    return [validate_image(data, field, limits) for data, field in decoded]


async def load_images_from_base64(fields: list[tuple[str, str]], limits: ImageLimits) -> list[InputImage]:
    """Decode and validate several base64 fields (``(value, field)`` pairs), in order.

    All are decoded first (a malformed field is refused before any pixel is touched), then validated
    one after another in ONE trip to the image pool: for a submit's two small images the trip is
    what costs (two trips and two tasks took about 0.3 ms more CPU than the validation itself). The
    first refused field, in order, is the one reported; nothing is decoded on the event loop.
    """
    decoded = [(_decode_field(value, field, limits), field) for value, field in fields]
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_VALIDATION_POOL, _validate_each, decoded, limits)


async def load_image_from_url(
    session: aiohttp.ClientSession,
    url: str,
    field: str,
    policy: OutboundPolicy,
    limits: ImageLimits,
) -> InputImage:
    """Fetch an image URL through the outbound guard and validate it.

    ``session`` must come from :func:`engine.outbound.make_session`. The fetch
    stops at the smaller of the policy's and the limits' byte caps.
    """
    fetch_policy = policy
    if limits.max_bytes < policy.max_bytes:
        fetch_policy = msgspec.structs.replace(policy, max_bytes=limits.max_bytes)
    try:
        data = await fetch_bytes(session, url, fetch_policy)
    except OutboundRefused as exc:
        raise _rejected(INVALID_URL, field, exc.reason) from None
    except TooLarge as exc:
        raise _rejected(TOO_LARGE, field, exc.reason) from None
    except FetchFailed as exc:
        raise _rejected(FETCH_FAILED, field, exc.reason) from None
    return await _validate(data, field, limits)

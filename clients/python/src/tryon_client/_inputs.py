"""Image inputs: paths, bytes, Pillow images or URLs, turned into what a dialect accepts.

FitInView takes URLs (the gateway fetches them) or base64; FtmvAI takes base64 only, so a URL
given to an FtmvAI call is downloaded by the client first.
"""

from __future__ import annotations

import base64
import io
import os
from pathlib import Path
from typing import Any, Union

from tryon_client.errors import InvalidInputError

ImageInput = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, Any]
"""A path (``str`` or ``PathLike``), raw bytes, a Pillow image, or an ``http(s)://`` URL."""

MAX_INPUT_BYTES = 15 * 1024 * 1024


def is_url(value: object) -> bool:
    return isinstance(value, str) and value.lower().startswith(("https://", "http://"))


def image_bytes(value: ImageInput, what: str) -> bytes:
    """The bytes of a non-URL input (a path, bytes or a Pillow image)."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
    elif isinstance(value, (str, os.PathLike)):
        path = Path(value)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise InvalidInputError(f"{what}: cannot read {str(path)!r}: {exc.strerror or exc}") from exc
    elif hasattr(value, "save") and hasattr(value, "mode"):  # a Pillow image, without importing Pillow
        buffer = io.BytesIO()
        value.save(buffer, format="PNG")
        data = buffer.getvalue()
    else:
        raise InvalidInputError(f"{what}: expected a path, bytes, a Pillow image or a URL, not {type(value)}")
    if not data:
        raise InvalidInputError(f"{what}: the image is empty")
    if len(data) > MAX_INPUT_BYTES:
        raise InvalidInputError(f"{what}: image too large ({len(data)} bytes; at most {MAX_INPUT_BYTES})")
    return data


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")

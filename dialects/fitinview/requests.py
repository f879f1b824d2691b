"""Parsing ``POST /api/v1/tryon`` into the engine's :class:`~engine.models.TryonCommand`.

The FitInView API is lenient for LLM-written requests: canonical fields win,
aliases are used only when the canonical field is empty (``person``/``model_url``/
``input_url``; ``garments``/``clothing``/``items``; ``resolution``/``size``),
sizes are case-insensitive, ``wait`` may be given as ``mode: "sync"|"async"``
(the boolean wins), and unknown fields are ignored. Every rule that is broken
becomes an :class:`~engine.errors.InvalidRequest` naming the field.
"""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec

from dialects.json_body import decode_json_object
from dialects.text import storable_text
from engine.errors import InvalidRequest
from engine.models import IdempotencyKey, ImageSource, TryonCommand, TryonOptions

SIZES = {"1K": 1024, "2K": 2048, "4K": 4096}
MAX_GARMENTS = 3
MAX_PROMPT = 1000
MAX_STYLE_HINT = 500
MAX_NEGATIVE_PROMPT = 500
MAX_METADATA_PAIRS = 8
MAX_METADATA_CHARS = 256
MAX_SEED = 2**31 - 1
MAX_IDEMPOTENCY_KEY = 200

PERSON_ALIASES = ("person", "model_url", "input_url")
GARMENT_ALIASES = ("garments", "clothing", "items")
SIZE_ALIASES = ("resolution", "size")


class ParsedTryon(msgspec.Struct, frozen=True, kw_only=True):
    command: TryonCommand
    wait: bool
    idempotency: IdempotencyKey | None


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == []


def _first_present(body: dict[str, Any], names: tuple[str, ...]) -> tuple[str, Any]:
    for name in names:
        if not _empty(body.get(name)):
            return name, body[name]
    return names[0], None


def _string(field: str, value: Any, max_length: int | None = None) -> str:
    if not isinstance(value, str):
        raise InvalidRequest(f"{field} must be a string", field=field)
    if max_length is not None and len(value) > max_length:
        raise InvalidRequest(f"{field} must be at most {max_length} characters", field=field)
    if value.isascii() and "\x00" not in value:
        # ASCII holds no surrogate: only NUL can be unstorable, and these two checks cost
        # microseconds where the regex of storable_text scans a base64 image for milliseconds
        return value
    return storable_text(field, value)


def _string_list(field: str, value: Any) -> list[str]:
    if _empty(value):
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
        raise InvalidRequest(f"{field} must be an array of non-empty strings", field=field)
    if len(value) > MAX_GARMENTS:
        raise InvalidRequest(f"{field} may hold at most {MAX_GARMENTS} images", field=field)
    return list(value)


def _person(body: dict[str, Any]) -> ImageSource:
    b64 = body.get("person_image_b64")
    if not _empty(b64):
        return ImageSource(field="person_image_b64", base64=_string("person_image_b64", b64))
    field, url = _first_present(body, ("person_url", *PERSON_ALIASES))
    if url is None:
        raise InvalidRequest("person_url or person_image_b64 is required", field="person_url")
    return ImageSource(field=field, url=_string(field, url))


def _garments(body: dict[str, Any]) -> tuple[ImageSource, ...]:
    url_field, urls = _first_present(body, ("garment_urls", *GARMENT_ALIASES))
    url_list = _string_list(url_field, urls)
    b64_list = _string_list("garment_images_b64", body.get("garment_images_b64"))
    total = len(url_list) + len(b64_list)
    if total == 0:
        raise InvalidRequest(
            "garment_urls or garment_images_b64 is required (1-3 garments)", field="garment_urls"
        )
    if total > MAX_GARMENTS:
        raise InvalidRequest(
            f"garment_urls and garment_images_b64 together may hold at most {MAX_GARMENTS} garments",
            field="garment_urls",
        )
    sources = [ImageSource(field=f"{url_field}[{index}]", url=url) for index, url in enumerate(url_list)]
    sources += [
        ImageSource(field=f"garment_images_b64[{index}]", base64=data) for index, data in enumerate(b64_list)
    ]
    return tuple(sources)


def _size(body: dict[str, Any]) -> str:
    field, value = _first_present(body, ("output_size", *SIZE_ALIASES))
    if value is None:
        return "1K"
    label = _string(field, value).strip().upper()
    if label not in SIZES:
        raise InvalidRequest(f'{field} must be one of "1K", "2K", "4K"', field=field)
    return label


def _wait(body: dict[str, Any]) -> bool:
    wait = body.get("wait")
    if isinstance(wait, bool):
        return wait
    if wait is not None:
        raise InvalidRequest("wait must be true or false", field="wait")
    mode = body.get("mode")
    if mode is None:
        return True
    if isinstance(mode, str) and mode.strip().lower() in ("sync", "async"):
        return mode.strip().lower() == "sync"
    raise InvalidRequest('mode must be "sync" or "async"', field="mode")


def _metadata(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidRequest("metadata must be an object", field="metadata")
    if len(value) > MAX_METADATA_PAIRS:
        raise InvalidRequest(
            f"metadata may hold at most {MAX_METADATA_PAIRS} key/value pairs", field="metadata"
        )
    for key, item in value.items():
        storable_text("metadata", key)
        if isinstance(item, str):
            storable_text("metadata", item)
        if len(key) > MAX_METADATA_CHARS:
            raise InvalidRequest(
                f"metadata keys must be at most {MAX_METADATA_CHARS} characters", field="metadata"
            )
        if isinstance(item, (dict, list)):
            raise InvalidRequest(
                "metadata values must be strings, numbers, booleans or null", field="metadata"
            )
        if isinstance(item, str) and len(item) > MAX_METADATA_CHARS:
            raise InvalidRequest(
                f"metadata values must be at most {MAX_METADATA_CHARS} characters", field="metadata"
            )
    return value


def _seed(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SEED:
        raise InvalidRequest(f"seed must be an integer from 0 to {MAX_SEED}", field="seed")
    return value


def _optional_text(body: dict[str, Any], field: str, max_length: int) -> str | None:
    value = body.get(field)
    if _empty(value):
        return None
    return _string(field, value, max_length)


def idempotency_key(header: str | None, body: dict[str, Any]) -> IdempotencyKey | None:
    if header is None or header == "":
        return None
    if len(header) > MAX_IDEMPOTENCY_KEY:
        raise InvalidRequest(
            f"Idempotency-Key must be at most {MAX_IDEMPOTENCY_KEY} characters", field="Idempotency-Key"
        )
    storable_text("Idempotency-Key", header)
    canonical = msgspec.json.encode(body, order="sorted")
    return IdempotencyKey(key=header, fingerprint=hashlib.sha256(canonical).hexdigest())


def parse_tryon(raw_body: bytes, idempotency_header: str | None) -> ParsedTryon:
    body = decode_json_object(raw_body)

    prompt = _optional_text(body, "prompt", MAX_PROMPT)
    style_hint = None if prompt else _optional_text(body, "style_hint", MAX_STYLE_HINT)
    size = _size(body)
    webhook = body.get("webhook_url")
    command = TryonCommand(
        person=_person(body),
        garments=_garments(body),
        options=TryonOptions(
            size_label=size,
            longest_side=SIZES[size],
            output_format="png",
            prompt=prompt,
            style_hint=style_hint,
            negative_prompt=_optional_text(body, "negative_prompt", MAX_NEGATIVE_PROMPT),
        ),
        price_name=f"fitinview.tryon.{size}",
        metadata=_metadata(body.get("metadata")),
        seed=_seed(body.get("seed")),
        webhook_url=None if _empty(webhook) else _string("webhook_url", webhook),
    )
    return ParsedTryon(
        command=command, wait=_wait(body), idempotency=idempotency_key(idempotency_header, body)
    )

"""Parsing ``POST /api/v1/generate`` into the engine's try-on or catalog command.

``style`` is ``virtual_tryon`` (default: ``person_image`` + ``clothing_image``) or
``product_catalog`` (``product_image`` + ``quantity`` 6 or 12). Images are base64
only (a data-URL prefix is tolerated). ``options.quality`` ``standard`` ≈ 1024 px or
``high`` (default) ≈ 2048 px; ``options.format`` ``jpg`` (default) or ``png``.
Unknown fields are ignored.
"""

from __future__ import annotations

from typing import Any, Literal

from dialects.json_body import decode_json_object
from engine.errors import InvalidRequest
from engine.models import CatalogCommand, ImageSource, TryonCommand, TryonOptions

QUALITIES = {"standard": 1024, "high": 2048}
FORMATS: dict[str, Literal["jpeg", "png"]] = {"jpg": "jpeg", "jpeg": "jpeg", "png": "png"}
QUANTITIES = (6, 12)
STYLES = ("virtual_tryon", "product_catalog")


def _image(body: dict[str, Any], field: str, style: str) -> ImageSource:
    value = body.get(field)
    if value is None or value == "":
        raise InvalidRequest(f"{field} is required for {style}", field=field)
    if not isinstance(value, str):
        raise InvalidRequest(f"{field} must be a base64-encoded image string", field=field)
    return ImageSource(field=field, base64=value)


def _options(body: dict[str, Any]) -> tuple[str, int, Literal["jpeg", "png"]]:
    options = body.get("options")
    if options is None:
        options = {}
    if not isinstance(options, dict):
        raise InvalidRequest("options must be an object", field="options")
    quality = options.get("quality", "high")
    if not isinstance(quality, str) or quality.lower() not in QUALITIES:
        raise InvalidRequest('options.quality must be "standard" or "high"', field="options.quality")
    fmt = options.get("format", "jpg")
    if not isinstance(fmt, str) or fmt.lower() not in FORMATS:
        raise InvalidRequest('options.format must be "jpg" or "png"', field="options.format")
    return quality.lower(), QUALITIES[quality.lower()], FORMATS[fmt.lower()]


def parse_generate(raw_body: bytes) -> TryonCommand | CatalogCommand:
    body = decode_json_object(raw_body)
    style = body.get("style") or "virtual_tryon"
    if style not in STYLES:
        raise InvalidRequest('style must be "virtual_tryon" or "product_catalog"', field="style")
    quality, longest_side, output_format = _options(body)
    if style == "product_catalog":
        product = _image(body, "product_image", style)
        quantity = body.get("quantity")
        if isinstance(quantity, bool) or quantity not in QUANTITIES:
            raise InvalidRequest("quantity must be 6 or 12 for product_catalog", field="quantity")
        return CatalogCommand(
            product=product,
            quantity=int(quantity),
            size_label=quality,
            longest_side=longest_side,
            output_format=output_format,
            price_name=f"ftmvai.catalog.{quantity}",
        )
    return TryonCommand(
        person=_image(body, "person_image", style),
        garments=(_image(body, "clothing_image", style),),
        options=TryonOptions(size_label=quality, longest_side=longest_side, output_format=output_format),
        price_name="ftmvai.tryon.standard",
    )

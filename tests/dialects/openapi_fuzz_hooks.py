"""Schemathesis hooks for tests/dialects/test_openapi_fuzz.py (loaded by ``st`` via SCHEMATHESIS_HOOKS).

A schema can say that an image field is a non-empty string or an https URL; it cannot say that
the URL must serve a JPEG, PNG or WebP image, that the base64 must decode to one, or that a Stripe
token must be one Stripe granted. So, just before each call, a *schema-valid* value of such a
field is swapped for a real one (the image host's fixtures, the fake Stripe's accepted token, a
configured pack), and values the fuzzer cannot know are made fresh (an Idempotency-Key that
earlier cases may have used with another body) or left out (a list cursor, a webhook URL that
would be called later). An invalid value is never touched, and Schemathesis re-validates the case
after the hook, so a case that violated the schema still counts as negative.
"""

from __future__ import annotations

import base64
import os
import re
import secrets
from pathlib import Path
from typing import Any

import schemathesis

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
IMAGE_HOST = os.environ.get("TRYON_FUZZ_IMAGE_HOST", "http://127.0.0.1:1")
URL = re.compile(r"^https?://[^\s/?#]+")
PERSON = IMAGE_HOST + "/person.png"
GARMENT = IMAGE_HOST + "/shirt.png"
_B64: dict[str, str] = {}


def _b64(name: str) -> str:
    if name not in _B64:
        _B64[name] = base64.b64encode((FIXTURES / name).read_bytes()).decode()
    return _B64[name]


def _valid_text(value: Any, limit: int) -> bool:
    return isinstance(value, str) and 0 < len(value) <= limit and "\x00" not in value and bool(value.strip())


def _url_like(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= 2048 and bool(URL.match(value))


def _fitinview_tryon(body: dict[str, Any]) -> None:
    for field in ("person_url", "person", "model_url", "input_url"):
        if _url_like(body.get(field)):
            body[field] = PERSON
    if _valid_text(body.get("person_image_b64"), 10**9):
        body["person_image_b64"] = _b64("person-astronaut.png")
    for field in ("garment_urls", "garments", "clothing", "items"):
        if isinstance(body.get(field), list):
            body[field] = [GARMENT if _url_like(item) else item for item in body[field]]
        elif _url_like(body.get(field)):
            body[field] = GARMENT
    shirt = _b64("garment-shirt-red-stripes.png")
    if isinstance(body.get("garment_images_b64"), list):
        body["garment_images_b64"] = [
            shirt if _valid_text(item, 10**9) else item for item in body["garment_images_b64"]
        ]
    elif _valid_text(body.get("garment_images_b64"), 10**9):
        body["garment_images_b64"] = shirt
    if isinstance(body.get("webhook_url"), str) and body["webhook_url"].startswith("https://"):
        del body["webhook_url"]  # it would be called when the job ends; its checks are tested elsewhere
    # answer at once (the fuzzer tests what is accepted, not generation), without masking `mode`
    if isinstance(body.get("wait"), bool):
        body["wait"] = False
    elif (
        body.get("wait") is None
        and isinstance(body.get("mode"), str)
        and body["mode"].strip().lower() == "sync"
    ):
        body["mode"] = "async"
    elif "wait" not in body and "mode" not in body:
        body["wait"] = False


def _ftmvai_generate(body: dict[str, Any]) -> None:
    names = {
        "person_image": "person-astronaut.png",
        "clothing_image": "garment-shirt-red-stripes.png",
        "product_image": "product-coffee-cup.png",
    }
    for field, fixture in names.items():
        if _valid_text(body.get(field), 10**9):
            body[field] = _b64(fixture)


def _purchase(body: dict[str, Any]) -> None:
    if _valid_text(body.get("pack_slug"), 500):
        body["pack_slug"] = "starter"
    token = body.get("shared_payment_granted_token")
    if _valid_text(token, 500):
        body["shared_payment_granted_token"] = "spt_ok_" + secrets.token_hex(8)


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    path, method = case.operation.path, case.method.upper()
    if isinstance(case.body, dict):
        if (path, method) == ("/api/v1/tryon", "POST"):
            _fitinview_tryon(case.body)
        elif (path, method) == ("/api/v1/generate", "POST"):
            _ftmvai_generate(case.body)
        elif (path, method) == ("/api/v1/credits/purchase", "POST"):
            _purchase(case.body)
    headers = case.headers or {}
    if _valid_text(headers.get("Idempotency-Key"), 200):
        headers["Idempotency-Key"] = "fuzz-" + secrets.token_hex(8)
    if (path, method) == ("/api/v1/tryon", "GET") and isinstance(case.query, dict):
        case.query.pop("cursor", None)  # a cursor names a page the server handed out; none exists here

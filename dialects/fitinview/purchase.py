"""``POST /api/v1/credits/purchase``: decode, call :func:`engine.payments.purchase`, encode."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, post
from litestar.di import NamedDependency

from dialects.json_body import decode_json_object
from dialects.text import storable_text
from engine import payments
from engine.access import Caller
from engine.errors import InvalidRequest
from engine.runtime import Runtime

MAX_TOKEN = 500


class PurchaseResponse(msgspec.Struct, kw_only=True):
    """The document's answer, field for field (``next_action`` is ``null`` unless Stripe asks)."""

    payment_intent_id: str
    status: str
    pack_slug: str
    credits_added: int
    credits_remaining: int
    next_action: dict[str, Any] | None


def parse_purchase(body: bytes) -> tuple[str, str]:
    """``(pack_slug, shared_payment_granted_token)``; unknown fields are ignored."""
    decoded = decode_json_object(body)
    values = []
    for field in ("pack_slug", "shared_payment_granted_token"):
        value = decoded.get(field)
        if not isinstance(value, str) or not value.strip():
            raise InvalidRequest(f"{field} is required and must be a string", field=field)
        if len(value) > MAX_TOKEN:
            raise InvalidRequest(f"{field} must be at most {MAX_TOKEN} characters", field=field)
        values.append(storable_text(field, value.strip()))
    return values[0], values[1]


@post("/credits/purchase", status_code=200, opt={"rate": "submit"})
async def purchase_credits(
    request: Request[Any, Any, Any], caller: NamedDependency[Caller], runtime: NamedDependency[Runtime]
) -> PurchaseResponse:
    pack_slug, token = parse_purchase(await request.body())
    result = await payments.purchase(runtime, caller, pack_slug, token)
    return PurchaseResponse(**msgspec.structs.asdict(result))

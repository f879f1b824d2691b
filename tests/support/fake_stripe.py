"""A local fake of the Stripe API's PaymentIntents endpoint, and Stripe-signed webhook events.

It speaks Stripe's wire format (form-encoded requests, JSON objects, Stripe's error JSON,
``Idempotency-Key``), so the real ``stripe`` library talks to it through
``StripeClient(base_addresses={"api": fake.base_url})``::

    async with serve_fake_stripe(api_key="sk_test_fake") as fake:
        ...                                  # POST /v1/payment_intents
        fake.requests[0].params              # what the library sent (flat form fields)
        payload, header = signed_event("whsec_…", payment_intent_event("payment_intent.succeeded", pi))

The outcome of a confirmed PaymentIntent follows the shared payment token's prefix:

- ``spt_ok…``: ``succeeded``
- ``spt_processing…``: ``processing``
- ``spt_action…``: ``requires_action`` with a ``next_action`` (``redirect_to_url``)
- ``spt_declined…``: 402 ``card_error`` / ``card_declined`` ("Your card was declined.")
- ``spt_slow…``: ``succeeded``, but answered only after ``slow_seconds``; meanwhile a request with
  the same ``Idempotency-Key`` gets Stripe's 409 ``idempotency_error`` ("another in-progress
  request"), and once it is done, the saved answer (a client that gave up on the first still
  finds its payment)

The same ``Idempotency-Key`` answers the same response again (with ``Idempotent-Replayed:
true``); reused with other parameters it is a 400 ``idempotency_error``, as Stripe does.
PaymentIntent ids are derived from the token (:func:`intent_id`), so a test can build the
webhook event of a purchase before the purchase is made.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

TOKEN_FIELD = "payment_method_data[shared_payment_granted_token]"
DECLINED_MESSAGE = "Your card was declined."


def intent_id(token: str) -> str:
    """The PaymentIntent id the fake gives a purchase made with ``token``."""
    return "pi_" + hashlib.sha256(token.encode()).hexdigest()[:24]


@dataclass
class RecordedRequest:
    """One request as the fake received it."""

    method: str
    path: str
    headers: dict[str, str]
    params: dict[str, str]

    @property
    def idempotency_key(self) -> str | None:
        return self.headers.get("Idempotency-Key")

    @property
    def token(self) -> str | None:
        return self.params.get(TOKEN_FIELD)

    def metadata(self) -> dict[str, str]:
        return {
            name[len("metadata[") : -1]: value
            for name, value in self.params.items()
            if name.startswith("metadata[") and name.endswith("]")
        }


@dataclass
class FakeStripe:
    api_key: str
    base_url: str = ""
    requests: list[RecordedRequest] = field(default_factory=list)
    intents: dict[str, dict[str, Any]] = field(default_factory=dict)
    _replies: dict[str, tuple[dict[str, str], int, dict[str, Any]]] = field(default_factory=dict)
    slow_seconds: float = 3.0
    """How long ``spt_slow…`` payments take to answer."""
    _in_progress: set[str] = field(default_factory=set)

    def reset(self) -> None:
        self.requests.clear()

    async def create_payment_intent(self, request: web.Request) -> web.Response:
        params = dict(parse_qsl(await request.text(), keep_blank_values=True))
        recorded = RecordedRequest(request.method, request.path, dict(request.headers), params)
        self.requests.append(recorded)
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return _error(401, "invalid_request_error", None, "Invalid API Key provided")
        key = recorded.idempotency_key
        if key is not None and key in self._in_progress:
            return _error(
                409,
                "idempotency_error",
                None,
                "There is currently another in-progress request using this Idempotent Key (that probably"
                " means you submitted twice, and the other request is still going through). Please try"
                " again later.",
            )
        if key is not None and key in self._replies:
            first_params, status, body = self._replies[key]
            if first_params != params:
                return _error(
                    400,
                    "idempotency_error",
                    None,
                    "Keys for idempotent requests can only be used with the same parameters"
                    " they were first used with.",
                )
            return web.json_response(body, status=status, headers={"Idempotent-Replayed": "true"})
        if (recorded.token or "").startswith("spt_slow"):
            if key is not None:
                self._in_progress.add(key)
            try:
                await asyncio.sleep(self.slow_seconds)
            finally:
                self._in_progress.discard(key or "")
        status, body = self._outcome(params)
        if key is not None:
            self._replies[key] = (params, status, body)
        return web.json_response(body, status=status)

    def _outcome(self, params: dict[str, str]) -> tuple[int, dict[str, Any]]:
        token = params.get(TOKEN_FIELD, "")
        if not token:
            return 400, _error_body("invalid_request_error", None, "Missing payment method data.")
        intent: dict[str, Any] = {
            "id": intent_id(token),
            "object": "payment_intent",
            "amount": int(params.get("amount", "0")),
            "amount_received": 0,
            "currency": params.get("currency", "usd"),
            "confirmation_method": "automatic",
            "created": int(time.time()),
            "livemode": False,
            "metadata": {
                name[len("metadata[") : -1]: value
                for name, value in params.items()
                if name.startswith("metadata[")
            },
            "next_action": None,
            "last_payment_error": None,
            "latest_charge": None,
            "status": "requires_payment_method",
        }
        if token.startswith("spt_declined"):
            intent["last_payment_error"] = {
                "type": "card_error",
                "code": "card_declined",
                "message": DECLINED_MESSAGE,
            }
            self.intents[intent["id"]] = intent
            body = _error_body("card_error", "card_declined", DECLINED_MESSAGE)
            body["error"]["payment_intent"] = intent
            return 402, body
        if token.startswith(("spt_ok", "spt_slow")):
            intent.update(
                status="succeeded",
                amount_received=intent["amount"],
                latest_charge="ch_" + intent["id"][3:],
            )
        elif token.startswith("spt_processing"):
            intent["status"] = "processing"
        elif token.startswith("spt_action"):
            intent["status"] = "requires_action"
            intent["next_action"] = {
                "type": "redirect_to_url",
                "redirect_to_url": {
                    "url": f"https://hooks.stripe.com/redirect/authenticate/{intent['id']}",
                    "return_url": None,
                },
            }
        else:
            return 400, _error_body("invalid_request_error", None, f"No such shared payment token: '{token}'")
        self.intents[intent["id"]] = intent
        return 200, intent


def _error_body(kind: str, code: str | None, message: str) -> dict[str, Any]:
    error: dict[str, Any] = {"type": kind, "message": message}
    if code is not None:
        error["code"] = code
        error["decline_code"] = "generic_decline" if kind == "card_error" else None
    return {"error": error}


def _error(status: int, kind: str, code: str | None, message: str) -> web.Response:
    return web.json_response(_error_body(kind, code, message), status=status)


@asynccontextmanager
async def serve_fake_stripe(api_key: str = "sk_test_fake") -> AsyncIterator[FakeStripe]:
    fake = FakeStripe(api_key=api_key)
    app = web.Application()
    app.router.add_post("/v1/payment_intents", fake.create_payment_intent)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    fake.base_url = f"http://127.0.0.1:{port}"
    try:
        yield fake
    finally:
        await runner.cleanup()


# webhook events -------------------------------------------------------------------


def event(kind: str, data_object: dict[str, Any], *, event_id: str | None = None) -> dict[str, Any]:
    """A Stripe event (API version-agnostic snapshot payload) wrapping ``data_object``."""
    return {
        "id": event_id or "evt_" + secrets.token_hex(12),
        "object": "event",
        "api_version": "2025-09-30.clover",
        "created": int(time.time()),
        "data": {"object": data_object},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": kind,
    }


def succeeded_intent(
    token: str, *, account_id: int, pack_slug: str, amount: int = 1000, currency: str = "usd"
) -> dict[str, Any]:
    """The PaymentIntent object of a finished purchase made with ``token`` (as the fake names it)."""
    pid = intent_id(token)
    return {
        "id": pid,
        "object": "payment_intent",
        "amount": amount,
        "amount_received": amount,
        "currency": currency,
        "status": "succeeded",
        "metadata": {"account_id": str(account_id), "pack_slug": pack_slug},
        "latest_charge": "ch_" + pid[3:],
        "next_action": None,
        "livemode": False,
    }


def refunded_charge(intent: dict[str, Any], *, amount_refunded: int | None = None) -> dict[str, Any]:
    """The Charge object of ``intent`` after a refund (the whole amount unless told otherwise)."""
    amount = int(intent["amount"])
    refunded = amount if amount_refunded is None else amount_refunded
    return {
        "id": "ch_" + str(intent["id"])[3:],
        "object": "charge",
        "amount": amount,
        "amount_captured": amount,
        "amount_refunded": refunded,
        "currency": intent["currency"],
        "metadata": dict(intent.get("metadata") or {}),
        "payment_intent": intent["id"],
        "paid": True,
        "refunded": refunded >= amount,
        "status": "succeeded",
    }


def lost_dispute(intent: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": "dp_" + secrets.token_hex(8),
        "object": "dispute",
        "amount": intent["amount"],
        "charge": "ch_" + str(intent["id"])[3:],
        "currency": intent["currency"],
        "metadata": {},
        "payment_intent": intent["id"],
        "reason": "fraudulent",
        "status": "lost",
    }


def signature_header(secret: str, payload: bytes, timestamp: int | None = None) -> str:
    """``Stripe-Signature`` exactly as Stripe builds it: ``t=<unix>,v1=<HMAC-SHA256 of "t.payload">``."""
    stamp = int(time.time()) if timestamp is None else timestamp
    signed = f"{stamp}.".encode() + payload
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={stamp},v1={digest}"


def signed_event(secret: str, event_dict: dict[str, Any], timestamp: int | None = None) -> tuple[bytes, str]:
    """The body Stripe would POST for ``event_dict`` and its ``Stripe-Signature`` header."""
    payload = json.dumps(event_dict, indent=2).encode()
    return payload, signature_header(secret, payload, timestamp)

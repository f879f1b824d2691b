"""Fault 7: Stripe confirms a purchase but answers too late, against ``serve`` and ``worker``
processes; the client retries and Stripe's ``payment_intent.succeeded`` webhook arrives later,
in either order, twice, or together with retries. The pack is granted exactly once.

While Stripe is still working on the first request, the gateway answers 503 with ``Retry-After``
(never the "token already used" 409 that a same-key retry would get from a naive mapping of
Stripe's in-progress ``idempotency_error``), and no answer takes longer than the Stripe budget.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.faults.fixtures_b import Deployment, deployment, eventually
from tests.support import services
from tests.support.fake_stripe import FakeStripe, event, intent_id, serve_fake_stripe, signed_event
from tests.support.gateway import ADMIN_TOKEN
from tests.support.image_host import ImageHost

pytestmark = pytest.mark.faults

API_KEY = "sk_test_fault"
SECRET = "whsec_fault"
BUDGET = 1.0
"""``TRYON_STRIPE_TIMEOUT_SECONDS``: Stripe's slow answers take 3 s."""
STARTER = 1200


@pytest.fixture(scope="module")
async def fake() -> AsyncIterator[FakeStripe]:
    async with serve_fake_stripe(API_KEY) as server:
        server.slow_seconds = 3 * BUDGET
        yield server


@pytest.fixture(scope="module")
async def pay(
    fake: FakeStripe,
    http: aiohttp.ClientSession,
    redis_url: str,
    s3: services.S3Endpoint,
    image_host: ImageHost,
) -> AsyncIterator[Deployment]:
    async with deployment(
        http,
        redis_url,
        s3,
        image_host,
        TRYON_STRIPE_API_KEY=API_KEY,
        TRYON_STRIPE_WEBHOOK_SECRET=SECRET,
        TRYON_STRIPE_BASE_URL=fake.base_url,
        TRYON_STRIPE_TIMEOUT_SECONDS=str(BUDGET),
    ) as group:
        yield group
        await group.check_invariants()


async def buy(pay: Deployment, key: str, token: str) -> tuple[int, dict[str, Any], dict[str, str]]:
    started = time.monotonic()
    order = {"pack_slug": "starter", "shared_payment_granted_token": token}
    status, body, headers = await pay.call("POST", "/api/v1/credits/purchase", key, order)
    # the client never waits much longer than the Stripe budget, whatever Stripe does
    assert time.monotonic() - started < BUDGET + 10
    return status, dict(body), headers


async def stripe_webhook(pay: Deployment, fake: FakeStripe, token: str) -> None:
    """Stripe's ``payment_intent.succeeded`` for the payment made with ``token``, then processed."""
    intent = await eventually(lambda: _intent(fake, token), 30, "Stripe finishing the payment")
    event_dict = event("payment_intent.succeeded", intent)
    payload, header = signed_event(SECRET, event_dict)
    async with pay.http.post(
        pay.base + "/api/v1/stripe/webhook",
        data=payload,
        headers={"Stripe-Signature": header, "Content-Type": "application/json"},
    ) as response:
        pay.statuses.append(response.status)
        assert response.status == 200, await response.text()

    async def processed() -> bool:
        rows = await pay.fetch("SELECT processed_at FROM stripe_events WHERE event_id = $1", event_dict["id"])
        return bool(rows and rows[0]["processed_at"] is not None)

    await eventually(processed, 30, "the worker processing Stripe's event")


async def _intent(fake: FakeStripe, token: str) -> dict[str, Any] | None:
    return fake.intents.get(intent_id(token))


async def purchases(pay: Deployment, account: int) -> list[int]:
    rows = await pay.fetch(
        "SELECT amount FROM ledger_entries WHERE account = $1 AND kind = 'purchase' ORDER BY id", account
    )
    return [int(row["amount"]) for row in rows]


async def balance(pay: Deployment, account: int) -> int:
    status, detail, _ = await pay.call("GET", f"/admin/accounts/{account}", ADMIN_TOKEN)
    assert status == 200, detail
    assert detail["credits_remaining"] == detail["ledger_sum"]
    return int(detail["credits_remaining"])


def assert_try_later(status: int, body: dict[str, Any], headers: dict[str, str]) -> None:
    assert status == 503, body
    assert int(headers["Retry-After"]) >= 1


@pytest.mark.parametrize("webhook_first", [True, False], ids=["webhook-then-retry", "retry-then-webhook"])
async def test_a_stripe_timeout_then_a_retry_and_a_late_webhook_grant_once(
    pay: Deployment, fake: FakeStripe, webhook_first: bool
) -> None:
    account, key, _ = await pay.account(credits=10)
    token = f"spt_slow_{secrets.token_hex(6)}"

    # Stripe confirms, but not within the budget: the client is told to try again later
    status, body, headers = await buy(pay, key, token)
    assert_try_later(status, body, headers)
    # retried while Stripe is still on the first request: still "later", not "token already used"
    status, body, headers = await buy(pay, key, token)
    assert_try_later(status, body, headers)
    assert await purchases(pay, account) == []

    if webhook_first:
        await stripe_webhook(pay, fake, token)
        assert await purchases(pay, account) == [STARTER]
    else:
        await eventually(lambda: _intent(fake, token), 30, "Stripe finishing the payment")
    # the client's retry finds the payment Stripe made (same idempotency key): one pack, once
    status, body, _ = await buy(pay, key, token)
    assert status == 200, body
    assert (body["status"], body["credits_added"], body["payment_intent_id"]) == (
        "succeeded",
        STARTER,
        intent_id(token),
    )
    assert body["credits_remaining"] == 10 + STARTER
    if not webhook_first:
        await stripe_webhook(pay, fake, token)
    # Stripe delivers its webhook again, and the client retries twice at once: nothing more
    await stripe_webhook(pay, fake, token)
    again = await asyncio.gather(buy(pay, key, token), buy(pay, key, token))
    assert [(status, body["credits_added"]) for status, body, _ in again] == [(200, STARTER)] * 2

    assert await purchases(pay, account) == [STARTER]
    assert await balance(pay, account) == 10 + STARTER
    await pay.check_money()

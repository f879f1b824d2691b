"""Credit packs bought with Stripe Shared Payment Tokens, and Stripe's webhooks, end to end.

The real ``stripe`` library talks to a local fake that speaks Stripe's wire format
(:mod:`tests.support.fake_stripe`); webhooks are signed the way Stripe signs them.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
from collections.abc import AsyncIterator
from typing import Any

import pytest
import stripe

from engine.config import DEFAULT_PACKS, PaymentsConfig, UnknownPack
from engine.payments import idempotency_key, stripe_client
from tests.support.fake_stripe import (
    DECLINED_MESSAGE,
    TOKEN_FIELD,
    FakeStripe,
    event,
    intent_id,
    lost_dispute,
    refunded_charge,
    serve_fake_stripe,
    signature_header,
    signed_event,
    succeeded_intent,
)
from tests.support.gateway import RunningGateway
from tests.support.image_host import ImageHost

API_KEY = "sk_test_fake"
SECRET = "whsec_test"
STARTER = 1200


@pytest.fixture(scope="module")
async def fake() -> AsyncIterator[FakeStripe]:
    async with serve_fake_stripe(API_KEY) as server:
        yield server


@pytest.fixture(scope="module")
async def pay(gateway_factory: Any, fake: FakeStripe) -> RunningGateway:
    gateway: RunningGateway = await gateway_factory(
        stripe_api_key=API_KEY, stripe_webhook_secret=SECRET, stripe_base_url=fake.base_url
    )
    return gateway


@pytest.fixture(autouse=True)
def fresh(request: pytest.FixtureRequest) -> None:
    if "fake" in request.fixturenames:
        request.getfixturevalue("fake").reset()


def token(kind: str) -> str:
    return f"spt_{kind}_{secrets.token_hex(6)}"


async def buy(
    gateway: RunningGateway, key: str, spt: str, pack: str = "starter"
) -> tuple[int, dict[str, Any]]:
    status, body, _ = await gateway.request(
        "POST",
        "/api/v1/credits/purchase",
        key=key,
        json={"pack_slug": pack, "shared_payment_granted_token": spt},
    )
    return status, body


async def deliver(
    gateway: RunningGateway, event_dict: dict[str, Any], secret: str = SECRET
) -> tuple[int, Any]:
    payload, header = signed_event(secret, event_dict)
    status, body, _ = await gateway.request(
        "POST",
        "/api/v1/stripe/webhook",
        data=payload,
        headers={"Stripe-Signature": header, "Content-Type": "application/json"},
    )
    return status, body


async def processed(gateway: RunningGateway, event_id: str, timeout: float = 15) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        row = await gateway.runtime.db.fetchrow(
            "SELECT processed_at FROM stripe_events WHERE event_id = $1", event_id
        )
        if row is not None and row["processed_at"] is not None:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"event {event_id} was not processed")
        await asyncio.sleep(0.05)


async def balance(gateway: RunningGateway, account_id: int) -> int:
    return await gateway.runtime.ledger.balance(account_id)


async def entries(gateway: RunningGateway, account_id: int, kind: str) -> list[int]:
    return [entry.amount for entry in await gateway.runtime.ledger.entries(account_id) if entry.kind == kind]


async def inbox_size(gateway: RunningGateway) -> int:
    row = await gateway.runtime.db.fetchrow("SELECT count(*) AS n FROM stripe_events")
    assert row is not None
    return int(row["n"])


def as_succeeded(fake: FakeStripe, spt: str) -> dict[str, Any]:
    """The PaymentIntent the fake created for ``spt``, as it looks once the payment finalises."""
    intent = dict(fake.intents[intent_id(spt)])
    intent.update(status="succeeded", next_action=None, amount_received=intent["amount"])
    return intent


# unit: the fake's signatures are Stripe's ---------------------------------------------


def test_signed_event_verifies_with_stripes_own_code() -> None:
    payload, header = signed_event(SECRET, event("payment_intent.succeeded", {"id": "pi_1"}))
    assert stripe.WebhookSignature.verify_header(payload, header, SECRET, 300) is True
    constructed = stripe.Webhook.construct_event(payload, header, SECRET)
    assert constructed.type == "payment_intent.succeeded"
    assert header == stripe.WebhookSignature.generate_signature_header(
        payload.decode(), SECRET, timestamp=int(header.split(",")[0][2:])
    )
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.WebhookSignature.verify_header(payload + b" ", header, SECRET, 300)
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.WebhookSignature.verify_header(payload, signature_header("whsec_other", payload), SECRET, 300)


def test_packs_are_configuration() -> None:
    config = PaymentsConfig(stripe_api_key="k", webhook_secret="s")
    assert config.pack("starter").credits == STARTER
    assert {pack.slug for pack in DEFAULT_PACKS} >= {"starter"}
    with pytest.raises(UnknownPack):
        config.pack("nope")


async def test_stripe_client_speaks_the_fakes_wire_format(fake: FakeStripe) -> None:
    config = PaymentsConfig(stripe_api_key=API_KEY, base_url=fake.base_url, api_version="2025-09-30.clover")
    spt = token("ok")
    params: Any = {
        "amount": 1200,
        "currency": "usd",
        "confirm": True,
        "metadata": {"pack_slug": "starter"},
        "payment_method_data": {"shared_payment_granted_token": spt},
    }
    declined_params: Any = params | {
        "payment_method_data": {"shared_payment_granted_token": token("declined")}
    }
    async with stripe_client(config) as client:
        intent = await client.v1.payment_intents.create_async(params, options={"idempotency_key": "idem-1"})
        again = await client.v1.payment_intents.create_async(params, options={"idempotency_key": "idem-1"})
        with pytest.raises(stripe.CardError) as declined:
            await client.v1.payment_intents.create_async(declined_params)
    assert intent.id == again.id == intent_id(spt) and intent.status == "succeeded"
    assert declined.value.user_message == DECLINED_MESSAGE and declined.value.http_status == 402
    sent = fake.requests[0]
    assert sent.params[TOKEN_FIELD] == spt and sent.params["confirm"] == "true"
    assert sent.headers["Stripe-Version"] == "2025-09-30.clover"
    assert sent.idempotency_key == "idem-1"


# end to end --------------------------------------------------------------------------


async def test_end_to_end_purchase_succeeded(pay: RunningGateway, fake: FakeStripe) -> None:
    account_id, key = await pay.account_with_key(credits=47)
    spt = token("ok")
    status, body = await buy(pay, key, spt)
    assert status == 200, body
    assert body == {
        "payment_intent_id": intent_id(spt),
        "status": "succeeded",
        "pack_slug": "starter",
        "credits_added": STARTER,
        "credits_remaining": 47 + STARTER,
        "next_action": None,
    }
    assert await balance(pay, account_id) == 47 + STARTER
    assert await entries(pay, account_id, "purchase") == [STARTER]

    [sent] = fake.requests
    assert sent.headers["Authorization"] == f"Bearer {API_KEY}"
    assert sent.headers["Stripe-Version"] == PaymentsConfig().api_version
    assert sent.params[TOKEN_FIELD] == spt
    assert sent.params["confirm"] == "true"
    assert sent.params["amount"] == str(DEFAULT_PACKS[0].amount) and sent.params["currency"] == "usd"
    assert sent.metadata()["account_id"] == str(account_id) and sent.metadata()["pack_slug"] == "starter"
    key_id = int(sent.metadata()["api_key_id"])
    assert (
        sent.idempotency_key
        == idempotency_key(key_id, spt)
        == hashlib.sha256(f"{key_id}:{spt}".encode()).hexdigest()
    )


async def test_end_to_end_processing_then_webhook_grants_once(pay: RunningGateway, fake: FakeStripe) -> None:
    account_id, key = await pay.account_with_key(credits=10)
    spt = token("processing")
    status, body = await buy(pay, key, spt)
    assert status == 200, body
    assert body["status"] == "processing" and body["credits_added"] == 0 and body["next_action"] is None
    assert body["credits_remaining"] == 10 and body["payment_intent_id"] == intent_id(spt)
    assert await balance(pay, account_id) == 10

    succeeded = event("payment_intent.succeeded", as_succeeded(fake, spt))
    assert await deliver(pay, succeeded) == (200, {"received": True})
    await processed(pay, succeeded["id"])
    assert await balance(pay, account_id) == 10 + STARTER

    status, replay = await buy(pay, key, spt)
    assert status == 200
    assert replay["status"] == "succeeded" and replay["credits_added"] == STARTER
    assert replay["credits_remaining"] == 10 + STARTER
    assert await entries(pay, account_id, "purchase") == [STARTER]


async def test_end_to_end_requires_action(pay: RunningGateway) -> None:
    account_id, key = await pay.account_with_key(credits=0)
    status, body = await buy(pay, key, token("action"))
    assert status == 200, body
    assert body["status"] == "requires_action" and body["credits_added"] == 0
    assert body["credits_remaining"] == 0
    assert body["next_action"]["type"] == "redirect_to_url"
    assert body["next_action"]["redirect_to_url"]["url"].startswith("https://")
    assert await entries(pay, account_id, "purchase") == []


async def test_end_to_end_card_declined_is_402_and_grants_nothing(pay: RunningGateway) -> None:
    account_id, key = await pay.account_with_key(credits=5)
    status, body = await buy(pay, key, token("declined"))
    assert (status, body) == (402, {"detail": DECLINED_MESSAGE})
    assert await balance(pay, account_id) == 5
    assert await entries(pay, account_id, "purchase") == []


async def test_end_to_end_duplicate_webhook_grants_once(pay: RunningGateway, fake: FakeStripe) -> None:
    account_id, key = await pay.account_with_key(credits=0)
    spt = token("processing")
    assert (await buy(pay, key, spt))[0] == 200
    succeeded = event("payment_intent.succeeded", as_succeeded(fake, spt))
    before = await inbox_size(pay)
    assert (await deliver(pay, succeeded))[0] == 200
    assert (await deliver(pay, succeeded))[0] == 200
    await processed(pay, succeeded["id"])
    assert (await deliver(pay, succeeded))[0] == 200
    await asyncio.sleep(0.3)
    assert await inbox_size(pay) == before + 1
    assert await balance(pay, account_id) == STARTER
    assert await entries(pay, account_id, "purchase") == [STARTER]


async def test_end_to_end_webhook_before_the_purchase_answer(pay: RunningGateway) -> None:
    account_id, key = await pay.account_with_key(credits=3)
    spt = token("ok")
    early = event(
        "payment_intent.succeeded", succeeded_intent(spt, account_id=account_id, pack_slug="starter")
    )
    assert (await deliver(pay, early))[0] == 200
    await processed(pay, early["id"])
    assert await balance(pay, account_id) == 3 + STARTER

    status, body = await buy(pay, key, spt)
    assert status == 200, body
    assert body["status"] == "succeeded" and body["credits_added"] == STARTER
    assert body["payment_intent_id"] == intent_id(spt)
    assert body["credits_remaining"] == 3 + STARTER
    assert await entries(pay, account_id, "purchase") == [STARTER]


async def test_end_to_end_refund_reverses_and_negative_balance_blocks_jobs(
    pay: RunningGateway, fake: FakeStripe, image_host: ImageHost
) -> None:
    account_id, key = await pay.account_with_key(credits=0)
    spt = token("ok")
    assert (await buy(pay, key, spt))[0] == 200
    await pay.runtime.ledger.adjust(account_id, -(STARTER - 5), reason="credits spent")
    assert await balance(pay, account_id) == 5

    refunded = event("charge.refunded", refunded_charge(as_succeeded(fake, spt)))
    assert (await deliver(pay, refunded))[0] == 200
    await processed(pay, refunded["id"])
    assert await balance(pay, account_id) == 5 - STARTER
    assert await entries(pay, account_id, "reversal") == [-STARTER]
    assert await pay.runtime.ledger.verify() == []

    again = event("charge.refunded", refunded_charge(as_succeeded(fake, spt)))
    assert (await deliver(pay, again))[0] == 200
    await processed(pay, again["id"])
    assert await entries(pay, account_id, "reversal") == [-STARTER], "never more than was granted"

    status, body, _ = await pay.request(
        "POST",
        "/api/v1/tryon",
        key=key,
        json={
            "person_url": image_host.url("/person.png"),
            "garment_urls": [image_host.url("/shirt.png")],
            "output_size": "1K",
            "wait": False,
        },
    )
    assert status == 402, body
    assert await balance(pay, account_id) == 5 - STARTER


async def test_end_to_end_partial_refunds_and_lost_dispute_add_up(
    pay: RunningGateway, fake: FakeStripe
) -> None:
    account_id, key = await pay.account_with_key(credits=0)
    spt = token("ok")
    assert (await buy(pay, key, spt))[0] == 200
    intent = as_succeeded(fake, spt)
    half = event("charge.refunded", refunded_charge(intent, amount_refunded=intent["amount"] // 2))
    assert (await deliver(pay, half))[0] == 200
    await processed(pay, half["id"])
    assert await balance(pay, account_id) == STARTER // 2

    won = event("charge.dispute.closed", lost_dispute(intent) | {"status": "won"})
    lost = event("charge.dispute.closed", lost_dispute(intent))
    for each in (won, lost):
        assert (await deliver(pay, each))[0] == 200
        await processed(pay, each["id"])
    assert await balance(pay, account_id) == 0
    assert sorted(await entries(pay, account_id, "reversal")) == [-(STARTER // 2), -(STARTER // 2)]


async def test_end_to_end_refund_or_lost_dispute_before_the_success_still_takes_back(
    pay: RunningGateway, fake: FakeStripe
) -> None:
    """Stripe does not order its events: a refund (or a lost dispute) processed before the success
    that grants the credits must still take them back once they are granted (found by the money
    simulation's model, tests/simulation)."""
    account_id, key = await pay.account_with_key(credits=0)
    spt = token("processing")
    assert (await buy(pay, key, spt))[0] == 200
    intent = as_succeeded(fake, spt)
    for each in (
        event("charge.refunded", refunded_charge(intent)),
        event("payment_intent.succeeded", intent),
    ):
        assert (await deliver(pay, each))[0] == 200
        await processed(pay, each["id"])
    assert await entries(pay, account_id, "purchase") == [STARTER]
    assert await entries(pay, account_id, "reversal") == [-STARTER]
    assert await balance(pay, account_id) == 0

    early = token("ok")  # the dispute, then the success, then the purchase call: granted once, taken back
    intent = succeeded_intent(early, account_id=account_id, pack_slug="starter")
    for each in (
        event("charge.dispute.closed", lost_dispute(intent)),
        event("payment_intent.succeeded", intent),
    ):
        assert (await deliver(pay, each))[0] == 200
        await processed(pay, each["id"])
    assert (await buy(pay, key, early))[0] == 200
    assert await entries(pay, account_id, "purchase") == [STARTER, STARTER]
    assert await entries(pay, account_id, "reversal") == [-STARTER, -STARTER]
    assert await balance(pay, account_id) == 0


async def test_end_to_end_bad_signature_is_400_and_stores_nothing(
    pay: RunningGateway, fake: FakeStripe
) -> None:
    account_id, key = await pay.account_with_key(credits=0)
    spt = token("processing")
    assert (await buy(pay, key, spt))[0] == 200
    succeeded = event("payment_intent.succeeded", as_succeeded(fake, spt))
    before = await inbox_size(pay)

    status, body = await deliver(pay, succeeded, secret="whsec_wrong")
    assert status == 400 and isinstance(body["detail"], str)
    payload, header = signed_event(SECRET, succeeded)
    tampered = payload.replace(b'"amount_received"', b'"amount_receivedX"')
    for data, headers in (
        (payload, {}),
        (payload, {"Stripe-Signature": "garbage"}),
        (tampered, {"Stripe-Signature": header}),
    ):
        status, body, _ = await pay.request("POST", "/api/v1/stripe/webhook", data=data, headers=headers)
        assert status == 400, body
        assert set(body) == {"detail"}
    stale = signature_header(SECRET, payload, timestamp=int(json.loads(payload)["created"]) - 3600)
    status, _, _ = await pay.request(
        "POST", "/api/v1/stripe/webhook", data=payload, headers={"Stripe-Signature": stale}
    )
    assert status == 400

    await asyncio.sleep(0.3)
    assert await inbox_size(pay) == before
    assert await balance(pay, account_id) == 0


async def test_end_to_end_webhook_without_a_secret_is_400(gateway_factory: Any, fake: FakeStripe) -> None:
    gateway: RunningGateway = await gateway_factory(stripe_api_key=API_KEY, stripe_base_url=fake.base_url)
    payload, header = signed_event("", event("payment_intent.succeeded", {"id": "pi_x", "metadata": {}}))
    status, body, _ = await gateway.request(
        "POST", "/api/v1/stripe/webhook", data=payload, headers={"Stripe-Signature": header}
    )
    assert status == 400 and set(body) == {"detail"}
    assert await inbox_size(gateway) == 0


async def test_end_to_end_replayed_purchase(pay: RunningGateway, fake: FakeStripe) -> None:
    account_id, key = await pay.account_with_key(credits=1)
    spt = token("ok")
    first = await buy(pay, key, spt)
    second = await buy(pay, key, spt)
    assert first[0] == second[0] == 200
    assert first[1] == second[1]
    assert await balance(pay, account_id) == 1 + STARTER
    assert await entries(pay, account_id, "purchase") == [STARTER]

    status, body = await buy(pay, key, spt, pack="growth")
    assert status == 409 and set(body) == {"detail"}
    assert await balance(pay, account_id) == 1 + STARTER

    # a token still processing is re-asked with the same idempotency key, and never granted twice
    slow = token("processing")
    assert (await buy(pay, key, slow))[1]["status"] == "processing"
    assert (await buy(pay, key, slow))[1]["status"] == "processing"
    keys = {sent.idempotency_key for sent in fake.requests if sent.token == slow}
    assert len(keys) == 1
    assert await entries(pay, account_id, "purchase") == [STARTER]


async def test_end_to_end_test_key_fakes_success_without_stripe(
    pay: RunningGateway, fake: FakeStripe
) -> None:
    account_id, key = await pay.account_with_key(credits=47, mode="test")
    status, body = await buy(pay, key, token("ok"))
    assert status == 200, body
    assert body["status"] == "succeeded" and body["credits_added"] == STARTER
    assert body["pack_slug"] == "starter" and body["next_action"] is None
    assert body["payment_intent_id"].startswith("pi_")
    assert body["credits_remaining"] == 47
    assert await balance(pay, account_id) == 47
    assert fake.requests == []


async def test_end_to_end_bad_requests_are_400(pay: RunningGateway, fake: FakeStripe) -> None:
    account_id, key = await pay.account_with_key(credits=0)
    status, body = await buy(pay, key, token("ok"), pack="enterprise-mega")
    assert status == 400 and "pack_slug" in body["detail"]
    status, body, _ = await pay.request(
        "POST", "/api/v1/credits/purchase", key=key, json={"pack_slug": "starter"}
    )
    assert status == 400 and "shared_payment_granted_token" in body["detail"]
    assert fake.requests == []
    assert await balance(pay, account_id) == 0

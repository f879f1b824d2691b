"""Credit packs bought with Stripe Shared Payment Tokens (agentic commerce), and Stripe's webhooks.

``purchase`` creates and confirms one PaymentIntent per (API key, token) through
``stripe.StripeClient``: the Stripe idempotency key is derived from that pair, and a
``purchases`` row (unique on the key and the token's hash) remembers the pack, so a
retry returns the same outcome and the same token with another pack is refused.

Credits of a PaymentIntent are granted by whichever comes first, the purchase call
seeing ``succeeded`` or the ``payment_intent.succeeded`` webhook: the grant is a
ledger entry with ``reference = "pi:<id>"`` (unique), written under the account's
row lock after checking it does not exist yet, so it happens exactly once.

Webhooks are verified (``Stripe-Signature``), stored once in the ``stripe_events``
inbox (unique event id), and processed by the ``payment.event_received`` actor.
Refunds (``charge.refunded``) and lost disputes (``charge.dispute.closed``) write
``reversal`` entries, once per event and never more than the credits granted; they
may take the balance below zero (DECISIONS.md).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, cast

import aiohttp
import asyncpg
import dramatiq
import msgspec
import stripe
from piccolo.columns import JSONB, ForeignKey, Integer, Timestamptz, Varchar
from piccolo.table import Table

from engine import metrics
from engine.access import Caller
from engine.config import CreditPack, PaymentsConfig
from engine.errors import Conflict, DomainError, InvalidRequest, ServiceUnavailable
from ledger.tables import Account, ApiKey

if TYPE_CHECKING:
    from stripe.params import PaymentIntentCreateParams

    from engine.runtime import Runtime

log = logging.getLogger(__name__)

PAYMENT_EVENT_RECEIVED = "payment.event_received"
WEBHOOK_TOLERANCE_SECONDS = 300


# errors ----------------------------------------------------------------------------


class PaymentDeclined(DomainError):
    """Stripe refused the payment; ``message`` is Stripe's own words (dialects answer 402)."""


class TokenReused(Conflict):
    def __init__(self) -> None:
        super().__init__("shared_payment_granted_token was already used for another pack")


class WebhookRejected(InvalidRequest):
    """A webhook that is not verifiably Stripe's (or webhooks are not configured): 400."""


# schema ----------------------------------------------------------------------------


class Purchase(Table, tablename="purchases"):
    api_key = ForeignKey(ApiKey)
    account = ForeignKey(Account)
    token_hash = Varchar(length=64)
    pack_slug = Varchar(length=64)
    payment_intent_id = Varchar(length=255, null=True, unique=True)
    status = Varchar(length=32, default="pending")
    credits = Integer()
    created_at = Timestamptz()
    updated_at = Timestamptz()


class StripeEvent(Table, tablename="stripe_events"):
    event_id = Varchar(length=255, unique=True)
    type = Varchar(length=100)
    payload = JSONB()
    received_at = Timestamptz()
    processed_at = Timestamptz(null=True)


TABLES: tuple[type[Table], ...] = (Purchase, StripeEvent)

MIGRATIONS: list[tuple[str, list[str]]] = [
    (
        "payments_0001",
        [
            """CREATE TABLE purchases (
                id bigserial PRIMARY KEY,
                api_key bigint NOT NULL REFERENCES api_keys(id),
                account bigint NOT NULL REFERENCES accounts(id),
                token_hash varchar(64) NOT NULL,
                pack_slug varchar(64) NOT NULL,
                payment_intent_id varchar(255) UNIQUE,
                status varchar(32) NOT NULL DEFAULT 'pending',
                credits integer NOT NULL,
                created_at timestamptz NOT NULL DEFAULT now(),
                updated_at timestamptz NOT NULL DEFAULT now(),
                UNIQUE (api_key, token_hash)
            )""",
            """CREATE TABLE stripe_events (
                id bigserial PRIMARY KEY,
                event_id varchar(255) NOT NULL UNIQUE,
                type varchar(100) NOT NULL,
                payload jsonb NOT NULL,
                received_at timestamptz NOT NULL DEFAULT now(),
                processed_at timestamptz
            )""",
            "CREATE INDEX stripe_events_unprocessed ON stripe_events (id) WHERE processed_at IS NULL",
        ],
    ),
]


# purchases -------------------------------------------------------------------------


class PurchaseResult(msgspec.Struct, frozen=True, kw_only=True):
    payment_intent_id: str
    status: str
    pack_slug: str
    credits_added: int
    credits_remaining: int
    next_action: dict[str, Any] | None


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def idempotency_key(api_key_id: int, token: str) -> str:
    """The Stripe ``Idempotency-Key`` of a purchase: one PaymentIntent per (API key, token)."""
    return _sha256(f"{api_key_id}:{token}")


def grant_reference(payment_intent_id: str) -> str:
    return f"pi:{payment_intent_id}"


async def purchase(runtime: Runtime, caller: Caller, pack_slug: str, token: str) -> PurchaseResult:
    """Buy ``pack_slug`` with a Shared Payment Token; safe to retry with the same token."""
    config: PaymentsConfig = runtime.config.payments
    pack = config.pack(pack_slug)
    if not token:
        raise InvalidRequest("shared_payment_granted_token is required", field="shared_payment_granted_token")
    account_id = caller.account.id
    if caller.is_test:
        return PurchaseResult(
            payment_intent_id="pi_test_" + idempotency_key(caller.key.id, token)[:24],
            status="succeeded",
            pack_slug=pack.slug,
            credits_added=pack.credits,
            credits_remaining=await runtime.ledger.balance(account_id),
            next_action=None,
        )
    if not config.stripe_api_key:
        raise ServiceUnavailable("Payments are not configured")

    row = await _claim(runtime, caller, pack, _sha256(token))
    if row["pack_slug"] != pack.slug:
        raise TokenReused()
    if row["status"] == "succeeded" and row["payment_intent_id"]:
        return PurchaseResult(
            payment_intent_id=row["payment_intent_id"],
            status="succeeded",
            pack_slug=pack.slug,
            credits_added=int(row["credits"]),
            credits_remaining=await runtime.ledger.balance(account_id),
            next_action=None,
        )

    try:
        intent = await _create_intent(config, caller, pack, token, purchase_id=int(row["id"]))
    except PaymentDeclined:
        await runtime.db.fetch(
            "UPDATE purchases SET status = 'declined', updated_at = now()"
            " WHERE id = $1 AND status <> 'succeeded'",
            row["id"],
        )
        raise

    status: str = intent.status
    log.info(
        "stripe.payment_intent",
        extra={"payment_intent_id": intent.id, "status": status, "account_id": account_id, "pack": pack.slug},
    )
    next_action = intent.next_action.to_dict() if intent.next_action is not None else None
    async with runtime.db.transaction():
        if status == "succeeded":
            await grant_once(
                runtime, account_id, int(row["credits"]), intent.id, reason=f"purchase of pack {pack.slug}"
            )
        stored = await _record_intent(runtime, int(row["id"]), intent.id, status)
    if stored == "succeeded":  # granted now, earlier, or by the webhook
        status, next_action = "succeeded", None
    elif status in ("requires_payment_method", "canceled"):
        error = intent.last_payment_error
        raise PaymentDeclined((error.message if error is not None else None) or "The payment was declined.")
    return PurchaseResult(
        payment_intent_id=intent.id,
        status=status,
        pack_slug=pack.slug,
        credits_added=int(row["credits"]) if status == "succeeded" else 0,
        credits_remaining=await runtime.ledger.balance(account_id),
        next_action=next_action,
    )


async def _claim(runtime: Runtime, caller: Caller, pack: CreditPack, token_hash: str) -> dict[str, Any]:
    """The purchase row of (key, token): inserted now, or the one a first attempt left."""
    await runtime.db.fetch(
        """INSERT INTO purchases (api_key, account, token_hash, pack_slug, credits)
           VALUES ($1, $2, $3, $4, $5) ON CONFLICT (api_key, token_hash) DO NOTHING""",
        caller.key.id,
        caller.account.id,
        token_hash,
        pack.slug,
        pack.credits,
    )
    row = await runtime.db.fetchrow(
        "SELECT * FROM purchases WHERE api_key = $1 AND token_hash = $2", caller.key.id, token_hash
    )
    assert row is not None
    return row


async def _record_intent(runtime: Runtime, purchase_id: int, intent_id: str, status: str) -> str:
    """Remember the PaymentIntent and its status (``succeeded`` is never overwritten); returns it."""
    row = await runtime.db.fetchrow(
        """UPDATE purchases SET payment_intent_id = $2, updated_at = now(),
               status = CASE WHEN status = 'succeeded' THEN status ELSE $3 END
           WHERE id = $1 RETURNING status""",
        purchase_id,
        intent_id,
        status,
    )
    assert row is not None
    return str(row["status"])


@asynccontextmanager
async def stripe_client(config: PaymentsConfig) -> AsyncIterator[stripe.StripeClient]:
    """A StripeClient on its own aiohttp session, closed on exit (purchases are rare; nothing
    outlives the call or its event loop).

    The timeout is given to the library's HTTP client too: it passes its own (80 s) with every
    request, which would otherwise override the session's.
    """
    timeout = aiohttp.ClientTimeout(total=config.timeout_seconds)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        yield stripe.StripeClient(
            config.stripe_api_key,
            stripe_version=config.api_version,
            base_addresses={"api": config.base_url} if config.base_url else None,
            http_client=stripe.AIOHTTPClient(session=session, timeout=timeout),
            max_network_retries=2,
        )


async def _create_intent(
    config: PaymentsConfig, caller: Caller, pack: CreditPack, token: str, *, purchase_id: int
) -> stripe.PaymentIntent:
    params: dict[str, Any] = {
        "amount": pack.amount,
        "currency": pack.currency,
        "confirm": True,
        "payment_method_data": {"shared_payment_granted_token": token},
        "description": f"{pack.credits} credits ({pack.slug})",
        "metadata": {
            "account_id": str(caller.account.id),
            "api_key_id": str(caller.key.id),
            "pack_slug": pack.slug,
            "credits": str(pack.credits),
            "purchase_id": str(purchase_id),
        },
    }
    try:
        # one budget for the call and the library's retries: the client is waiting on it
        async with asyncio.timeout(config.timeout_seconds), stripe_client(config) as client:
            return await client.v1.payment_intents.create_async(
                cast("PaymentIntentCreateParams", params),
                options={"idempotency_key": idempotency_key(caller.key.id, token)},
            )
    except TimeoutError:
        # Stripe may still confirm it: the retry (same token, same Stripe idempotency key) or
        # Stripe's webhook grants the credits, once (grant_once)
        log.warning("Stripe did not answer within %gs", config.timeout_seconds)
        raise ServiceUnavailable("The payment provider did not answer in time; retry later") from None
    except stripe.CardError as exc:
        raise PaymentDeclined(exc.user_message or "Your card was declined.") from None
    except stripe.IdempotencyError as exc:
        if exc.http_status == 409:  # the first request with this key is still being processed
            raise ServiceUnavailable("The payment is still being processed; retry later") from None
        raise TokenReused() from None
    except stripe.InvalidRequestError as exc:
        raise InvalidRequest(exc.user_message or "The payment request was refused") from None
    except stripe.StripeError as exc:
        log.warning("Stripe call failed: %r", exc)
        raise ServiceUnavailable("The payment provider is unavailable; retry later") from None


async def grant_once(runtime: Runtime, account_id: int, credits: int, intent_id: str, *, reason: str) -> bool:
    """Grant a PaymentIntent's credits unless already granted; inside the caller's transaction.

    The account's row lock serialises the purchase call and the webhook; the unique
    ``reference`` is the backstop (caught inside a savepoint, so the caller's
    transaction stays usable). Returns whether this call granted.
    """
    reference = grant_reference(intent_id)
    await _lock_intent(runtime, intent_id)
    await runtime.ledger.lock_account(account_id)
    if await runtime.db.fetchrow("SELECT 1 FROM ledger_entries WHERE reference = $1", reference):
        return False
    transaction: Any = runtime.db.engine.current_transaction.get()
    assert transaction is not None, "grant_once runs inside a transaction"
    savepoint: Any = await transaction.savepoint()
    try:
        await runtime.ledger.grant(account_id, credits, reason=reason, kind="purchase", reference=reference)
    except asyncpg.UniqueViolationError:
        await savepoint.rollback_to()
        return False
    await savepoint.release()
    metrics.credits_moved("purchase", credits)
    await _reverse_earlier(runtime, intent_id)
    return True


async def _lock_intent(runtime: Runtime, intent_id: str) -> None:
    """Serialise the grant and the reversals of one PaymentIntent until the transaction ends, so
    whichever comes second sees the first (Stripe does not order its events)."""
    await runtime.db.fetch("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", "pi:" + intent_id)


async def _reverse_earlier(runtime: Runtime, intent_id: str) -> None:
    """Apply the refunds and lost disputes processed before this grant: they found nothing to take
    back then (found by the money simulation, tests/simulation)."""
    rows = await runtime.db.fetch(
        """SELECT event_id, type, payload FROM stripe_events
           WHERE processed_at IS NOT NULL AND type IN ('charge.refunded', 'charge.dispute.closed')
             AND payload->'data'->'object'->>'payment_intent' = $1 ORDER BY id""",
        intent_id,
    )
    for row in rows:
        payload = row["payload"]
        event: dict[str, Any] = json.loads(payload) if isinstance(payload, str) else payload
        await _apply(runtime, str(row["event_id"]), str(row["type"]), event["data"]["object"])


# webhooks --------------------------------------------------------------------------


async def receive_webhook(runtime: Runtime, payload: bytes, signature_header: str | None) -> bool:
    """Verify and store a Stripe event, and send it to the engine. Returns whether it was new.

    Raises :class:`WebhookRejected` (nothing stored) when no secret is configured, the
    signature does not match or is stale, or the body is not an event.
    """
    secret = runtime.config.payments.webhook_secret
    if not secret:
        raise WebhookRejected("Stripe webhooks are not configured")
    try:
        stripe.WebhookSignature.verify_header(payload, signature_header, secret, WEBHOOK_TOLERANCE_SECONDS)
    except stripe.SignatureVerificationError:
        raise WebhookRejected("Invalid Stripe-Signature") from None
    try:
        event = json.loads(payload)
        event_id, kind = event["id"], event["type"]
        if not isinstance(event_id, str) or not isinstance(kind, str):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        raise WebhookRejected("The body is not a Stripe event") from None
    row = await runtime.db.fetchrow(
        """INSERT INTO stripe_events (event_id, type, payload) VALUES ($1, $2, $3::jsonb)
           ON CONFLICT (event_id) DO NOTHING RETURNING id""",
        event_id,
        kind,
        payload.decode(),
    )
    new = row is not None
    if row is None:  # a redelivery: send it again only if it was never processed
        row = await runtime.db.fetchrow(
            "SELECT id FROM stripe_events WHERE event_id = $1 AND processed_at IS NULL", event_id
        )
    if row is not None:
        if runtime.payment_event_sender is None:
            raise RuntimeError("no broker: payment actors were not declared for this runtime")
        runtime.payment_event_sender(int(row["id"]))
    return new


async def process_event(runtime: Runtime, inbox_id: int) -> None:
    """Apply one stored event to the ledger, once (a processed event is skipped)."""
    async with runtime.db.transaction():
        row = await runtime.db.fetchrow(
            "SELECT * FROM stripe_events WHERE id = $1 AND processed_at IS NULL FOR UPDATE", inbox_id
        )
        if row is None:
            return
        payload = row["payload"]
        event: dict[str, Any] = json.loads(payload) if isinstance(payload, str) else payload
        data_object: dict[str, Any] = (event.get("data") or {}).get("object") or {}
        transaction: Any = runtime.db.engine.current_transaction.get()
        savepoint: Any = await transaction.savepoint()
        try:
            await _apply(runtime, str(row["event_id"]), str(row["type"]), data_object)
        except (DomainError, ValueError, KeyError, TypeError) as exc:  # malformed or foreign: never retried
            await savepoint.rollback_to()
            log.warning("Stripe event %s (%s) not applied: %r", row["event_id"], row["type"], exc)
        else:
            await savepoint.release()
            log.info("stripe.event", extra={"event_id": row["event_id"], "event_type": row["type"]})
        await runtime.db.fetch("UPDATE stripe_events SET processed_at = now() WHERE id = $1", inbox_id)


async def _apply(runtime: Runtime, event_id: str, kind: str, data_object: dict[str, Any]) -> None:
    if kind == "payment_intent.succeeded":
        await _intent_succeeded(runtime, data_object)
    elif kind == "charge.refunded":
        amount = int(data_object["amount"])
        refunded = int(data_object.get("amount_refunded") or 0)
        await _reverse(
            runtime, event_id, data_object.get("payment_intent"), refunded, amount, "payment refunded"
        )
    elif kind == "charge.dispute.closed" and data_object.get("status") == "lost":
        await _reverse(runtime, event_id, data_object.get("payment_intent"), 1, 1, "dispute lost")


async def _intent_succeeded(runtime: Runtime, intent: dict[str, Any]) -> None:
    intent_id = str(intent["id"])
    metadata: dict[str, Any] = intent.get("metadata") or {}
    purchase_id = int(metadata["purchase_id"]) if str(metadata.get("purchase_id", "")).isdigit() else None
    row = await runtime.db.fetchrow(
        "SELECT * FROM purchases WHERE payment_intent_id = $1 OR id = $2 ORDER BY id LIMIT 1",
        intent_id,
        purchase_id,
    )
    if row is not None:
        account_id, credits, slug = int(row["account"]), int(row["credits"]), str(row["pack_slug"])
    else:  # the purchase call has not stored anything yet: the metadata we sent tells
        if "account_id" not in metadata or "pack_slug" not in metadata:
            log.info("payment_intent.succeeded %s is not a credit purchase; ignored", intent_id)
            return
        account_id, slug = int(metadata["account_id"]), str(metadata["pack_slug"])
        credits = runtime.config.payments.pack(slug).credits
    await grant_once(runtime, account_id, credits, intent_id, reason=f"purchase of pack {slug}")
    if row is not None:
        await _record_intent(runtime, int(row["id"]), intent_id, "succeeded")


async def _reverse(
    runtime: Runtime, event_id: str, intent_id: Any, numerator: int, denominator: int, reason: str
) -> None:
    """Take back the share ``numerator/denominator`` of what the PaymentIntent granted, minus what
    earlier reversals took already (refund events carry the cumulative amount refunded)."""
    if not intent_id:
        return
    await _lock_intent(runtime, str(intent_id))
    grant = await runtime.db.fetchrow(
        "SELECT account, amount FROM ledger_entries WHERE reference = $1", grant_reference(str(intent_id))
    )
    if grant is None:
        log.info("%s for %s: no credits were granted for it; nothing to reverse", reason, intent_id)
        return
    account_id, granted = int(grant["account"]), int(grant["amount"])
    await runtime.ledger.lock_account(account_id)
    prefix = f"reversal:{intent_id}:"
    taken = await runtime.db.fetchrow(
        "SELECT COALESCE(-SUM(amount), 0) AS taken FROM ledger_entries WHERE starts_with(reference, $1)",
        prefix,
    )
    target = granted if numerator >= denominator else granted * numerator // denominator
    amount = target - int(taken["taken"] if taken else 0)
    if amount > 0:
        await runtime.ledger.reverse(account_id, amount, reason=reason, reference=prefix + event_id)
        metrics.credits_moved("reversal", amount)


# actors ----------------------------------------------------------------------------


def declare_actors(broker: dramatiq.Broker, runtime: Runtime) -> None:
    """Declare ``payment.event_received`` on ``broker``, bound to ``runtime``, and let it send."""

    async def payment_event_received(inbox_id: int) -> None:
        await process_event(runtime, inbox_id)

    actor = dramatiq.actor(actor_name=PAYMENT_EVENT_RECEIVED, broker=broker)(payment_event_received)
    runtime.payment_event_sender = actor.send


async def resend_unprocessed(runtime: Runtime, older_than_seconds: float = 30.0) -> list[int]:
    """Sweeper pass: events stored in the inbox but never processed (their message was lost)."""
    rows = await runtime.db.fetch(
        """SELECT id FROM stripe_events WHERE processed_at IS NULL
           AND received_at < now() - make_interval(secs => $1) ORDER BY id LIMIT 100""",
        older_than_seconds,
    )
    sender = runtime.payment_event_sender
    if sender is not None:
        for row in rows:
            sender(int(row["id"]))
    return [int(row["id"]) for row in rows]

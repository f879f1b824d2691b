"""Webhook events: recorded when a job ends, delivered by the engine, signed, retried, audited.

One event per job (``webhook_events``, unique on ``job``) is written in the
transaction that finishes the job, with its body already encoded: the exact
bytes sent, and signed, on every attempt. After the commit the job's finisher
calls :func:`schedule`; the ``webhook.delivery_due`` actor then runs
:func:`deliver`, never an HTTP request of the API.

Delivery
    The first attempt, then retries after ``delays`` (1 s, 4 s, 16 s) times
    ``backoff_scale`` (``TRYON_WEBHOOK_BACKOFF_SCALE``), each with a
    ``timeout_seconds`` budget (``TRYON_WEBHOOK_TIMEOUT_SECONDS``). Any 2xx ends
    it; anything else (a 3xx too: redirects are never followed), a timeout or a
    connection error is a failed attempt. After the last retry the event is
    ``failed``. Every attempt is a row of ``webhook_attempts`` (time, status
    code, the first ``response_excerpt_bytes`` of the answer, error, duration).

The outbound guard
    The URL was checked when the job was submitted and is checked again on
    every attempt (:func:`engine.outbound.check_url`, then a session from
    :func:`engine.outbound.make_session`, whose resolver refuses names that
    resolve to non-public addresses). A refusal is recorded as the attempt's
    error and ends the event at once (``failed``, no retries): the URL leads
    where the gateway never calls, and repeating the lookup a few seconds later
    only gives a rebinding attacker more tries. Ops can re-send it
    (:func:`resend`) once the receiver is fixed.

Exactly-once bookkeeping
    An event holds the number of the attempt it expects next
    (``next_attempt``) and when (``next_attempt_at``). An attempt starts with a
    conditional UPDATE taking a short lease (``leased_until``), so a duplicate or
    stale message does nothing. A worker that dies mid-attempt leaves the lease
    to expire; :func:`stalled_events` (run by the sweeper) re-sends events whose
    next attempt is overdue, which also heals a message that was never sent.
    Delivery is therefore at least once: a receiver may see one attempt twice
    and should de-duplicate on ``X-FitInView-Event-Id``.

Headers (verification for receivers; the documented ones first)
    ``X-FitInView-Signature: sha256=<hex>``: HMAC-SHA256 of the raw body keyed
    by the key's ``whsec_…`` secret, exactly the document's snippet::

        expected = "sha256=" + hmac.new(secret.encode(), raw_body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(expected, request.headers["X-FitInView-Signature"])

    ``X-FitInView-Event: tryon.completed``, ``X-FitInView-Job-Id: job_…``.
    Added beyond the document: ``X-FitInView-Event-Id: evt_…`` (the same on
    every attempt and re-send), ``X-FitInView-Delivery: dlv_…`` (new per
    attempt), ``X-FitInView-Timestamp: <unix seconds>`` and
    ``X-FitInView-Signature-V2: t=<unix>,v1=<hex>`` where ``hex`` is the
    HMAC-SHA256 of ``f"{t}.".encode() + raw_body`` with the same secret. A
    receiver that wants to refuse replays checks v2 and that ``t`` is recent::

        parts = dict(item.split("=", 1) for item in request.headers["X-FitInView-Signature-V2"].split(","))
        signed = parts["t"].encode() + b"." + raw_body
        expected = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(expected, parts["v1"])
        assert abs(time.time() - int(parts["t"])) < 300

    During a webhook-secret rotation's grace period (``POST /admin/keys/{id}/webhook-secret/rotate``)
    the headers above are signed with the NEW secret, and ``X-FitInView-Signature-Previous``
    (``sha256=…``) and ``X-FitInView-Signature-V2-Previous`` (``t=…,v1=…``) carry the same
    signatures made with the previous secret, so a receiver still holding the old secret keeps
    verifying until it is updated.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
import time
from datetime import UTC, datetime
from typing import Any

import aiohttp
import dramatiq
import msgspec
from piccolo.columns import ForeignKey, Integer, Text, Timestamptz, Varchar
from piccolo.table import Table

from engine import metrics
from engine.config import WebhookConfig
from engine.errors import NotFound
from engine.models import JobRecord
from engine.outbound import OutboundRefused, check_url, make_session
from engine.runtime import Runtime
from engine.tables import Job
from ledger.models import Actor
from ledger.tables import ApiKey

log = logging.getLogger(__name__)

WEBHOOK_DELIVERY_DUE = "webhook.delivery_due"
EVENT_NAME = "tryon.completed"
STALLED_AFTER_SECONDS = 30.0
"""How late a due attempt may be before the sweeper sends it again."""
LEASE_GRACE_SECONDS = 30.0
"""An attempt's lease: its timeout plus this; a dead worker's attempt is retried after it."""


DEFAULT_CONFIG = WebhookConfig(backoff_scale=1.0, timeout_seconds=10.0)


def webhook_config(runtime: Runtime) -> WebhookConfig:
    """The runtime's webhook settings (``EngineConfig.webhooks``), or the documented defaults."""
    config = getattr(runtime.config, "webhooks", None)
    return config if isinstance(config, WebhookConfig) else DEFAULT_CONFIG


# --- schema ---------------------------------------------------------------------


class WebhookEvent(Table, tablename="webhook_events"):
    public_id = Varchar(length=40, unique=True)
    job = ForeignKey(Job, unique=True)
    api_key = ForeignKey(ApiKey, null=True)
    url = Text()
    body = Text()
    status = Varchar(length=16, default="pending")
    attempts = Integer(default=0)
    next_attempt = Integer(default=1)
    next_attempt_at = Timestamptz()
    round_start = Integer(default=1)
    leased_until = Timestamptz(null=True)
    created_at = Timestamptz()
    delivered_at = Timestamptz(null=True)


class WebhookAttempt(Table, tablename="webhook_attempts"):
    event = ForeignKey(WebhookEvent)
    attempt = Integer()
    delivery_id = Varchar(length=64)
    attempted_at = Timestamptz()
    status_code = Integer(null=True)
    response_excerpt = Text(null=True)
    error = Text(null=True)
    duration_ms = Integer()


TABLES: tuple[type[Table], ...] = (WebhookEvent, WebhookAttempt)

MIGRATIONS: list[tuple[str, list[str]]] = [
    (
        "webhooks_0001_events_attempts",
        [
            """CREATE TABLE webhook_events (
                id bigserial PRIMARY KEY,
                public_id varchar(40) NOT NULL UNIQUE,
                job bigint NOT NULL UNIQUE REFERENCES jobs(id),
                api_key bigint REFERENCES api_keys(id),
                url text NOT NULL,
                body text NOT NULL,
                status varchar(16) NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'delivered', 'failed')),
                attempts integer NOT NULL DEFAULT 0,
                next_attempt integer NOT NULL DEFAULT 1,
                next_attempt_at timestamptz NOT NULL DEFAULT now(),
                round_start integer NOT NULL DEFAULT 1,
                leased_until timestamptz,
                created_at timestamptz NOT NULL DEFAULT now(),
                delivered_at timestamptz
            )""",
            "CREATE INDEX webhook_events_due ON webhook_events (next_attempt_at) WHERE status = 'pending'",
            """CREATE TABLE webhook_attempts (
                id bigserial PRIMARY KEY,
                event bigint NOT NULL REFERENCES webhook_events(id),
                attempt integer NOT NULL,
                delivery_id varchar(64) NOT NULL,
                attempted_at timestamptz NOT NULL,
                status_code integer,
                response_excerpt text,
                error text,
                duration_ms integer NOT NULL,
                UNIQUE (event, attempt)
            )""",
        ],
    )
]


# --- body and signatures ----------------------------------------------------------


class WebhookBody(msgspec.Struct, frozen=True, kw_only=True):
    """The documented body; fields in the documented order (msgspec keeps it)."""

    event: str
    job_id: str
    status: str
    result_url: str | None
    error_code: str | None
    error_message: str | None
    duration_ms: int | None
    completed_at: str


def _utc_seconds(moment: datetime | None) -> str:
    moment = moment or datetime.now(UTC)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def build_body(job: JobRecord, result_url: str | None) -> bytes:
    """The event body as compact JSON, exactly the bytes that are signed and sent."""
    return msgspec.json.encode(
        WebhookBody(
            event=EVENT_NAME,
            job_id=job.public_id,
            status=str(job.status),
            result_url=result_url,
            error_code=job.error_code,
            error_message=job.error_message,
            duration_ms=job.duration_ms,
            completed_at=_utc_seconds(job.completed_at),
        )
    )


def sign_v1(secret: str, body: bytes) -> str:
    """``X-FitInView-Signature``: ``sha256=`` + HMAC-SHA256 of the raw body (the document's rule)."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def sign_v2(secret: str, timestamp: int, body: bytes) -> str:
    """``X-FitInView-Signature-V2``: ``t=<unix>,v1=<hex HMAC-SHA256 of "{t}." + body>``."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


# --- recording and scheduling ---------------------------------------------------------


async def record_event(runtime: Runtime, job: JobRecord, result_url: str | None) -> int | None:
    """Record the job's event (call inside the transaction that finishes a job with a webhook_url).

    Returns the event's row id for :func:`schedule` after the commit, or None if the job had
    no webhook URL or its event already exists.
    """
    if not job.webhook_url:
        return None
    record = await runtime.db.fetchrow(
        """INSERT INTO webhook_events (public_id, job, api_key, url, body)
           VALUES ($1, $2, $3, $4, $5) ON CONFLICT (job) DO NOTHING RETURNING id""",
        "evt_" + secrets.token_hex(12),
        job.id,
        job.api_key,
        job.webhook_url,
        build_body(job, result_url).decode(),
    )
    return None if record is None else int(record["id"])


def schedule(runtime: Runtime, event_id: int, attempt: int = 1, delay_seconds: float = 0) -> None:
    """Send ``webhook.delivery_due`` for this attempt, after ``delay_seconds``.

    A failure to send is logged, not raised: the sweeper (:func:`stalled_events`) sends
    overdue attempts again.
    """
    sender = runtime.webhook_sender
    if sender is None:
        log.warning(
            "no broker for webhooks yet; event %d attempt %d waits for the sweeper", event_id, attempt
        )
        return
    delay_ms = max(0, round(delay_seconds * 1000))
    try:
        if delay_ms:
            sender.send_with_options(args=(event_id, attempt), delay=delay_ms)
        else:
            sender.send(event_id, attempt)
    except Exception:
        log.warning("could not send webhook event %d attempt %d now; the sweeper will", event_id, attempt)


MAX_BACKGROUND_DELIVERIES = 64
"""Attempts one process makes at once without holding a worker thread; past that, the actor makes
the attempt itself (holding its thread), which is the backpressure."""


def declare_actors(broker: dramatiq.Broker, runtime: Runtime) -> None:
    """Declare ``webhook.delivery_due`` on ``broker``, bound to ``runtime``, and let it send to it.

    The actor starts the attempt as a task on the runtime's loop and returns: a receiver that
    hangs for the whole timeout would otherwise hold a worker thread, and a few such receivers
    would hold every thread and stall every account's jobs behind them. A process that stops
    mid-attempt leaves the event's lease to expire; the sweeper re-sends it (at least once).
    """
    in_flight: set[asyncio.Task[None]] = set()

    async def webhook_delivery_due(event_id: int, attempt: int) -> None:
        if len(in_flight) >= MAX_BACKGROUND_DELIVERIES:
            await deliver(runtime, event_id, attempt)
            return
        task = asyncio.create_task(_deliver_logged(runtime, event_id, attempt), name=f"webhook-{event_id}")
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)

    actor = dramatiq.actor(actor_name=WEBHOOK_DELIVERY_DUE, broker=broker, max_retries=0)(
        webhook_delivery_due
    )
    runtime.webhook_sender = actor


# --- delivering ------------------------------------------------------------------------


async def _deliver_logged(runtime: Runtime, event_id: int, attempt: int) -> None:
    """:func:`deliver` as a background task: a failure is logged (the sweeper re-sends the event)."""
    try:
        await deliver(runtime, event_id, attempt)
    except Exception:
        log.exception(
            "webhook event %d attempt %d failed to run; the sweeper will re-send it", event_id, attempt
        )


class _Outcome(msgspec.Struct, kw_only=True):
    status_code: int | None = None
    excerpt: str | None = None
    error: str | None = None
    refused: bool = False

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


async def _read_excerpt(response: aiohttp.ClientResponse, limit: int) -> str:
    data = b""
    while len(data) < limit:
        chunk = await response.content.read(limit - len(data))
        if not chunk:
            break
        data += chunk
    return data.decode("utf-8", errors="replace")


async def _post(
    runtime: Runtime, config: WebhookConfig, url: str, body: bytes, headers: dict[str, str]
) -> _Outcome:
    policy = msgspec.structs.replace(runtime.config.outbound, timeout_seconds=config.timeout_seconds)
    try:
        target = check_url(url, policy)
    except OutboundRefused as exc:
        return _Outcome(error=f"refused: {exc.reason}", refused=True)
    try:
        async with asyncio.timeout(config.timeout_seconds), make_session(policy) as session:
            async with session.post(target, data=body, headers=headers, allow_redirects=False) as response:
                excerpt = await _read_excerpt(response, config.response_excerpt_bytes)
                outcome = _Outcome(status_code=response.status, excerpt=excerpt)
                if 300 <= response.status < 400:
                    outcome.error = f"redirect not followed (HTTP {response.status})"
                elif not outcome.ok:
                    outcome.error = f"HTTP {response.status}"
                return outcome
    except OutboundRefused as exc:
        return _Outcome(error=f"refused: {exc.reason}", refused=True)
    except TimeoutError:
        return _Outcome(error=f"timed out after {config.timeout_seconds:g}s")
    except aiohttp.ClientConnectorDNSError:
        return _Outcome(error="could not resolve host")
    except aiohttp.ClientError as exc:
        return _Outcome(error=f"connection failed: {type(exc).__name__}: {exc}"[:500])
    except OSError as exc:
        return _Outcome(error=f"connection failed: {exc}"[:500])


async def deliver(runtime: Runtime, event_id: int, attempt: int) -> None:
    """Make attempt ``attempt`` of event ``event_id``, record it, and schedule what follows.

    Does nothing unless the event is pending, expects exactly this attempt, and no other
    worker holds it (a duplicate or stale message is harmless).
    """
    config = webhook_config(runtime)
    lease = config.timeout_seconds + LEASE_GRACE_SECONDS
    claimed = await runtime.db.fetchrow(
        """UPDATE webhook_events e SET leased_until = now() + make_interval(secs => $3)
           FROM jobs j
           WHERE e.id = $1 AND j.id = e.job AND e.status = 'pending' AND e.next_attempt = $2
             AND (e.leased_until IS NULL OR e.leased_until < now())
           RETURNING e.public_id, e.url, e.body, e.api_key, e.round_start, j.public_id AS job_public_id""",
        event_id,
        attempt,
        lease,
    )
    if claimed is None:
        return
    secret: str | None = None
    previous: str | None = None
    if claimed["api_key"] is not None:
        key = await runtime.db.fetchrow(
            """SELECT webhook_secret, CASE WHEN previous_webhook_secret_expires_at > now()
                                           THEN previous_webhook_secret END AS previous
               FROM api_keys WHERE id = $1""",
            claimed["api_key"],
        )
        secret = None if key is None else key["webhook_secret"]
        previous = None if key is None else key["previous"]

    body: bytes = claimed["body"].encode()
    delivery_id = "dlv_" + secrets.token_hex(12)
    attempted_at = datetime.now(UTC)
    started = time.monotonic()
    if not secret:
        outcome = _Outcome(error="the key has no webhook secret", refused=True)
    else:
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "Accept": "*/*",
            "X-FitInView-Signature": sign_v1(secret, body),
            "X-FitInView-Event": EVENT_NAME,
            "X-FitInView-Job-Id": claimed["job_public_id"],
            "X-FitInView-Event-Id": claimed["public_id"],
            "X-FitInView-Delivery": delivery_id,
            "X-FitInView-Timestamp": str(timestamp),
            "X-FitInView-Signature-V2": sign_v2(secret, timestamp, body),
        }
        if previous:  # a webhook-secret rotation's grace period: the old secret signs too
            headers["X-FitInView-Signature-Previous"] = sign_v1(previous, body)
            headers["X-FitInView-Signature-V2-Previous"] = sign_v2(previous, timestamp, body)
        outcome = await _post(runtime, config, claimed["url"], body, headers)
    duration_ms = int((time.monotonic() - started) * 1000)

    position = attempt - int(claimed["round_start"]) + 1
    retry_delay: float | None = None
    if not outcome.ok and not outcome.refused and position <= len(config.delays):
        retry_delay = config.delays[position - 1] * config.backoff_scale

    async with runtime.db.transaction():
        await runtime.db.fetch(
            """INSERT INTO webhook_attempts (event, attempt, delivery_id, attempted_at, status_code,
                                             response_excerpt, error, duration_ms)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (event, attempt) DO NOTHING""",
            event_id,
            attempt,
            delivery_id,
            attempted_at,
            outcome.status_code,
            outcome.excerpt,
            outcome.error,
            duration_ms,
        )
        if outcome.ok:
            await runtime.db.fetch(
                """UPDATE webhook_events SET status = 'delivered', attempts = $2, delivered_at = now(),
                                             leased_until = NULL
                   WHERE id = $1""",
                event_id,
                attempt,
            )
        elif retry_delay is None:
            await runtime.db.fetch(
                """UPDATE webhook_events SET status = 'failed', attempts = $2, leased_until = NULL
                   WHERE id = $1""",
                event_id,
                attempt,
            )
        else:
            await runtime.db.fetch(
                """UPDATE webhook_events SET attempts = $2, next_attempt = $2 + 1, leased_until = NULL,
                                             next_attempt_at = now() + make_interval(secs => $3)
                   WHERE id = $1""",
                event_id,
                attempt,
                retry_delay,
            )
    if outcome.ok:
        result = "delivered"
    elif outcome.refused:
        result = "refused"
    else:
        result = "failed" if retry_delay is None else "retrying"
    metrics.webhook_delivery(result)
    log.info(
        "webhook.attempt",
        extra={
            "event_id": claimed["public_id"],
            "job_id": claimed["job_public_id"],
            "attempt": attempt,
            "outcome": result,
            "status": outcome.status_code,
            "error": outcome.error,
            "duration_ms": duration_ms,
        },
    )
    if retry_delay is not None:
        schedule(runtime, event_id, attempt + 1, retry_delay)


# --- ops ---------------------------------------------------------------------------------


async def _event_row(runtime: Runtime, event: int | str) -> dict[str, Any]:
    column = "id" if isinstance(event, int) else "public_id"
    record = await runtime.db.fetchrow(
        f"""SELECT e.*, j.public_id AS job_public_id, j.account AS account_id
            FROM webhook_events e JOIN jobs j ON j.id = e.job
            WHERE e.{column} = $1""",
        event,
    )
    if record is None:
        raise NotFound("Webhook event not found")
    return record


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


async def event_with_attempts(runtime: Runtime, event_public_id: str) -> dict[str, Any]:
    """The event (``evt_…``) and every attempt, oldest first, for ops. Raises NotFound."""
    event = await _event_row(runtime, event_public_id)
    attempts = await runtime.db.fetch(
        "SELECT * FROM webhook_attempts WHERE event = $1 ORDER BY attempt, id", event["id"]
    )
    return {
        "id": event["public_id"],
        "job_id": event["job_public_id"],
        "url": event["url"],
        "status": event["status"],
        "attempts": event["attempts"],
        "next_attempt": event["next_attempt"] if event["status"] == "pending" else None,
        "next_attempt_at": _iso(event["next_attempt_at"]) if event["status"] == "pending" else None,
        "created_at": _iso(event["created_at"]),
        "delivered_at": _iso(event["delivered_at"]),
        "body": event["body"],
        "deliveries": [
            {
                "attempt": row["attempt"],
                "delivery_id": row["delivery_id"],
                "attempted_at": _iso(row["attempted_at"]),
                "status_code": row["status_code"],
                "response_excerpt": row["response_excerpt"],
                "error": row["error"],
                "duration_ms": row["duration_ms"],
            }
            for row in attempts
        ],
    }


SYSTEM = Actor(operator="system")
"""The actor of a re-send made by code rather than by an operator (tests, scripts)."""


async def mark_for_resend(
    runtime: Runtime, event_id: int | str, actor: Actor, reason: str = ""
) -> tuple[int, int]:
    """Reset the event for a fresh round of attempts and audit it (``webhook.resend``), inside the
    caller's transaction. Returns (event row id, attempt) for :func:`schedule` after the commit."""
    event = await _event_row(runtime, event_id)
    record = await runtime.db.fetchrow(
        """UPDATE webhook_events SET status = 'pending', next_attempt = attempts + 1,
                                     round_start = attempts + 1, next_attempt_at = now()
           WHERE id = $1 RETURNING next_attempt""",
        event["id"],
    )
    assert record is not None
    attempt = int(record["next_attempt"])
    await runtime.audit.record(
        actor,
        "webhook.resend",
        target_type="webhook",
        target_id=event["public_id"],
        account_id=event["account_id"],
        reason=reason,
        before={"status": event["status"], "attempts": event["attempts"]},
        after={"status": "pending", "next_attempt": attempt},
    )
    return int(event["id"]), attempt


async def resend(runtime: Runtime, event_id: int | str, actor: Actor = SYSTEM, reason: str = "") -> int:
    """Send the event again (same event id and body) as a fresh round of attempts.

    ``event_id`` is the row id or the public ``evt_…`` id. The new attempt is numbered after
    the last one and gets the usual retries if it fails. Owns its transaction (the change and
    its audit entry commit together) and enqueues only after the commit. Returns the attempt's
    number; raises NotFound.
    """
    async with runtime.db.transaction():
        row_id, attempt = await mark_for_resend(runtime, event_id, actor, reason)
    schedule(runtime, row_id, attempt)
    return attempt


class EventFilter(msgspec.Struct, frozen=True, kw_only=True):
    status: str | None = None
    account_id: int | None = None
    before_id: int | None = None
    limit: int = 50


class EventSummary(msgspec.Struct, frozen=True, kw_only=True):
    """One event in ops' list; ``GET /admin/webhooks/{evt_…}`` has the body and every attempt."""

    cursor_id: int
    id: str
    job_id: str
    account_id: int
    url: str
    status: str
    attempts: int
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None
    next_attempt_at: datetime | None


async def list_events(runtime: Runtime, query: EventFilter) -> list[EventSummary]:
    """Events across jobs, newest first (keyset on the row id), with each one's last attempt."""
    rows = await runtime.db.fetch(
        """SELECT e.id, e.public_id, e.url, e.status, e.attempts, e.created_at, e.delivered_at,
                  e.next_attempt_at, j.public_id AS job_public_id, j.account AS account_id,
                  a.status_code AS last_status_code, a.error AS last_error
           FROM webhook_events e
           JOIN jobs j ON j.id = e.job
           LEFT JOIN LATERAL (
               SELECT status_code, error FROM webhook_attempts
               WHERE event = e.id ORDER BY attempt DESC LIMIT 1
           ) a ON true
           WHERE ($1::text IS NULL OR e.status = $1)
             AND ($2::bigint IS NULL OR j.account = $2)
             AND e.id < $3
           ORDER BY e.id DESC LIMIT $4""",
        query.status,
        query.account_id,
        2**63 - 1 if query.before_id is None else query.before_id,
        query.limit,
    )
    return [
        EventSummary(
            cursor_id=row["id"],
            id=row["public_id"],
            job_id=row["job_public_id"],
            account_id=row["account_id"],
            url=row["url"],
            status=row["status"],
            attempts=row["attempts"],
            last_status_code=row["last_status_code"],
            last_error=row["last_error"],
            created_at=row["created_at"],
            delivered_at=row["delivered_at"],
            next_attempt_at=row["next_attempt_at"] if row["status"] == "pending" else None,
        )
        for row in rows
    ]


async def stalled_events(runtime: Runtime, limit: int = 500) -> list[int]:
    """Re-send pending events whose next attempt is overdue by 30 s (never sent, or its worker died).

    Idempotent: :func:`deliver` ignores messages for attempts that already happened or are
    under way. Returns the event ids re-sent.
    """
    records = await runtime.db.fetch(
        """SELECT id, next_attempt FROM webhook_events
           WHERE status = 'pending' AND next_attempt_at < now() - make_interval(secs => $1)
             AND (leased_until IS NULL OR leased_until < now())
           ORDER BY id LIMIT $2""",
        STALLED_AFTER_SECONDS,
        limit,
    )
    for record in records:
        schedule(runtime, int(record["id"]), int(record["next_attempt"]))
    if records:
        log.warning("webhook sweeper re-sent %d overdue event(s)", len(records))
    return [int(record["id"]) for record in records]

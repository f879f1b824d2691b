"""Webhooks: the documented body and signature, additive headers, retries, the guard, ops.

Three layers:

* signing and body shape (pure);
* ``delivery_…``: :func:`engine.webhooks.deliver` against a real database and a real
  receiver, with the broker replaced by a recorder so the test drives every attempt
  (and sees every scheduled delay) itself;
* ``end_to_end_…``: a real gateway whose finished jobs record and schedule events
  through Dramatiq, with the webhook settings turned down for speed.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import msgspec
import pytest
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

from engine import outbound, webhooks
from engine.config import WebhookConfig
from engine.models import JobRecord
from engine.webhooks import build_body, sign_v1, sign_v2
from ledger.database import apply_migrations
from tests.support.gateway import RunningGateway
from tests.support.image_host import ImageHost
from tests.support.webhook_receiver import Endpoint, WebhookReceiver, serve_webhook_receiver

DOCUMENTED_FIELDS = [
    "event",
    "job_id",
    "status",
    "result_url",
    "error_code",
    "error_message",
    "duration_ms",
    "completed_at",
]
"""The webhook body's fields, in the order fitinview-api.txt shows them."""

FAST = WebhookConfig(backoff_scale=0.01, timeout_seconds=0.5)
SECRET = "whsec_" + "s" * 43
REFUSED_NAME = "hooks.example.test"


# --- signing and body (pure) ---------------------------------------------------------------


def test_sign_v1_is_accepted_by_the_documented_snippet() -> None:
    raw_body = b'{"event":"tryon.completed","job_id":"job_1"}'
    secret = SECRET
    headers = {"X-FitInView-Signature": sign_v1(SECRET, raw_body)}
    # The document's snippet, verbatim:
    expected = "sha256=" + hmac.new(secret.encode(), raw_body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(expected, headers["X-FitInView-Signature"])
    assert sign_v1(SECRET, raw_body + b" ") != headers["X-FitInView-Signature"]


def test_sign_v2_signs_timestamp_dot_body() -> None:
    body = b'{"a":1}'
    header = sign_v2(SECRET, 1_700_000_000, body)
    t, v1 = header.split(",")
    assert t == "t=1700000000"
    digest = hmac.new(SECRET.encode(), b"1700000000." + body, hashlib.sha256).hexdigest()
    assert v1 == "v1=" + digest
    assert sign_v2(SECRET, 1_700_000_001, body) != header


def _job(**changes: Any) -> JobRecord:
    values: dict[str, Any] = {
        "id": 7,
        "public_id": "job_abc",
        "account": 1,
        "api_key": 2,
        "dialect": "fitinview",
        "kind": "tryon",
        "mode": "live",
        "backend": "local",
        "status": "succeeded",
        "stage": "done",
        "progress": 100,
        "params": {},
        "inputs": [],
        "results": [],
        "error_code": None,
        "error_message": None,
        "cost_credits": 8,
        "credits_refunded": 0,
        "metadata": None,
        "seed": None,
        "webhook_url": "https://hooks.example.com/x",
        "attempts": 1,
        "created_at": datetime(2026, 4, 29, 16, 44, 52, tzinfo=UTC),
        "started_at": None,
        "completed_at": datetime(2026, 4, 29, 16, 45, 11, 123456, tzinfo=UTC),
        "deadline_at": None,
        "duration_ms": 18452,
    }
    return msgspec.convert(values | changes, JobRecord)


def test_body_is_the_documented_shape_in_order() -> None:
    body = build_body(_job(), "https://s3.example/r.png?Expires=1")
    assert body == (
        b'{"event":"tryon.completed","job_id":"job_abc","status":"succeeded",'
        b'"result_url":"https://s3.example/r.png?Expires=1","error_code":null,"error_message":null,'
        b'"duration_ms":18452,"completed_at":"2026-04-29T16:45:11Z"}'
    )
    assert list(json.loads(body)) == DOCUMENTED_FIELDS


def test_failed_body_carries_the_error_words() -> None:
    job = _job(status="failed", error_code="generation_failed", error_message="content_blocked")
    decoded = json.loads(build_body(job, None))
    assert decoded["status"] == "failed"
    assert decoded["result_url"] is None
    assert (decoded["error_code"], decoded["error_message"]) == ("generation_failed", "content_blocked")


# --- fixtures -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def receiver() -> AsyncIterator[WebhookReceiver]:
    async with serve_webhook_receiver(hang_seconds=3.0) as running:
        yield running


class _Resolver(AbstractResolver):
    """The system resolver, except that REFUSED_NAME "later" resolves to loopback."""

    def __init__(self) -> None:
        self._real = ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if host.rstrip(".") == REFUSED_NAME:
            return [
                ResolveResult(
                    hostname=host,
                    host="127.0.0.1",
                    port=port,
                    family=socket.AF_INET,
                    proto=0,
                    flags=socket.AI_NUMERICHOST,
                )
            ]
        return await self._real.resolve(host, port, family)

    async def close(self) -> None:
        await self._real.close()


@pytest.fixture
def rebinding_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    """Sessions made from now on resolve REFUSED_NAME to 127.0.0.1 (a name turned private)."""
    monkeypatch.setattr(outbound, "ThreadedResolver", _Resolver)


class _Recorder:
    """Stands in for the ``webhook.delivery_due`` actor: remembers what would be sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[int, int, int]] = []

    def send(self, event_id: int, attempt: int) -> None:
        self.sent.append((event_id, attempt, 0))

    def send_with_options(self, *, args: tuple[int, int], delay: int) -> None:
        self.sent.append((args[0], args[1], delay))


@pytest.fixture(scope="module")
async def direct_gateway(gateway_factory: Any, receiver: WebhookReceiver, image_host: ImageHost) -> Any:
    gateway: RunningGateway = await gateway_factory(
        outbound_allow_hosts=(receiver.host_port, image_host.host_port)
    )
    await apply_migrations(gateway.settings.database_url, webhooks.MIGRATIONS)
    return gateway


@pytest.fixture
def recorder(direct_gateway: RunningGateway, monkeypatch: pytest.MonkeyPatch) -> _Recorder:
    recording = _Recorder()
    monkeypatch.setattr(direct_gateway.runtime, "webhook_sender", recording)
    monkeypatch.setattr(webhooks, "webhook_config", lambda runtime: FAST)
    return recording


def _tryon(image_host: ImageHost, **extra: Any) -> dict[str, Any]:
    return {
        "person_url": image_host.url("/person.png"),
        "garment_urls": [image_host.url("/shirt.png")],
        "output_size": "1K",
        "wait": True,
    } | extra


async def _key(gateway: RunningGateway, mode: str = "test") -> tuple[str, str]:
    account_id = await gateway.new_account(credits=1000)
    minted = await gateway.new_key(account_id, mode)
    return str(minted["key"]), str(minted["webhook_secret"])


async def _finished_event(
    gateway: RunningGateway, image_host: ImageHost, url: str, key: str
) -> tuple[int, JobRecord]:
    """A finished test-key job, and its event recorded as the job's finisher would."""
    status, answer, _ = await gateway.request("POST", "/api/v1/tryon", key=key, json=_tryon(image_host))
    assert status == 200 and answer["status"] == "succeeded", answer
    job = await gateway.runtime.jobs.by_public_id(answer["job_id"])
    assert job is not None
    job = msgspec.structs.replace(job, webhook_url=url)
    async with gateway.runtime.db.transaction():
        event_id = await webhooks.record_event(gateway.runtime, job, answer["result_url"])
    assert event_id is not None
    return event_id, job


async def _drive(gateway: RunningGateway, recorder: _Recorder, event_id: int) -> list[int]:
    """Play the broker: deliver attempt 1, then every attempt scheduled; return the delays (ms)."""
    await webhooks.deliver(gateway.runtime, event_id, 1)
    delays: list[int] = []
    while recorder.sent:
        sent_event, attempt, delay = recorder.sent.pop(0)
        assert sent_event == event_id
        delays.append(delay)
        await asyncio.sleep(delay / 1000)
        await webhooks.deliver(gateway.runtime, event_id, attempt)
    return delays


async def _view(gateway: RunningGateway, event_id: int) -> dict[str, Any]:
    record = await gateway.runtime.db.fetchrow("SELECT public_id FROM webhook_events WHERE id = $1", event_id)
    assert record is not None
    return await webhooks.event_with_attempts(gateway.runtime, record["public_id"])


def _assert_signed(endpoint: Endpoint, view: dict[str, Any], job: JobRecord) -> None:
    for received in endpoint.requests:
        assert received.v1_ok and received.v2_ok, received.headers
        assert received.raw_body == view["body"].encode()
        assert received.headers["X-FitInView-Event"] == "tryon.completed"
        assert received.headers["X-FitInView-Job-Id"] == job.public_id
        assert received.headers["X-FitInView-Event-Id"] == view["id"]
        assert received.headers["Content-Type"] == "application/json"
    deliveries = [received.headers["X-FitInView-Delivery"] for received in endpoint.requests]
    assert len(set(deliveries)) == len(deliveries)


# --- delivery against a real database (broker played by the test) ----------------------------


async def test_delivery_once_with_documented_body_and_signatures(
    direct_gateway: RunningGateway, recorder: _Recorder, receiver: WebhookReceiver, image_host: ImageHost
) -> None:
    key, secret = await _key(direct_gateway)
    endpoint = receiver.endpoint(secret, [200])
    event_id, job = await _finished_event(direct_gateway, image_host, endpoint.url, key)
    assert await _drive(direct_gateway, recorder, event_id) == []
    assert len(endpoint.requests) == 1
    view = await _view(direct_gateway, event_id)
    _assert_signed(endpoint, view, job)
    body = endpoint.requests[0].json
    assert body["job_id"] == job.public_id and body["status"] == "succeeded"
    assert body["result_url"].startswith("http")
    assert view["status"] == "delivered" and view["attempts"] == 1
    assert view["deliveries"][0]["status_code"] == 200
    assert len(view["deliveries"][0]["response_excerpt"]) == FAST.response_excerpt_bytes
    assert view["deliveries"][0]["delivery_id"] == endpoint.requests[0].headers["X-FitInView-Delivery"]

    # A duplicate or stale message for a finished attempt does nothing.
    await webhooks.deliver(direct_gateway.runtime, event_id, 1)
    await webhooks.deliver(direct_gateway.runtime, event_id, 2)
    assert len(endpoint.requests) == 1
    # The job's event exists once.
    async with direct_gateway.runtime.db.transaction():
        assert await webhooks.record_event(direct_gateway.runtime, job, None) is None


async def test_delivery_retries_with_scaled_backoff_then_succeeds(
    direct_gateway: RunningGateway, recorder: _Recorder, receiver: WebhookReceiver, image_host: ImageHost
) -> None:
    key, secret = await _key(direct_gateway)
    endpoint = receiver.endpoint(secret, [500, 500, 200])
    event_id, job = await _finished_event(direct_gateway, image_host, endpoint.url, key)
    assert await _drive(direct_gateway, recorder, event_id) == [10, 40]
    view = await _view(direct_gateway, event_id)
    _assert_signed(endpoint, view, job)
    assert len(endpoint.requests) == 3
    assert [d["status_code"] for d in view["deliveries"]] == [500, 500, 200]
    assert [d["attempt"] for d in view["deliveries"]] == [1, 2, 3]
    assert view["deliveries"][0]["error"] == "HTTP 500"
    assert view["status"] == "delivered"


async def test_delivery_gives_up_after_four_attempts(
    direct_gateway: RunningGateway, recorder: _Recorder, receiver: WebhookReceiver, image_host: ImageHost
) -> None:
    key, secret = await _key(direct_gateway)
    endpoint = receiver.endpoint(secret, [500])
    event_id, _ = await _finished_event(direct_gateway, image_host, endpoint.url, key)
    assert await _drive(direct_gateway, recorder, event_id) == [10, 40, 160]
    view = await _view(direct_gateway, event_id)
    assert len(endpoint.requests) == 4
    assert view["status"] == "failed" and view["attempts"] == 4
    assert len({r.headers["X-FitInView-Event-Id"] for r in endpoint.requests}) == 1

    # Ops re-send: a fresh round, same event id and body.
    endpoint.script = [500, 200]
    endpoint.requests.clear()
    assert await webhooks.resend(direct_gateway.runtime, view["id"]) == 5
    _, attempt, delay = recorder.sent.pop(0)
    assert (attempt, delay) == (5, 0)
    await webhooks.deliver(direct_gateway.runtime, event_id, 5)
    _, attempt, delay = recorder.sent.pop(0)
    assert (attempt, delay) == (6, 10)
    await webhooks.deliver(direct_gateway.runtime, event_id, 6)
    again = await _view(direct_gateway, event_id)
    assert again["status"] == "delivered" and again["attempts"] == 6
    assert {r.headers["X-FitInView-Event-Id"] for r in endpoint.requests} == {view["id"]}
    assert endpoint.requests[0].raw_body == view["body"].encode()


async def test_delivery_does_not_follow_redirects(
    direct_gateway: RunningGateway, recorder: _Recorder, receiver: WebhookReceiver, image_host: ImageHost
) -> None:
    key, secret = await _key(direct_gateway)
    endpoint = receiver.endpoint(secret, ["redirect", 200])
    event_id, _ = await _finished_event(direct_gateway, image_host, endpoint.url, key)
    await _drive(direct_gateway, recorder, event_id)
    view = await _view(direct_gateway, event_id)
    assert endpoint.redirect_followed == 0
    assert [d["status_code"] for d in view["deliveries"]] == [302, 200]
    assert "redirect" in view["deliveries"][0]["error"]


async def test_delivery_times_out(
    direct_gateway: RunningGateway, recorder: _Recorder, receiver: WebhookReceiver, image_host: ImageHost
) -> None:
    key, secret = await _key(direct_gateway)
    endpoint = receiver.endpoint(secret, ["hang", 200])
    event_id, _ = await _finished_event(direct_gateway, image_host, endpoint.url, key)
    await _drive(direct_gateway, recorder, event_id)
    view = await _view(direct_gateway, event_id)
    first = view["deliveries"][0]
    assert first["status_code"] is None and "timed out" in first["error"]
    assert first["duration_ms"] < 2000
    assert view["status"] == "delivered" and view["attempts"] == 2


async def test_delivery_refuses_a_name_resolving_to_a_private_address(
    direct_gateway: RunningGateway,
    recorder: _Recorder,
    receiver: WebhookReceiver,
    image_host: ImageHost,
    rebinding_dns: None,
) -> None:
    key, secret = await _key(direct_gateway)
    endpoint = receiver.endpoint(secret, [200], base_url=f"http://{REFUSED_NAME}:{receiver.port}")
    event_id, _ = await _finished_event(direct_gateway, image_host, endpoint.url, key)
    assert await _drive(direct_gateway, recorder, event_id) == []
    view = await _view(direct_gateway, event_id)
    assert endpoint.requests == []
    assert view["status"] == "failed" and view["attempts"] == 1
    assert "non-public" in view["deliveries"][0]["error"]


async def test_stalled_events_are_sent_again(
    direct_gateway: RunningGateway, recorder: _Recorder, receiver: WebhookReceiver, image_host: ImageHost
) -> None:
    key, secret = await _key(direct_gateway)
    endpoint = receiver.endpoint(secret, [200])
    event_id, _ = await _finished_event(direct_gateway, image_host, endpoint.url, key)
    assert event_id not in await webhooks.stalled_events(direct_gateway.runtime)
    await direct_gateway.runtime.db.fetch(
        "UPDATE webhook_events SET next_attempt_at = now() - interval '1 minute' WHERE id = $1", event_id
    )
    assert event_id in await webhooks.stalled_events(direct_gateway.runtime)
    assert (event_id, 1, 0) in recorder.sent
    recorder.sent.clear()
    await _drive(direct_gateway, recorder, event_id)
    assert len(endpoint.requests) == 1


@pytest.mark.parametrize("table", webhooks.TABLES, ids=lambda t: t._meta.tablename)
async def test_webhook_tables_match_the_migration(direct_gateway: RunningGateway, table: Any) -> None:
    connection = await asyncpg.connect(direct_gateway.settings.database_url)
    try:
        rows = await connection.fetch(
            "SELECT column_name FROM information_schema.columns WHERE table_name = $1", table._meta.tablename
        )
    finally:
        await connection.close()
    assert {row["column_name"] for row in rows} == {c._meta.db_column_name for c in table._meta.columns}


# --- end to end through a gateway (needs the lead's wiring) -------------------------------------

E2E_SCALE = 0.1  # delays 0.1 s, 0.4 s, 1.6 s: long enough to measure, short enough to wait for


@pytest.fixture(scope="module")
async def e2e_gateway(gateway_factory: Any, receiver: WebhookReceiver, image_host: ImageHost) -> Any:
    return await gateway_factory(
        webhook_backoff_scale=E2E_SCALE,
        webhook_timeout_seconds=0.5,
        outbound_allow_hosts=(receiver.host_port, image_host.host_port),
    )


async def _submit(gateway: RunningGateway, image_host: ImageHost, key: str, url: str) -> str:
    status, answer, _ = await gateway.request(
        "POST", "/api/v1/tryon", key=key, json=_tryon(image_host, wait=False, webhook_url=url)
    )
    assert status == 200, answer
    return str(answer["job_id"])


async def _admin_event(gateway: RunningGateway, event_public_id: str, *, settled: bool = True) -> Any:
    """The admin view of an event; with ``settled``, once it is no longer pending."""
    for _ in range(200):
        view = await gateway.admin("GET", f"/webhooks/{event_public_id}")
        if not settled or view["status"] != "pending":
            return view
        await asyncio.sleep(0.05)
    raise AssertionError(f"event {event_public_id} stayed pending")


async def test_end_to_end_live_job_delivers_once_signed(
    e2e_gateway: RunningGateway, receiver: WebhookReceiver, image_host: ImageHost
) -> None:
    key, secret = await _key(e2e_gateway, "live")
    endpoint = receiver.endpoint(secret, [200])
    job_id = await _submit(e2e_gateway, image_host, key, endpoint.url)
    (received,) = await receiver.wait_for(endpoint, 1, timeout=60)
    assert received.v1_ok and received.v2_ok
    polled = await e2e_gateway.wait_for_status(job_id, key, {"succeeded", "failed"})
    body = received.json
    assert list(body) == DOCUMENTED_FIELDS
    assert body["event"] == "tryon.completed" and body["job_id"] == job_id
    assert body["status"] == polled["status"] == "succeeded"
    assert received.headers["X-FitInView-Job-Id"] == job_id
    assert received.headers["X-FitInView-Event"] == "tryon.completed"
    view = await _admin_event(e2e_gateway, received.headers["X-FitInView-Event-Id"])
    assert view["status"] == "delivered" and view["job_id"] == job_id
    await asyncio.sleep(0.3)
    assert len(endpoint.requests) == 1


async def test_end_to_end_test_key_retries_then_delivers_with_growing_delays(
    e2e_gateway: RunningGateway, receiver: WebhookReceiver, image_host: ImageHost
) -> None:
    key, secret = await _key(e2e_gateway, "test")
    endpoint = receiver.endpoint(secret, [500, 500, 200])
    await _submit(e2e_gateway, image_host, key, endpoint.url)
    requests = await receiver.wait_for(endpoint, 3)
    assert all(r.v1_ok and r.v2_ok for r in requests)
    assert len({r.headers["X-FitInView-Event-Id"] for r in requests}) == 1
    assert len({r.headers["X-FitInView-Delivery"] for r in requests}) == 3
    assert len({r.raw_body for r in requests}) == 1
    first_gap, second_gap = requests[1].at - requests[0].at, requests[2].at - requests[1].at
    assert first_gap >= 1.0 * E2E_SCALE * 0.9
    assert second_gap >= 4.0 * E2E_SCALE * 0.9
    assert second_gap > first_gap
    view = await _admin_event(e2e_gateway, requests[0].headers["X-FitInView-Event-Id"])
    assert view["status"] == "delivered"
    assert [d["status_code"] for d in view["deliveries"]] == [500, 500, 200]


async def test_end_to_end_always_failing_receiver_gets_exactly_four_attempts(
    e2e_gateway: RunningGateway, receiver: WebhookReceiver, image_host: ImageHost
) -> None:
    key, secret = await _key(e2e_gateway)
    endpoint = receiver.endpoint(secret, [500])
    await _submit(e2e_gateway, image_host, key, endpoint.url)
    requests = await receiver.wait_for(endpoint, 4)
    view = await _admin_event(e2e_gateway, requests[0].headers["X-FitInView-Event-Id"])
    assert view["status"] == "failed" and view["attempts"] == 4
    await asyncio.sleep(21 * E2E_SCALE)  # longer than any further delay would be
    assert len(endpoint.requests) == 4


async def test_end_to_end_redirect_is_a_failure_and_not_followed(
    e2e_gateway: RunningGateway, receiver: WebhookReceiver, image_host: ImageHost
) -> None:
    key, secret = await _key(e2e_gateway)
    endpoint = receiver.endpoint(secret, ["redirect", 200])
    await _submit(e2e_gateway, image_host, key, endpoint.url)
    requests = await receiver.wait_for(endpoint, 2)
    view = await _admin_event(e2e_gateway, requests[0].headers["X-FitInView-Event-Id"])
    assert endpoint.redirect_followed == 0
    assert [d["status_code"] for d in view["deliveries"]] == [302, 200]


async def test_end_to_end_hanging_receiver_times_out(
    e2e_gateway: RunningGateway, receiver: WebhookReceiver, image_host: ImageHost
) -> None:
    key, secret = await _key(e2e_gateway)
    endpoint = receiver.endpoint(secret, ["hang", 200])
    await _submit(e2e_gateway, image_host, key, endpoint.url)
    requests = await receiver.wait_for(endpoint, 2)
    view = await _admin_event(e2e_gateway, requests[0].headers["X-FitInView-Event-Id"])
    assert view["deliveries"][0]["status_code"] is None
    assert "timed out" in view["deliveries"][0]["error"]
    assert view["status"] == "delivered"


async def test_end_to_end_private_resolution_is_not_called(
    e2e_gateway: RunningGateway, receiver: WebhookReceiver, image_host: ImageHost, rebinding_dns: None
) -> None:
    key, secret = await _key(e2e_gateway)
    endpoint = receiver.endpoint(secret, [200], base_url=f"http://{REFUSED_NAME}:{receiver.port}")
    job_id = await _submit(e2e_gateway, image_host, key, endpoint.url)
    await e2e_gateway.wait_for_status(job_id, key, {"succeeded", "failed"})
    job = await e2e_gateway.runtime.jobs.by_public_id(job_id)
    assert job is not None
    record = None
    for _ in range(200):
        record = await e2e_gateway.runtime.db.fetchrow(
            "SELECT public_id, status FROM webhook_events WHERE job = $1", job.id
        )
        if record is not None and record["status"] != "pending":
            break
        await asyncio.sleep(0.05)
    assert record is not None
    view = await _admin_event(e2e_gateway, record["public_id"])
    assert view["status"] == "failed"
    assert "non-public" in view["deliveries"][0]["error"]
    assert endpoint.requests == []


async def test_end_to_end_admin_shows_attempts_and_resends(
    e2e_gateway: RunningGateway, receiver: WebhookReceiver, image_host: ImageHost
) -> None:
    key, secret = await _key(e2e_gateway)
    endpoint = receiver.endpoint(secret, [200])
    await _submit(e2e_gateway, image_host, key, endpoint.url)
    (first,) = await receiver.wait_for(endpoint, 1)
    event_id = first.headers["X-FitInView-Event-Id"]
    view = await _admin_event(e2e_gateway, event_id)
    assert view["id"] == event_id and len(view["deliveries"]) == 1

    status, answer, _ = await e2e_gateway.request(
        "POST",
        f"/admin/webhooks/{event_id}/resend",
        headers={"Authorization": f"Bearer {e2e_gateway.settings.admin_token}"},
    )
    assert status == 202, answer
    requests = await receiver.wait_for(endpoint, 2)
    assert requests[1].headers["X-FitInView-Event-Id"] == event_id
    assert requests[1].headers["X-FitInView-Delivery"] != first.headers["X-FitInView-Delivery"]
    assert requests[1].raw_body == first.raw_body and requests[1].v1_ok
    again = await _admin_event(e2e_gateway, event_id)
    assert again["status"] == "delivered" and again["attempts"] == 2

    status, _, _ = await e2e_gateway.request(
        "GET",
        "/admin/webhooks/evt_00ff00ff",
        headers={"Authorization": f"Bearer {e2e_gateway.settings.admin_token}"},
    )
    assert status == 404

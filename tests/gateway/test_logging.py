"""Request ids and structured logs in one process: ``X-Request-Id`` on every kind of response,
one try-on followed from its request line to the worker's ``job.succeeded`` by request id, and
no key, token or secret in any line.

The in-process worker runs each message in its own task, which does not inherit the
request's context: a request id on the worker's lines can only have come through the
Dramatiq message. ``tests/gateway/test_observability_processes.py`` does the same across
real ``serve`` and ``worker`` processes."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from litestar import Litestar, get

from engine import context
from gateway.logging_setup import ConsoleFormatter, JsonFormatter, make_handler, record_fields, redact
from gateway.observability import RequestObservability
from tests.conftest import GatewayFactory
from tests.support.gateway import RunningGateway, fixture_b64
from tests.support.image_host import ImageHost


class Captured(logging.Handler):
    """Every record the process logs while installed, as the JSON lines ``serve`` would write."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.addFilter(make_handler("json").filters[0])
        self.setFormatter(JsonFormatter())
        self.records: list[logging.LogRecord] = []
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.lines.append(self.format(record))

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.lines]

    def unredacted(self) -> list[str]:
        """The lines as they would be without the formatter's last-resort masking."""
        return [json.dumps(record_fields(record), default=str) for record in self.records]


@contextmanager
def captured_logs() -> Iterator[Captured]:
    handler = Captured()
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def request_id_of(headers: dict[str, str]) -> str | None:
    return {name.lower(): value for name, value in headers.items()}.get("x-request-id")


async def test_x_request_id_on_every_kind_of_response(gateway_factory: GatewayFactory) -> None:
    gateway = await gateway_factory(rate_limit_per_min=1)
    _, fiv_key = await gateway.account_with_key(credits=100)
    _, ftm_key = await gateway.account_with_key(credits=100, dialect="ftmvai")
    ftm_body = {
        "style": "virtual_tryon",
        "person_image": fixture_b64("person-astronaut.png"),
        "clothing_image": fixture_b64("garment-shirt-red-stripes.png"),
    }
    calls: list[tuple[str, str, str | None, Any, int]] = [
        ("GET", "/api/v1/account", fiv_key, None, 200),
        ("GET", "/api/v1/account", ftm_key, None, 200),
        ("GET", "/api/v1/tryon", None, None, 401),
        ("POST", "/api/v1/generate", None, ftm_body, 401),
        ("GET", "/api/v1/orders/999999", ftm_key, None, 404),
        ("GET", "/api/v1/tryon/job_000000000000000000000000", fiv_key, None, 404),
        ("POST", "/api/v1/tryon", fiv_key, {"person_url": "nope"}, 400),
        ("POST", "/api/v1/tryon", fiv_key, {"person_url": "nope"}, 429),
        ("GET", "/no/such/route", None, None, 404),
        ("GET", "/admin/accounts/1", None, None, 401),
        ("GET", "/healthz", None, None, 200),
        ("GET", "/metrics", None, None, 200),
    ]
    seen: set[str] = set()
    for method, path, key, body, expected in calls:
        status, answer, headers = await gateway.request(method, path, key=key, json=body)
        assert status == expected, (method, path, status, answer)
        generated = request_id_of(headers)
        assert generated and generated.startswith("req_"), (path, headers)
        seen.add(generated)
    assert len(seen) == len(calls), "each request gets its own id"

    # a sane id is echoed as given; anything else is replaced
    status, _, headers = await gateway.request(
        "GET", "/api/v1/account", key=fiv_key, headers={"X-Request-Id": "client-abc_123:7"}
    )
    assert status == 200 and request_id_of(headers) == "client-abc_123:7"
    for insane in ("x" * 200, "has space", 'quote"d', ""):
        _, _, headers = await gateway.request("GET", "/healthz", headers={"X-Request-Id": insane})
        echoed = request_id_of(headers)
        assert echoed and echoed != insane and echoed.startswith("req_"), (insane, echoed)


async def test_a_500_carries_the_request_id_and_is_logged() -> None:
    """A handler that crashes: Litestar answers 500 inside; the id is still on the way out."""

    @get("/boom")
    async def boom() -> None:
        raise RuntimeError("boom")

    app = Litestar(route_handlers=[boom], debug=False)
    app.asgi_handler = RequestObservability(app.asgi_handler)
    with captured_logs() as logs:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            response = await client.get("/boom", headers={"X-Request-Id": "crash-1"})
    assert response.status_code == 500
    assert response.headers["x-request-id"] == "crash-1"
    lines = [event for event in logs.events() if event["event"] == "http.request"]
    assert lines == [lines[0]] and lines[0]["status"] == 500 and lines[0]["request_id"] == "crash-1"
    assert lines[0]["level"] == "error" and lines[0]["route"] == "/boom"


async def test_one_try_on_followed_from_request_to_worker_by_request_id(
    gateway: RunningGateway, image_host: ImageHost
) -> None:
    account_id, key = await gateway.account_with_key(credits=100)
    request_id = "follow-" + secrets.token_hex(6)
    body = {"person_url": image_host.url("/person.png"), "garment_urls": [image_host.url("/shirt.png")]}
    with captured_logs() as logs:
        status, job, headers = await gateway.request(
            "POST",
            "/api/v1/tryon",
            key=key,
            json={**body, "wait": False},
            headers={"X-Request-Id": request_id},
        )
        assert status == 200 and request_id_of(headers) == request_id, job
        await gateway.wait_for_status(job["job_id"], key, {"succeeded"})
        for _ in range(200):  # the worker logs its last line just after it announces the end
            if any(event.get("event") == "job.succeeded" for event in logs.events()):
                break
            await asyncio.sleep(0.05)

    mine = [event for event in logs.events() if event.get("request_id") == request_id]
    events = [event["event"] for event in mine]
    assert events[0] != "job.succeeded"
    for step in (
        "job.accepted",
        "http.request",
        "job.claimed",
        "job.generated",
        "job.quality_gate",
        "job.succeeded",
    ):
        assert step in events, (step, events)
    request_line = next(event for event in mine if event["event"] == "http.request")
    assert request_line["route"] == "/api/v1/tryon" and request_line["method"] == "POST"
    assert request_line["status"] == 200 and request_line["dialect"] == "fitinview"
    assert request_line["account_id"] == account_id
    assert key.startswith(request_line["key_prefix"].rstrip("…")) and request_line["key_prefix"] != key
    assert isinstance(request_line["duration_ms"], int | float)
    for event in mine:
        if event["event"].startswith("job."):
            assert event["job_id"] == job["job_id"] and event["account_id"] == account_id, event
            assert isinstance(event["order_id"], int)
    succeeded = next(event for event in mine if event["event"] == "job.succeeded")
    assert succeeded["status"] == "succeeded" and succeeded["level"] == "info"
    for event in logs.events():
        assert {"time", "level", "event", "logger"} <= set(event)
        assert event["time"].endswith("Z")

    # the worker's lines were written by another task than the request's
    worker_steps = [r for r in logs.records if getattr(r, "request_id", None) == request_id]
    assert {r.getMessage() for r in worker_steps} >= {"job.claimed", "job.succeeded"}


async def test_no_line_holds_a_key_token_or_secret(gateway: RunningGateway, image_host: ImageHost) -> None:
    with captured_logs() as logs:
        account_id, key = await gateway.account_with_key(credits=100)
        minted = await gateway.new_key(account_id, "live", name="second")
        status, _, _ = await gateway.request(
            "POST",
            "/api/v1/tryon",
            key=key,
            json={
                "person_url": image_host.url("/person.png"),
                "garment_urls": [image_host.url("/shirt.png")],
                "webhook_url": image_host.url("/status/500"),
            },
        )
        assert status == 200
        await gateway.request("GET", "/api/v1/account", key=key + "x")  # a wrong key is not logged either
        await gateway.request("GET", "/api/v1/account", headers={"Authorization": "Bearer " + "ab" * 32})
    secrets_seen = [
        key,
        key + "x",
        str(minted["key"]),
        str(minted["webhook_secret"]),
        gateway.settings.admin_token,
        gateway.settings.s3_secret_key,
        "ab" * 32,
    ]
    assert logs.lines, "nothing was logged"
    for line in logs.unredacted() + logs.lines:
        for secret in secrets_seen:
            assert secret not in line, line


def test_redaction_and_both_formats() -> None:
    fiv = "fiv_live_" + "A1b2C3d4E5f6G7h8J9k0L1m2"
    hexkey = "0123456789abcdef" * 4
    masked = redact(f"key {fiv} and {hexkey}, Bearer abc.def-ghi, whsec_{'x' * 30}, pi_1_secret_zz9")
    for leaked in (fiv, hexkey, "abc.def-ghi", "x" * 30, "zz9"):
        assert leaked not in masked
    assert "fiv_live_" in masked and "0123456789ab" in masked
    job_id = "job_" + "ab12" * 6
    assert redact(f"job {job_id} req_{'cd34' * 6}") == f"job {job_id} req_{'cd34' * 6}"

    record = logging.LogRecord("t", logging.INFO, __file__, 1, "job.succeeded", None, None)
    token = context.request_id.set("req-fmt")
    try:
        handler = make_handler("json", io.StringIO())
        for log_filter in handler.filters:
            log_filter.filter(record)  # type: ignore[union-attr]
    finally:
        context.request_id.reset(token)
    record.job_id = "job_1"
    record.duration_ms = 12
    line = json.loads(JsonFormatter().format(record))
    assert line["event"] == "job.succeeded" and line["request_id"] == "req-fmt" and line["job_id"] == "job_1"
    console = ConsoleFormatter().format(record)
    assert "INFO" in console and "job.succeeded" in console and "request_id=req-fmt" in console
    assert not console.startswith("{")


def test_the_session_wide_audit_knows_a_secret_from_an_id() -> None:
    """``tests/support/log_audit.py`` (a session-wide plugin) flags secrets and only secrets."""
    from tests.support.log_audit import SECRET, _Audit

    for secret in (
        "fiv_live_" + "A1b2C3d4E5f6G7h8J9k0L1m2",
        "whsec_" + "k" * 40,
        "adm_test_" + "0123456789abcdef",
        "Authorization: Bearer sometokenvalue123",
    ):
        assert SECRET.search(secret), secret
    for harmless in ("fiv_live_abc…", "job_" + "ab12" * 6, "req_" + "cd34" * 6, "evt_" + "ef56" * 6):
        assert not SECRET.search(harmless), harmless
    audit = _Audit()
    leaking = logging.LogRecord("t", logging.INFO, __file__, 1, "key %s", ("fiv_test_" + "Z9" * 12,), None)
    audit.emit(leaking)
    audit.emit(logging.LogRecord("t", logging.INFO, __file__, 1, "job.succeeded", None, None))
    assert len(audit.leaks) == 1 and "fiv_test_" in audit.leaks[0]

"""A local webhook receiver for tests: records every request and checks both signatures.

Each test registers an endpoint with the key's ``whsec_…`` secret and a script of
answers (``200``, ``500``, any status, ``"redirect"``, ``"hang"``, and the misbehaviours
``"drip_headers"``, ``"drip_body"``, ``"huge"``); the last answer repeats. Every request
is recorded (raw body, headers, arrival time) and its signatures are verified the way an
integrator would: v1 with the FitInView document's snippet, verbatim; v2 (``t=…,v1=…``)
over ``"{t}." + body``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

__all__ = ["Endpoint", "Received", "WebhookReceiver", "serve_webhook_receiver"]

Answer = int | str  # an HTTP status, "redirect" (302 to /redirected/…), "hang" or a misbehaviour:
# "drip_headers": the status line and headers one byte per DRIP_INTERVAL, never finished;
# "drip_body": a 200 whose body comes one byte per DRIP_INTERVAL, never finished;
# "huge": a 200 with a HUGE_BODY_BYTES body, streamed as fast as the sender reads it.
DRIP_INTERVAL = 0.5
HUGE_BODY_BYTES = 100 * 1024 * 1024


@dataclass
class Received:
    raw_body: bytes
    headers: dict[str, str]
    at: float
    """``time.monotonic()`` on arrival."""
    v1_ok: bool
    v2_ok: bool

    @property
    def json(self) -> Any:
        return json.loads(self.raw_body)


@dataclass
class Endpoint:
    token: str
    secret: str
    script: list[Answer]
    url: str
    requests: list[Received] = field(default_factory=list)
    redirect_followed: int = 0
    answered: int = 0
    """Requests whose answer ended (sent in full, or cut off by the sender going away)."""
    huge_bytes_sent: int = 0

    def next_answer(self) -> Answer:
        index = min(len(self.requests) - 1, len(self.script) - 1)
        return self.script[index]


def verify_v1(secret: str, raw_body: bytes, request: Any) -> bool:
    """The FitInView document's verification snippet, verbatim, as a yes/no."""
    try:
        expected = "sha256=" + hmac.new(secret.encode(), raw_body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(expected, request.headers["X-FitInView-Signature"])
    except (AssertionError, KeyError):
        return False
    return True


def verify_v2(secret: str, raw_body: bytes, headers: Any, tolerance_seconds: float = 300) -> bool:
    """The v2 check a replay-aware receiver does: HMAC of ``"{t}." + body`` and a recent ``t``."""
    try:
        parts = dict(item.split("=", 1) for item in headers["X-FitInView-Signature-V2"].split(","))
        signed = parts["t"].encode() + b"." + raw_body
        expected = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
        fresh = abs(time.time() - int(parts["t"])) < tolerance_seconds
        same_t = headers["X-FitInView-Timestamp"] == parts["t"]
        return hmac.compare_digest(expected, parts["v1"]) and fresh and same_t
    except (KeyError, ValueError):
        return False


class WebhookReceiver:
    def __init__(self, host: str, port: int, hang_seconds: float) -> None:
        self.host = host
        self.port = port
        self.host_port = f"{host}:{port}"
        self.base_url = f"http://{host}:{port}"
        self.hang_seconds = hang_seconds
        self.endpoints: dict[str, Endpoint] = {}

    def endpoint(
        self, secret: str, script: Sequence[Answer] = (200,), *, base_url: str | None = None
    ) -> Endpoint:
        """Register an endpoint; its ``url`` uses ``base_url`` (another name for this host) if given."""
        token = secrets.token_hex(6)
        url = f"{base_url or self.base_url}/hook/{token}"
        endpoint = Endpoint(token=token, secret=secret, script=list(script) or [200], url=url)
        self.endpoints[token] = endpoint
        return endpoint

    async def wait_for(self, endpoint: Endpoint, count: int, timeout: float = 20.0) -> list[Received]:
        """Wait until ``endpoint`` has received at least ``count`` requests; return them all."""
        deadline = time.monotonic() + timeout
        while len(endpoint.requests) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {count} webhook request(s), got {len(endpoint.requests)}")
            await asyncio.sleep(0.02)
        return list(endpoint.requests)


def _build_app(receiver: WebhookReceiver) -> web.Application:
    async def hook(request: web.Request) -> web.StreamResponse:
        endpoint = receiver.endpoints.get(request.match_info["token"])
        if endpoint is None:
            raise web.HTTPNotFound()
        raw_body = await request.read()
        endpoint.requests.append(
            Received(
                raw_body=raw_body,
                headers=dict(request.headers),
                at=time.monotonic(),
                v1_ok=verify_v1(endpoint.secret, raw_body, request),
                v2_ok=verify_v2(endpoint.secret, raw_body, request.headers),
            )
        )
        answer = endpoint.next_answer()
        try:
            return await _answer(receiver, endpoint, request, answer)
        finally:
            endpoint.answered += 1

    async def _answer(
        receiver: WebhookReceiver, endpoint: Endpoint, request: web.Request, answer: Answer
    ) -> web.StreamResponse:
        if answer in ("drip_headers", "drip_body", "huge"):
            return await _misbehave(endpoint, request, str(answer))
        if answer == "redirect":
            raise web.HTTPFound(f"/redirected/{endpoint.token}")
        if answer == "hang":
            await asyncio.sleep(receiver.hang_seconds)
            return web.Response(text="too late")
        assert isinstance(answer, int)
        return web.Response(status=answer, text=f"answer {answer} " + "x" * 4000)

    async def redirected(request: web.Request) -> web.StreamResponse:
        endpoint = receiver.endpoints.get(request.match_info["token"])
        if endpoint is not None:
            endpoint.redirect_followed += 1
        return web.Response(text="followed")

    async def _misbehave(endpoint: Endpoint, request: web.Request, answer: str) -> web.StreamResponse:
        if answer == "drip_headers":
            assert request.transport is not None
            for byte in b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Slow: " + b"y" * 10_000:
                if request.transport.is_closing():
                    break
                request.transport.write(bytes([byte]))
                await asyncio.sleep(DRIP_INTERVAL)
            raise asyncio.CancelledError  # the sender went away: drop the connection
        response = web.StreamResponse(status=200, headers={"Content-Type": "text/plain"})
        response.content_length = HUGE_BODY_BYTES if answer == "huge" else 10_000
        await response.prepare(request)
        try:
            if answer == "drip_body":
                for _ in range(10_000):
                    await response.write(b"x")
                    await asyncio.sleep(DRIP_INTERVAL)
            else:
                chunk = b"x" * (1024 * 1024)
                for _ in range(HUGE_BODY_BYTES // len(chunk)):
                    await response.write(chunk)
                    endpoint.huge_bytes_sent += len(chunk)
        except (ConnectionError, RuntimeError):  # the sender stopped reading and closed
            pass
        return response

    app = web.Application()
    app.router.add_route("*", "/hook/{token}", hook)
    app.router.add_route("*", "/redirected/{token}", redirected)
    return app


@asynccontextmanager
async def serve_webhook_receiver(hang_seconds: float = 5.0) -> AsyncIterator[WebhookReceiver]:
    """Run a receiver on 127.0.0.1 at a free port for the duration of the block."""
    receiver = WebhookReceiver("127.0.0.1", 0, hang_seconds)
    runner = web.AppRunner(
        _build_app(receiver), handler_cancellation=True, access_log=None, shutdown_timeout=1.0
    )
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    receiver.port = port
    receiver.host_port = f"127.0.0.1:{port}"
    receiver.base_url = f"http://127.0.0.1:{port}"
    try:
        yield receiver
    finally:
        await runner.cleanup()

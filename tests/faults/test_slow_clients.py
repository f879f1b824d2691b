"""Fault 8: slow clients against a ``serve`` process: slowloris requests whose headers, or whose
body, arrive one byte a second, and 500 connections that never send anything. Meanwhile a normal
client polling its job is served as usual (every poll answered 200, p99 under 200 ms), and once
they go away nothing is left behind.

Each of those connections costs the server a socket and a small buffer, not a thread, a database
connection or a Redis connection: nothing is taken from the pools before a request's headers are
complete, and a body is read only by the handler that needs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest

from tests.faults.fixtures_b import Deployment, deployment
from tests.support import services
from tests.support.image_host import ImageHost

pytestmark = pytest.mark.faults

IDLE_CONNECTIONS = 500
SLOW_HEADERS = 50
SLOW_BODIES = 50
BYTE_INTERVAL = 1.0
"""Seconds between two bytes of a slowloris client."""
POLLS = 200
P99_LIMIT_MS = 200


@pytest.fixture(scope="module")
async def server(
    http: aiohttp.ClientSession, redis_url: str, s3: services.S3Endpoint, image_host: ImageHost
) -> AsyncIterator[Deployment]:
    async with deployment(
        http,
        redis_url,
        s3,
        image_host,
        TRYON_READ_RATE_LIMIT_PER_MIN="10000",
        TRYON_RATE_LIMIT_PER_MIN="1000",
    ) as group:
        yield group
        await group.check_invariants()


class Attack:
    """Idle and slowloris connections to the server, held open until :meth:`stop`."""

    def __init__(self, port: int, key: str) -> None:
        self.port = port
        self.key = key
        self.writers: list[asyncio.StreamWriter] = []
        self.tasks: list[asyncio.Task[None]] = []
        self.closed_by_server = 0

    async def start(self) -> None:
        for _ in range(IDLE_CONNECTIONS):
            _, writer = await asyncio.open_connection("127.0.0.1", self.port)
            self.writers.append(writer)
        head = (
            f"GET /api/v1/tryon HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {self.key}\r\n"
            + "X-Padding: "
            + "p" * 4000
        ).encode()
        body_head = (
            f"POST /api/v1/tryon HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {self.key}\r\n"
            "Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{"
        ).encode()
        for _ in range(SLOW_HEADERS):
            self.tasks.append(asyncio.create_task(self._drip(b"", head)))
        for _ in range(SLOW_BODIES):
            self.tasks.append(asyncio.create_task(self._drip(body_head, b" " * 100_000)))

    async def _drip(self, at_once: bytes, slowly: bytes) -> None:
        _, writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.writers.append(writer)
        try:
            writer.write(at_once)
            for index in range(len(slowly)):
                writer.write(slowly[index : index + 1])
                await writer.drain()
                await asyncio.sleep(BYTE_INTERVAL)
        except ConnectionError:
            self.closed_by_server += 1

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        for writer in self.writers:
            writer.close()
        for writer in self.writers:
            with contextlib.suppress(Exception):
                await writer.wait_closed()


async def poll_latencies_ms(server: Deployment, job_id: str, key: str) -> list[float]:
    """``POLLS`` polls' latencies, after one unmeasured poll that (re)opens the client's connection."""
    await server.call("GET", f"/api/v1/tryon/{job_id}", key, timeout=30)
    latencies = []
    for _ in range(POLLS):
        started = time.perf_counter()
        status, body, _ = await server.call("GET", f"/api/v1/tryon/{job_id}", key, timeout=30)
        latencies.append((time.perf_counter() - started) * 1000)
        assert status == 200 and body["status"] == "succeeded", body
        await asyncio.sleep(0.02)
    return latencies


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98]


async def test_slowloris_and_idle_connections_do_not_starve_a_normal_client(server: Deployment) -> None:
    _, key, _ = await server.account(credits=100)
    status, job, _ = await server.call("POST", "/api/v1/tryon", key, server.tryon_request())
    assert status == 200 and job["status"] == "succeeded", job
    job_id = str(job["job_id"])
    calm = await poll_latencies_ms(server, job_id, key)

    _, attacker, _ = await server.account(credits=100)
    attack = Attack(server.port, attacker)
    try:
        await attack.start()
        await asyncio.sleep(2 * BYTE_INTERVAL)  # every slow client is mid-request
        loaded = await poll_latencies_ms(server, job_id, key)
        # a new try-on is accepted and runs too, beside 50 half-sent ones
        status, other, _ = await server.call("POST", "/api/v1/tryon", key, server.tryon_request())
        assert status == 200 and other["status"] == "succeeded", other
    finally:
        await attack.stop()
    print(
        f"poll latency ms: calm p50 {statistics.median(calm):.1f} p99 {p99(calm):.1f}; "
        f"under {IDLE_CONNECTIONS} idle + {SLOW_HEADERS} slow-header + {SLOW_BODIES} slow-body connections "
        f"p50 {statistics.median(loaded):.1f} p99 {p99(loaded):.1f} max {max(loaded):.1f}"
    )
    assert p99(loaded) < P99_LIMIT_MS, sorted(loaded)[-5:]

    # the server let go of them all and still answers
    status, body, _ = await server.call("GET", f"/api/v1/tryon/{job_id}", key)
    assert status == 200 and body["status"] == "succeeded"
    await server.check_money()

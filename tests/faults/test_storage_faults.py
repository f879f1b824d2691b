"""Fault 3: S3 unreachable or stalling, during a submit and during a job.

The gateway and the worker reach the session's SeaweedFS through a TCP proxy of the test's own, which
refuses connections (S3 down) or holds them open forwarding nothing (S3 hung). As DECISIONS.md says:

- a submit that can't store its inputs answers 503 with ``Retry-After`` (in each dialect's shape)
  before any charge, and leaves no job behind; a stalled S3 answers so within the S3 timeout, no hang;
- a job that can't read its inputs or store its result fails ``storage_failed`` and is refunded;
- once S3 is back, the same processes serve again.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import aiohttp
import pytest

from tests.faults.conftest import Stack, assert_unavailable, order_body, stack, tryon_body
from tests.support import services
from tests.support.image_host import ImageHost
from tests.support.tcp_proxy import TcpProxy

pytestmark = pytest.mark.faults

PRICE = 8


@pytest.fixture
async def s3_proxy(s3: services.S3Endpoint) -> AsyncIterator[TcpProxy]:
    parts = urlsplit(s3.endpoint)
    proxy = await TcpProxy(parts.hostname or "127.0.0.1", parts.port or 80).start()
    try:
        yield proxy
    finally:
        await proxy.close()


async def _submits_refused(deployment: Stack, fiv_key: str, ftm_key: str) -> float:
    """Both dialects' submits answer 503 with Retry-After; returns the longest wait for one."""
    longest = 0.0
    for path, key, body in (
        ("/api/v1/tryon", fiv_key, tryon_body(wait=False)),
        ("/api/v1/tryon", fiv_key, tryon_body()),
        ("/api/v1/generate", ftm_key, order_body()),
    ):
        started = time.monotonic()
        status, answer, headers = await deployment.call("POST", path, key, body, timeout=60)
        longest = max(longest, time.monotonic() - started)
        assert_unavailable(status, headers, answer, f"POST {path}")
    return longest


async def _job_ends(deployment: Stack, public_id: str, key: str) -> dict[str, object]:
    for _ in range(600):
        status, body, _ = await deployment.call("GET", f"/api/v1/tryon/{public_id}", key)
        assert status == 200, body
        if body["status"] in ("succeeded", "failed"):
            return dict(body)
        await asyncio.sleep(0.25)
    raise AssertionError(f"job {public_id} never ended")


async def test_storage_unreachable_or_stalling(
    http: aiohttp.ClientSession,
    image_host: ImageHost,
    fresh_database: str,
    redis_url: str,
    s3: services.S3Endpoint,
    s3_proxy: TcpProxy,
) -> None:
    proxied_s3 = services.S3Endpoint(
        endpoint=f"http://{s3_proxy.address}", access_key=s3.access_key, secret_key=s3.secret_key
    )
    async with stack(
        http,
        image_host,
        database_url=fresh_database,
        direct_database_url=fresh_database,
        redis_url=redis_url,
        s3=proxied_s3,
        TRYON_S3_TIMEOUT_SECONDS="2",
        TRYON_LOCAL_BACKEND_DELAY_SECONDS="2",
        TRYON_JOB_DEADLINE_SECONDS="120",
        TRYON_READ_RATE_LIMIT_PER_MIN="10000",
    ) as deployment:
        await deployment.start_serve()
        worker = deployment.start_worker(threads=2)
        fiv_account, fiv_key = await deployment.account(credits=1000)
        ftm_account, ftm_key = await deployment.account(credits=1000, dialect="ftmvai")

        # 1. during a submit: refused, then stalled: 503 before any charge, no job left behind
        await s3_proxy.refuse()
        refused_took = await _submits_refused(deployment, fiv_key, ftm_key)
        await s3_proxy.accept()
        s3_proxy.stall()
        stalled_took = await _submits_refused(deployment, fiv_key, ftm_key)
        s3_proxy.resume()
        assert await deployment.balance(fiv_account) == 1000
        assert await deployment.balance(ftm_account) == 1000
        assert await deployment.sql("SELECT id FROM jobs") == []

        # 2. during a job, storing its result: storage_failed, refunded
        status, submitted, _ = await deployment.call("POST", "/api/v1/tryon", fiv_key, tryon_body(wait=False))
        assert status == 200, submitted
        await deployment.wait_for(
            "SELECT 1 FROM jobs WHERE public_id = $1 AND stage = 'model_called'",
            submitted["job_id"],
            timeout=90,
            what="the job being generated",
        )
        await s3_proxy.refuse()
        storing = await _job_ends(deployment, submitted["job_id"], fiv_key)
        await s3_proxy.accept()
        assert storing["status"] == "failed", storing
        assert storing["error_code"] == "storage_failed", storing
        assert storing["error_message"] == "storing the result failed", storing
        assert storing["credits_refunded"] == PRICE, storing

        # 3. during a job, reading its inputs from a stalled S3: storage_failed, refunded
        worker.send_signal(signal.SIGTERM)
        await asyncio.to_thread(worker.wait, 30)
        status, submitted, _ = await deployment.call("POST", "/api/v1/tryon", fiv_key, tryon_body(wait=False))
        assert status == 200, submitted
        s3_proxy.stall()
        deployment.start_worker(threads=2)
        reading = await _job_ends(deployment, submitted["job_id"], fiv_key)
        s3_proxy.resume()
        assert reading["status"] == "failed", reading
        assert reading["error_code"] == "storage_failed", reading
        assert reading["error_message"] == "reading inputs failed", reading
        assert reading["credits_refunded"] == PRICE, reading

        # 4. S3 is back: the same processes serve again
        status, done, _ = await deployment.call("POST", "/api/v1/tryon", fiv_key, tryon_body())
        assert status == 200 and done["status"] == "succeeded", done
        assert await deployment.balance(fiv_account) == 1000 - PRICE

        await deployment.check_invariants(terminal_timeout=60)
        print(f"S3 refused: 503 within {refused_took:.2f}s; S3 stalled: 503 within {stalled_took:.2f}s")

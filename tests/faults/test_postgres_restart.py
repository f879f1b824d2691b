"""Fault 2: PostgreSQL restarted or stalled mid-traffic, as ``serve`` and ``worker`` see it.

Each process reaches the machine's PostgreSQL through a TCP proxy of the test's own (the server is
shared with other test runs and is never stopped). A "restart" drops every connection and refuses new
ones for a few seconds; a stall keeps connections open and forwards nothing. The gateway must:

- answer 503 with ``Retry-After`` meanwhile (never 500, never hang: every wait on the database is
  bounded, ``TRYON_DATABASE_*_TIMEOUT_SECONDS``), and serve again by itself once the database is back;
- fail and refund the jobs the outage cut off mid-run as soon as the database is back, not at their
  deadline (here five minutes away);
- charge a submit whose commit outcome it could not learn (the connection died right after COMMIT)
  exactly once when the client retries it with its Idempotency-Key, and run that job (the sweeper
  sends it: the request that created it never got to).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from urllib.parse import urlsplit

import aiohttp
import pytest

from tests.faults.conftest import ProxiedDatabase, Stack, assert_unavailable, order_body, stack, tryon_body
from tests.support import services
from tests.support.image_host import ImageHost
from tests.support.tcp_proxy import TcpProxy

pytestmark = pytest.mark.faults

PRICE = 8
DEADLINE = 300
"""``TRYON_JOB_DEADLINE_SECONDS``: far beyond the test, so only the fix can end cut-off jobs in time."""
OUTAGE_SECONDS = 3.0
"""How long the database stays down after the worker found it gone mid-job."""


@pytest.fixture
async def worker_proxy(proxied_database: ProxiedDatabase) -> AsyncIterator[TcpProxy]:
    """The worker's own way to the database (cut together with the API's for a restart)."""
    parts = urlsplit(proxied_database.direct_url)
    proxy = await TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432).start()
    try:
        yield proxy
    finally:
        await proxy.close()


async def _outage_answers(deployment: Stack, fiv_key: str, ftm_key: str, job_id: str) -> list[float]:
    """Every kind of call during the outage: each a 503 with Retry-After. Returns how long each took."""
    took: list[float] = []
    for method, path, key, body in (
        ("POST", "/api/v1/tryon", fiv_key, tryon_body(wait=False)),
        ("GET", f"/api/v1/tryon/{job_id}", fiv_key, None),
        ("GET", "/api/v1/account", fiv_key, None),
        ("POST", "/api/v1/generate", ftm_key, order_body()),
        ("GET", "/api/v1/account", ftm_key, None),
    ):
        started = time.monotonic()
        status, answer, headers = await deployment.call(method, path, key, body, timeout=60)
        took.append(time.monotonic() - started)
        assert_unavailable(status, headers, answer, f"{method} {path}")
    return took


async def test_postgres_restarted_and_stalled_mid_traffic(
    http: aiohttp.ClientSession,
    image_host: ImageHost,
    proxied_database: ProxiedDatabase,
    worker_proxy: TcpProxy,
    redis_url: str,
    s3: services.S3Endpoint,
) -> None:
    api_proxy = proxied_database.proxy
    async with stack(
        http,
        image_host,
        database_url=proxied_database.url,
        direct_database_url=proxied_database.direct_url,
        redis_url=redis_url,
        s3=s3,
        TRYON_LOCAL_BACKEND_DELAY_SECONDS="3",
        TRYON_JOB_DEADLINE_SECONDS=str(DEADLINE),
        TRYON_REQUEUE_AFTER_SECONDS="3",
        TRYON_DATABASE_ACQUIRE_TIMEOUT_SECONDS="2",
        TRYON_DATABASE_COMMAND_TIMEOUT_SECONDS="3",
        TRYON_READ_RATE_LIMIT_PER_MIN="10000",
    ) as deployment:
        await deployment.start_serve()
        deployment.start_worker(threads=2, TRYON_DATABASE_URL=proxied_database.via(worker_proxy))
        fiv_account, fiv_key = await deployment.account(credits=1000)
        _, ftm_key = await deployment.account(credits=1000, dialect="ftmvai")

        # 1. a restart while jobs are being generated ------------------------------------------
        submitted: list[str] = []
        for _ in range(3):
            status, body, _ = await deployment.call("POST", "/api/v1/tryon", fiv_key, tryon_body(wait=False))
            assert status == 200, body
            submitted.append(body["job_id"])
        running = await deployment.wait_for(
            "SELECT public_id FROM jobs WHERE status = 'running' AND stage = 'model_called'",
            timeout=90,
            what="a job being generated",
        )
        await api_proxy.refuse()
        await worker_proxy.refuse()
        took = await _outage_answers(deployment, fiv_key, ftm_key, submitted[0])
        # the database stays down until the generation ends and the worker finds it gone
        await deployment.wait_for_log(running[0]["public_id"], timeout=90)
        await asyncio.sleep(OUTAGE_SECONDS)
        await api_proxy.accept()
        await worker_proxy.accept()
        back = time.monotonic()
        back_at = datetime.now(UTC)

        # the pool recovers by itself; the jobs cut off end now, not at their deadline
        loop_deadline = back + 60
        while True:
            rows = await deployment.sql(
                "SELECT public_id, status, error_code, error_message, credits_refunded, completed_at"
                " FROM jobs WHERE public_id = ANY($1::text[])",
                submitted,
            )
            if all(row["status"] in ("succeeded", "failed") for row in rows):
                break
            assert time.monotonic() < loop_deadline, [dict(row) for row in rows]
            await asyncio.sleep(0.2)
        cut_off = [row for row in rows if row["status"] == "failed"]
        assert cut_off, ("the outage cut no job off", [dict(row) for row in rows])
        ended_after = max((row["completed_at"] - back_at).total_seconds() for row in cut_off)
        for row in cut_off:
            assert row["error_code"] == "internal_error", dict(row)
            assert row["credits_refunded"] == PRICE, dict(row)
        status, body, _ = await deployment.call("GET", f"/api/v1/tryon/{submitted[0]}", fiv_key)
        assert status == 200, body
        status, body, _ = await deployment.call("POST", "/api/v1/tryon", fiv_key, tryon_body())
        assert status == 200 and body["status"] == "succeeded", body

        # 2. a submit whose COMMIT reached the database but whose answer never came back --------
        balance_before = await deployment.balance(fiv_account)
        api_proxy.cut_after(b"COMMIT", down_for=3)
        idempotency = {"Idempotency-Key": "unknown-outcome-1"}
        body_sent = tryon_body(wait=False)
        status, first, headers = await deployment.call(
            "POST", "/api/v1/tryon", fiv_key, body_sent, headers=idempotency
        )
        assert_unavailable(status, headers, first, "the submit cut at its COMMIT")
        await asyncio.wait_for(api_proxy.cut_done.wait(), timeout=30)
        for _ in range(30):  # the client retries after Retry-After, with the same key
            status, retried, headers = await deployment.call(
                "POST", "/api/v1/tryon", fiv_key, body_sent, headers=idempotency
            )
            if status != 503:
                break
            await asyncio.sleep(1)
        assert status == 200, retried
        jobs = await deployment.sql(
            "SELECT j.public_id FROM jobs j JOIN idempotency_keys k ON k.job = j.id WHERE k.key = $1",
            "unknown-outcome-1",
        )
        assert [row["public_id"] for row in jobs] == [retried["job_id"]]
        assert await deployment.balance(fiv_account) == balance_before - PRICE
        await deployment.wait_for(
            "SELECT 1 FROM jobs WHERE public_id = $1 AND status = 'succeeded'",
            retried["job_id"],
            timeout=60,
            what="the job of the unknown commit, sent by the sweeper, succeeding",
        )

        # 3. a stalled database: 503 within the bounds, not a hang; then back by itself ---------
        api_proxy.stall()
        worker_proxy.stall()
        stalled = await _outage_answers(deployment, fiv_key, ftm_key, submitted[0])
        api_proxy.resume()
        worker_proxy.resume()
        for _ in range(60):
            status, body, _ = await deployment.call("GET", "/api/v1/account", fiv_key)
            if status == 200:
                break
            await asyncio.sleep(0.5)
        assert status == 200, body
        status, body, _ = await deployment.call("POST", "/api/v1/tryon", fiv_key, tryon_body())
        assert status == 200 and body["status"] == "succeeded", body

        await deployment.check_invariants(terminal_timeout=60)
        print(
            f"restart: 503s took {max(took):.2f}s at most; the last cut-off job ended"
            f" {ended_after:.1f}s after the database came back ({len(cut_off)} of {len(rows)});"
            f" stall: 503s took {max(stalled):.2f}s at most"
        )

"""Fault 1: Redis restarted (killed, empty on return) while clients submit, poll and hold sync waits.

A restart loses everything Redis held: queued messages, completion events in flight, rate-limit
counters, idempotency locks. The gateway must not lose anything that matters: held FitInView sync
waits still answer (a waiter whose event was lost is woken when the subscription returns, or reads
the job at its deadline), a job whose message was lost is re-sent by the sweeper, rate limits and
Idempotency-Key locks work again on the new Redis, and the only errors clients see meanwhile are
503s with ``Retry-After``. The gateway processes are never restarted.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from tests.faults.conftest import RedisServer, Stack, assert_unavailable, order_body, stack, tryon_body
from tests.support import services
from tests.support.image_host import ImageHost

pytestmark = pytest.mark.faults

SYNC_WAIT = 45
OUTAGE_SECONDS = 2.0


async def _submit_until_accepted(
    deployment: Stack, path: str, key: str, body: dict[str, Any], idempotency_key: str | None
) -> tuple[int, Any]:
    """A well-behaved client: on a 503 (nothing was charged) it waits Retry-After (capped) and sends
    the same request again, with the same Idempotency-Key."""
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    for _ in range(60):
        status, answer, response_headers = await deployment.call(
            "POST", path, key, body, headers=headers, timeout=SYNC_WAIT + 30
        )
        if status != 503:
            return status, answer
        assert_unavailable(status, response_headers, answer, f"POST {path}")
        await asyncio.sleep(min(int(response_headers["Retry-After"]), 1))
    raise AssertionError(f"POST {path} never accepted")


async def _poll_until_finished(deployment: Stack, path: str, key: str, field: str, done: set[str]) -> Any:
    for _ in range(360):
        status, answer, headers = await deployment.call("GET", path, key)
        if status == 503:
            assert_unavailable(status, headers, answer, f"GET {path}")
        else:
            assert status == 200, (path, status, answer)
            current = answer[field] if field else answer
            if current["status"] in done:
                return current
        await asyncio.sleep(0.5)
    raise AssertionError(f"{path} never finished")


async def test_redis_restarted_mid_traffic(
    http: aiohttp.ClientSession,
    image_host: ImageHost,
    fresh_database: str,
    own_redis: RedisServer,
    s3: services.S3Endpoint,
) -> None:
    async with stack(
        http,
        image_host,
        database_url=fresh_database,
        direct_database_url=fresh_database,
        redis_url=own_redis.url,
        s3=s3,
        TRYON_LOCAL_BACKEND_DELAY_SECONDS="1",
        TRYON_JOB_DEADLINE_SECONDS="120",
        TRYON_REQUEUE_AFTER_SECONDS="3",
        TRYON_SYNC_WAIT_SECONDS=str(SYNC_WAIT),
        TRYON_RATE_LIMIT_PER_MIN="1000",
        TRYON_READ_RATE_LIMIT_PER_MIN="10000",
    ) as deployment:
        await deployment.start_serve()
        deployment.start_worker(threads=2)
        _, fiv_key = await deployment.account(credits=1000)
        _, ftm_key = await deployment.account(credits=1000, dialect="ftmvai")

        async def sync_wait(index: int) -> Any:
            status, answer = await _submit_until_accepted(
                deployment, "/api/v1/tryon", fiv_key, tryon_body(), f"sync-{index}"
            )
            assert status == 200, answer
            return answer

        async def async_submit(index: int) -> Any:
            status, answer = await _submit_until_accepted(
                deployment, "/api/v1/tryon", fiv_key, tryon_body(wait=False), f"async-{index}"
            )
            assert status == 200, answer
            return await _poll_until_finished(
                deployment, f"/api/v1/tryon/{answer['job_id']}", fiv_key, "", {"succeeded", "failed"}
            )

        async def order() -> Any:
            status, answer = await _submit_until_accepted(
                deployment, "/api/v1/generate", ftm_key, order_body(), None
            )
            assert status == 202, answer
            return await _poll_until_finished(
                deployment, f"/api/v1/orders/{answer['order_id']}", ftm_key, "order", {"completed", "failed"}
            )

        traffic = [
            asyncio.create_task(call)
            for call in (
                *(sync_wait(index) for index in range(3)),
                *(async_submit(index) for index in range(4)),
                *(order() for _ in range(2)),
            )
        ]
        # restart Redis once jobs are running and sync waits are being held
        await deployment.wait_for(
            "SELECT 1 FROM jobs WHERE status = 'running'", timeout=60, what="a job running before the restart"
        )
        own_redis.kill()
        await asyncio.sleep(OUTAGE_SECONDS)
        own_redis.start()
        answers = await asyncio.gather(*traffic)

        # every held sync wait answered with its job, finished (the event may have been lost)
        for answer in answers[:3]:
            if answer["status"] not in ("succeeded", "failed"):  # its wait ran out: it polls on
                answer = await _poll_until_finished(
                    deployment, f"/api/v1/tryon/{answer['job_id']}", fiv_key, "", {"succeeded", "failed"}
                )
            assert answer["status"] == "succeeded", answer
        for answer in answers[3:7]:
            assert answer["status"] == "succeeded", answer
        for answer in answers[7:]:
            assert answer["status"] == "completed", answer

        # the new Redis works for everything again: rate limits count, Idempotency-Key locks hold
        client = aioredis.from_url(own_redis.url)
        try:
            namespace = deployment.env["TRYON_REDIS_NAMESPACE"]
            assert await client.keys(f"{namespace}:rl:*"), "no rate-limit counter on the new Redis"
        finally:
            await client.aclose()
        replay_key = "after-" + secrets.token_hex(4)
        body = tryon_body(wait=False)
        first, second = await asyncio.gather(
            deployment.call("POST", "/api/v1/tryon", fiv_key, body, headers={"Idempotency-Key": replay_key}),
            deployment.call("POST", "/api/v1/tryon", fiv_key, body, headers={"Idempotency-Key": replay_key}),
        )
        statuses = sorted([first[0], second[0]])
        assert statuses in ([200, 200], [200, 409]), (first, second)
        if statuses == [200, 200]:
            assert first[1]["job_id"] == second[1]["job_id"], (first, second)
        rows = await deployment.sql("SELECT count(*) AS n FROM idempotency_keys WHERE key = $1", replay_key)
        assert rows[0]["n"] == 1

        # no job lost: every accepted job ends, one debit each, refunds only for failures
        await deployment.check_invariants(terminal_timeout=90)
        counts = await deployment.sql("SELECT status, count(*) AS n FROM jobs GROUP BY status")
        assert {row["status"]: row["n"] for row in counts} == {"succeeded": 10}, counts

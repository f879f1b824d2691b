"""Fault 5: the worker process SIGKILLed mid-generation, again and again.

A killed worker leaves its claimed jobs ``running`` and its prefetched messages unacknowledged in
Redis. Nothing may come of that but a failure the contract refunds: the sweeper of the next worker
fails the orphaned jobs (``internal_error``, refunded) once they pass their deadline and re-sends the
jobs still ``queued``; a claim is a conditional UPDATE, so no job runs twice (``attempts`` stays 1)
and none is left ``running``.
"""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import aiohttp
import pytest

from tests.faults.conftest import stack, tryon_body
from tests.support import services
from tests.support.image_host import ImageHost

pytestmark = pytest.mark.faults

DEADLINE = 30
"""Long enough for a generation on a busy 2-core machine; the killed runs are expired after it."""
JOBS = 8
KILLS = 3
PRICE = 8


async def test_a_worker_killed_mid_generation_again_and_again(
    http: aiohttp.ClientSession,
    image_host: ImageHost,
    fresh_database: str,
    redis_url: str,
    s3: services.S3Endpoint,
) -> None:
    async with stack(
        http,
        image_host,
        database_url=fresh_database,
        direct_database_url=fresh_database,
        redis_url=redis_url,
        s3=s3,
        TRYON_LOCAL_BACKEND_DELAY_SECONDS="1",
        TRYON_JOB_DEADLINE_SECONDS=str(DEADLINE),
        TRYON_REQUEUE_AFTER_SECONDS="2",
    ) as deployment:
        await deployment.start_serve()
        account, key = await deployment.account(credits=1000)
        submitted: list[str] = []
        for _ in range(JOBS):
            status, body, _ = await deployment.call("POST", "/api/v1/tryon", key, tryon_body(wait=False))
            assert status == 200, body
            submitted.append(body["job_id"])

        killed_running: set[str] = set()
        for round_ in range(KILLS):
            worker = deployment.start_worker(threads=2)
            rows = await deployment.wait_for(  # a job this worker is generating (not a killed one)
                "SELECT public_id FROM jobs WHERE status = 'running' AND stage = 'model_called'"
                " AND public_id <> ALL($1::text[])",
                list(killed_running),
                timeout=90,
                what=f"round {round_}: the worker claiming a job",
            )
            worker.send_signal(signal.SIGKILL)
            worker.wait()
            still_running = await deployment.sql(  # not one that finished just before the kill
                "SELECT public_id FROM jobs WHERE status = 'running' AND public_id = ANY($1::text[])",
                [row["public_id"] for row in rows],
            )
            killed_running |= {row["public_id"] for row in still_running}

        # a healthy worker finishes the rest and its sweeper cleans up after the killed ones
        deployment.start_worker(threads=2)
        await deployment.check_invariants(terminal_timeout=DEADLINE * 3 + 60)

        jobs = {
            row["public_id"]: row
            for row in await deployment.sql(
                "SELECT public_id, status, error_code, error_message, attempts, credits_refunded, results"
                " FROM jobs"
            )
        }
        assert set(jobs) == set(submitted)
        # each job was claimed (run) at most once: a killed run is never started again
        assert all(row["attempts"] <= 1 for row in jobs.values()), jobs
        assert killed_running, "no job was running when a worker was killed"
        for public_id in killed_running:
            row = jobs[public_id]
            assert row["status"] == "failed", row
            assert row["error_code"] == "internal_error", row
            assert row["credits_refunded"] == PRICE, row
        succeeded = [row for row in jobs.values() if row["status"] == "succeeded"]
        assert succeeded, ("no job survived the kills", [dict(row) for row in jobs.values()])
        assert all(row["results"] not in (None, "[]") for row in succeeded), succeeded

        # clients see the same: every job ended, the failed ones refunded
        failed = 0
        for public_id in submitted:
            status, body, _ = await deployment.call("GET", f"/api/v1/tryon/{public_id}", key)
            assert status == 200 and body["status"] in ("succeeded", "failed"), body
            failed += body["status"] == "failed"
        expected: Any = 1000 - PRICE * (JOBS - failed)
        assert await deployment.balance(account) == expected
        deployment.assert_no_server_errors()
        await asyncio.sleep(0)

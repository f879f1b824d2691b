"""Fault 6: webhook receivers that hang, answer byte by byte (headers or body), send a 100 MB
body, or redirect, against ``serve`` and ``worker`` processes.

Every attempt costs bounded time (the webhook timeout) and bounded memory (only an excerpt of an
answer is read), a redirect is never followed, and no job is held up: the job whose webhook
misbehaves ends as soon as its result is stored, and other jobs keep running while receivers
hang, even when there are more hanging receivers than worker threads.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.faults.fixtures_b import Deployment, deployment, eventually
from tests.support import services
from tests.support.gateway import ADMIN_TOKEN
from tests.support.image_host import ImageHost
from tests.support.webhook_receiver import HUGE_BODY_BYTES, WebhookReceiver, serve_webhook_receiver

pytestmark = pytest.mark.faults

TIMEOUT = 10
"""``TRYON_WEBHOOK_TIMEOUT_SECONDS`` (the documented default)."""
EXCERPT_BYTES = 1024
THREADS = 2


@pytest.fixture(scope="module")
async def receiver() -> AsyncIterator[WebhookReceiver]:
    async with serve_webhook_receiver(hang_seconds=300) as running:
        yield running


@pytest.fixture(scope="module")
async def hooks(
    receiver: WebhookReceiver,
    http: aiohttp.ClientSession,
    redis_url: str,
    s3: services.S3Endpoint,
    image_host: ImageHost,
) -> AsyncIterator[Deployment]:
    async with deployment(
        http,
        redis_url,
        s3,
        image_host,
        worker_threads=THREADS,
        TRYON_OUTBOUND_ALLOW_HOSTS=f"{image_host.host_port},{receiver.host_port}",
        TRYON_WEBHOOK_TIMEOUT_SECONDS=str(TIMEOUT),
        TRYON_WEBHOOK_BACKOFF_SCALE="0.01",
        TRYON_SYNC_WAIT_SECONDS="60",
    ) as group:
        yield group
        await group.check_invariants()


async def recorded_attempt(hooks: Deployment, job_id: str, number: int = 1) -> dict[str, Any]:
    """Attempt ``number`` of the job's event, once recorded (at most the timeout, plus slack)."""

    async def attempt() -> dict[str, Any] | None:
        rows = await hooks.fetch(
            """SELECT e.public_id AS event, a.status_code, a.error, a.duration_ms,
                      length(a.response_excerpt) AS excerpt
               FROM webhook_attempts a JOIN webhook_events e ON e.id = a.event JOIN jobs j ON j.id = e.job
               WHERE j.public_id = $1 AND a.attempt = $2""",
            job_id,
            number,
        )
        return dict(rows[0]) if rows else None

    found: dict[str, Any] = await eventually(attempt, TIMEOUT + 30, f"webhook attempt {number} of {job_id}")
    return found


def rss_kib(pid: int) -> int:
    """The process's resident set size now (``VmRSS``), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def peak_rss_during(pid: int, until: Any) -> int:
    """The highest ``VmRSS`` of ``pid`` sampled every 20 ms until the awaitable ``until`` is done."""
    task = asyncio.ensure_future(until)
    peak = rss_kib(pid)
    while not task.done():
        peak = max(peak, rss_kib(pid))
        await asyncio.sleep(0.02)
    await task
    return peak


async def test_misbehaving_receivers_cost_bounded_time_and_memory_and_never_hold_up_their_job(
    hooks: Deployment, receiver: WebhookReceiver
) -> None:
    # test keys: the stock backend makes the jobs cheap; webhooks go out exactly the same way
    _, key, secret = await hooks.account(credits=100, mode="test")
    kinds = ["hang", "drip_headers", "drip_body", "huge", "redirect"]
    endpoints = {kind: receiver.endpoint(secret, [kind]) for kind in kinds}

    async def job_with(kind: str) -> str:
        status, answer, _ = await hooks.call(
            "POST", "/api/v1/tryon", key, hooks.tryon_request(webhook_url=endpoints[kind].url, wait=False)
        )
        assert status == 200, answer
        # the job ends with its result, whatever its receiver does with the webhook
        done = await hooks.wait_terminal(str(answer["job_id"]), key, timeout=120)
        assert done["status"] == "succeeded", done
        return str(answer["job_id"])

    jobs = dict(zip(kinds, await asyncio.gather(*(job_with(kind) for kind in kinds)), strict=True))
    attempts = {kind: await recorded_attempt(hooks, job) for kind, job in jobs.items()}

    for kind in ("hang", "drip_headers", "drip_body"):
        assert attempts[kind]["error"] == f"timed out after {TIMEOUT}s", attempts[kind]
        assert attempts[kind]["duration_ms"] <= (TIMEOUT + 5) * 1000, attempts[kind]
    # a 2xx with a huge body is delivered; only the excerpt was read, then the connection closed
    assert attempts["huge"]["status_code"] == 200 and attempts["huge"]["error"] is None, attempts["huge"]
    assert attempts["huge"]["excerpt"] <= EXCERPT_BYTES
    assert endpoints["huge"].huge_bytes_sent < HUGE_BODY_BYTES / 2
    # a redirect is a failed attempt, never followed
    assert attempts["redirect"]["status_code"] == 302, attempts["redirect"]
    assert attempts["redirect"]["error"] == "redirect not followed (HTTP 302)"
    assert endpoints["redirect"].redirect_followed == 0

    # memory: an ops re-send of the 100 MB answer, with the worker otherwise idle, watched closely
    worker = hooks.children[1].pid
    before = rss_kib(worker)
    status, resent, _ = await hooks.call(
        "POST", f"/admin/webhooks/{attempts['huge']['event']}/resend", ADMIN_TOKEN
    )
    assert status == 202, resent
    peak = await peak_rss_during(worker, recorded_attempt(hooks, jobs["huge"], resent["attempt"]))
    assert peak - before < 32 * 1024, f"the worker grew by {(peak - before) // 1024} MiB"
    await hooks.check_money()


async def test_more_hanging_receivers_than_worker_threads_do_not_hold_up_other_jobs(
    hooks: Deployment, receiver: WebhookReceiver
) -> None:
    _, key, secret = await hooks.account(credits=100, mode="test")
    hanging = receiver.endpoint(secret, ["hang"])
    for _ in range(THREADS + 2):
        status, answer, _ = await hooks.call(
            "POST", "/api/v1/tryon", key, hooks.tryon_request(webhook_url=hanging.url, wait=False)
        )
        assert status == 200, answer

    # more deliveries waiting on their receivers at once than the worker has threads: so none of
    # them holds a thread (a delivery made on a worker thread would allow at most THREADS)
    async def in_flight() -> bool:
        return len(hanging.requests) - hanging.answered > THREADS

    await eventually(in_flight, 120, f"more than {THREADS} deliveries in flight at once")
    status, probe, _ = await hooks.call("POST", "/api/v1/tryon", key, hooks.tryon_request())
    assert status == 200 and probe["status"] == "succeeded", probe
    (row,) = await hooks.fetch(
        "SELECT extract(epoch FROM started_at - created_at) AS queued FROM jobs WHERE public_id = $1",
        probe["job_id"],
    )
    assert row["queued"] < TIMEOUT, "the probe waited for a hanging delivery to time out"
    await hooks.check_money()

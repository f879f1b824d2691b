"""5,000 sync waits held by one ``serve`` process at once, then finished by a real worker: none is
lost (issue 10). Every request gets its 200 with its own succeeded job, and nothing is refused.

The time the answers take is the bench's business (``python -m bench --only waits``); this test
asserts only that the count and the answers are right. Requests are sent as fast as the gateway
accepts them (at most ``WINDOW`` not yet in the database), so the fill measures holding, not a
stampede of submits through the API's connection pool.
"""

from __future__ import annotations

import asyncio
import base64
import io
from collections import Counter
from typing import Any

import aiohttp
import asyncpg
from PIL import Image

from tests.gateway.test_processes import Processes, new_test_key, processes, wait_ready
from tests.support.gateway import free_port

__all__ = ["processes"]  # the fixture, shared with test_processes

WAITERS = 5000
WINDOW = 64
"""Requests sent but not yet accepted (no job row), at most."""


def _png_b64(colour: tuple[int, int, int]) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (128, 160), colour).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


async def _queued(connection: asyncpg.Connection) -> int:
    return int(await connection.fetchval("SELECT count(*) FROM jobs WHERE status = 'queued'"))


async def test_five_thousand_held_waits_are_each_answered_with_their_own_finished_job(
    processes: Processes, http: aiohttp.ClientSession
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    # Waits may be held for as long as the fill and the worker take on a slow machine; one key sends
    # them all, so its per-minute limit is lifted (the limit is tests/gateway/test_ratelimit.py's).
    serve = processes.start(
        "serve", "--port", str(port), TRYON_SYNC_WAIT_SECONDS="900", TRYON_RATE_LIMIT_PER_MIN="1000000"
    )
    await wait_ready(http, base, serve)
    key = await new_test_key(http, base, "Many")
    body = {
        "person_image_b64": _png_b64((200, 150, 120)),
        "garment_images_b64": [_png_b64((30, 60, 200))],
        "wait": True,
    }
    headers = {"Authorization": f"Bearer {key}"}
    database = await asyncpg.connect(processes.env["TRYON_DATABASE_URL"])
    # One connection per held request: no pool limit, no client timeout but the test's own.
    connector = aiohttp.TCPConnector(limit=0)
    unbounded = aiohttp.ClientTimeout(total=None)
    async with aiohttp.ClientSession(connector=connector, timeout=unbounded) as client:

        async def hold() -> tuple[int, Any]:
            async with client.post(base + "/api/v1/tryon", json=body, headers=headers) as response:
                return response.status, await response.json(content_type=None)

        try:
            # No worker yet: every job stays queued, so every request is held by its wait.
            held: list[asyncio.Task[tuple[int, Any]]] = []
            while len(held) < WAITERS:
                accepted = await _queued(database)
                early = [task for task in held if task.done()]
                assert not early, f"a wait answered before any job ran: {early[0].result()}"
                send = min(WAITERS - len(held), accepted + WINDOW - len(held))
                held.extend(asyncio.create_task(hold()) for _ in range(send))
                await asyncio.sleep(0.05)
            for _ in range(1200):  # the last window's jobs, 2 minutes at most
                if await _queued(database) == WAITERS:
                    break
                await asyncio.sleep(0.1)
            assert await _queued(database) == WAITERS
            await asyncio.sleep(0.5)  # the last requests are inside their waits
            assert not any(task.done() for task in held), "a wait answered before any job ran"

            processes.start("worker", "--processes", "1", "--threads", "4")
            answers = await asyncio.wait_for(asyncio.gather(*held), timeout=600)
        finally:
            for task in held:
                task.cancel()
            finished = await database.fetch("SELECT public_id, status FROM jobs")
            await database.close()

    statuses = Counter(status for status, _ in answers)
    assert statuses == {200: WAITERS}, f"not every held wait was answered 200: {statuses}"
    answered = [answer["job_id"] for _, answer in answers]
    assert len(set(answered)) == WAITERS, "two waits were answered with the same job"
    assert Counter(answer["status"] for _, answer in answers) == {"succeeded": WAITERS}
    assert all(answer["result_url"] for _, answer in answers)
    assert set(answered) == {row["public_id"] for row in finished}
    assert Counter(row["status"] for row in finished) == {"succeeded": WAITERS}

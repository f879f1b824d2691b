"""Sync waits are woken by events: many waiters, one subscription, no polling."""

from __future__ import annotations

import asyncio
import secrets
from collections import Counter

import redis.asyncio as aioredis

from engine.completion import CompletionHub, publish_finished


async def test_a_thousand_waiters_share_one_subscription_and_read_at_most_twice(redis_url: str) -> None:
    namespace = "tryon-hub-" + secrets.token_hex(4)
    redis = aioredis.from_url(redis_url)
    hub = CompletionHub(redis, namespace)
    await hub.start()
    finished: set[str] = set()
    reads: Counter[str] = Counter()
    ids = [f"job_{index}" for index in range(1000)]

    def reader(job_id: str):  # type: ignore[no-untyped-def]
        async def read() -> bool:
            reads[job_id] += 1
            return job_id in finished

        return read

    try:
        waiters = [
            asyncio.create_task(hub.wait_until(job_id, read=reader(job_id), is_finished=bool, timeout=30))
            for job_id in ids
        ]
        for _ in range(1000):
            if hub.waiting == len(ids):
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.3)  # a polling waiter would read again meanwhile
        assert all(reads[job_id] == 1 for job_id in ids)
        clients = await redis.pubsub_numsub(f"{namespace}:job-finished")
        assert clients[0][1] == 1
        for job_id in ids:
            finished.add(job_id)
            await publish_finished(redis, namespace, job_id)
        results = await asyncio.wait_for(asyncio.gather(*waiters), timeout=20)
        assert all(results)
        assert max(reads.values()) == 2
        assert hub.waiting == 0
    finally:
        await hub.close()
        await redis.aclose()


async def test_a_waiter_gives_up_after_its_timeout(redis_url: str) -> None:
    redis = aioredis.from_url(redis_url)
    hub = CompletionHub(redis, "tryon-hub-" + secrets.token_hex(4))
    await hub.start()
    try:
        loop = asyncio.get_running_loop()
        started = loop.time()

        async def never() -> bool:
            return False

        assert await hub.wait_until("job_x", read=never, is_finished=bool, timeout=0.3) is False
        assert 0.25 <= loop.time() - started < 5
    finally:
        await hub.close()
        await redis.aclose()


async def test_a_waiter_woken_with_a_payload_answers_from_it_without_reading(redis_url: str) -> None:
    namespace = "tryon-hub-" + secrets.token_hex(4)
    redis = aioredis.from_url(redis_url)
    hub = CompletionHub(redis, namespace)
    await hub.start()
    reads: Counter[str] = Counter()

    def reader(job_id: str):  # type: ignore[no-untyped-def]
        async def read() -> str:
            reads[job_id] += 1
            return "queued"

        return read

    def from_event(payload: bytes) -> str | None:
        return None if payload == b"garbage" else payload.decode()

    try:
        waiters = {
            job_id: asyncio.create_task(
                hub.wait_until(
                    job_id,
                    read=reader(job_id),
                    is_finished=lambda status: status != "queued",
                    timeout=3,
                    from_event=from_event,
                )
            )
            for job_id in ("job_a", "job_b", "job_c")
        }
        for _ in range(500):
            if hub.waiting == 3:
                break
            await asyncio.sleep(0.01)
        await publish_finished(redis, namespace, "job_a", b"succeeded")
        await publish_finished(redis, namespace, "job_b", b"garbage")  # unusable: falls back to a read
        await publish_finished(redis, namespace, "job_c")  # an older worker: the id alone
        assert await asyncio.wait_for(waiters["job_a"], timeout=5) == "succeeded"
        assert reads["job_a"] == 1, "answered from the event, not from a second read"
        # The other two re-read (still "queued") and keep waiting until their timeout.
        assert await asyncio.wait_for(waiters["job_b"], timeout=10) == "queued"
        assert await asyncio.wait_for(waiters["job_c"], timeout=10) == "queued"
        assert reads["job_b"] >= 2 and reads["job_c"] >= 2
    finally:
        await hub.close()
        await redis.aclose()

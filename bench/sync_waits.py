"""How much a held sync wait costs: completion events vs. polling the database.

FitInView clients may hold a request open for up to 90 s. The gateway wakes
waiting requests with one Redis pub/sub subscription per process
(:class:`engine.completion.CompletionHub`) instead of each request polling the
database. This measures both, in the same run, on the real services:
``N`` waiters hold for ``HOLD`` seconds, then every job finishes. It prints
database reads, CPU time and the time from "finished" to "every waiter
answered", for the polling baseline and for the hub, and their ratios.

    python bench/sync_waits.py [--waiters 2000] [--hold 3] [--poll-interval 0.5]

Needs PostgreSQL and Redis (``TRYON_TEST_PG_ADMIN_URL``, ``TRYON_TEST_REDIS_URL``,
defaults as in the tests).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import time

import asyncpg
import redis.asyncio as aioredis

from engine.completion import CompletionHub, publish_finished

PG_ADMIN_URL = os.environ.get("TRYON_TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("TRYON_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


class Counter:
    reads = 0


async def run(
    pool: asyncpg.Pool, table: str, waiters: int, hold: float, strategy: str, poll: float
) -> dict[str, float]:
    await pool.execute(f"UPDATE {table} SET done = false")
    counter = Counter()
    redis = aioredis.from_url(REDIS_URL)
    namespace = "bench-" + secrets.token_hex(4)
    hub = CompletionHub(redis, namespace)
    await hub.start()

    async def read(job_id: int) -> bool:
        counter.reads += 1
        return bool(await pool.fetchval(f"SELECT done FROM {table} WHERE id = $1", job_id))

    async def polling_waiter(job_id: int) -> float:
        while not await read(job_id):  # noqa: ASYNC110 - the polling baseline, on purpose
            await asyncio.sleep(poll)
        return time.perf_counter()

    async def event_waiter(job_id: int) -> float:
        await hub.wait_until(str(job_id), read=lambda: read(job_id), is_finished=bool, timeout=hold * 10)
        return time.perf_counter()

    waiter = polling_waiter if strategy == "polling" else event_waiter
    cpu_start = time.process_time()
    tasks = [asyncio.create_task(waiter(job_id)) for job_id in range(1, waiters + 1)]
    await asyncio.sleep(hold)
    finished_at = time.perf_counter()
    await pool.execute(f"UPDATE {table} SET done = true")
    for job_id in range(1, waiters + 1):
        await publish_finished(redis, namespace, str(job_id))
    answered = await asyncio.gather(*tasks)
    cpu = time.process_time() - cpu_start
    await hub.close()
    await redis.aclose()
    return {"reads": counter.reads, "cpu_s": cpu, "last_answer_s": max(answered) - finished_at}


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--waiters", type=int, default=2000)
    parser.add_argument("--hold", type=float, default=3.0)
    parser.add_argument("--poll-interval", type=float, default=0.5)
    args = parser.parse_args()

    database = "tryon_bench_" + secrets.token_hex(4)
    admin = await asyncpg.connect(PG_ADMIN_URL)
    await admin.execute(f'CREATE DATABASE "{database}"')
    url = PG_ADMIN_URL.rpartition("/")[0] + "/" + database
    pool = await asyncpg.create_pool(url, min_size=5, max_size=10)
    try:
        await pool.execute("CREATE TABLE jobs (id int PRIMARY KEY, done boolean NOT NULL DEFAULT false)")
        await pool.execute("INSERT INTO jobs (id) SELECT generate_series(1, $1)", args.waiters)
        baseline = await run(pool, "jobs", args.waiters, args.hold, "polling", args.poll_interval)
        events = await run(pool, "jobs", args.waiters, args.hold, "events", args.poll_interval)
    finally:
        await pool.close()
        await admin.execute(f'DROP DATABASE "{database}" WITH (FORCE)')
        await admin.close()

    print(f"{args.waiters} waiters held {args.hold:g} s (baseline polls every {args.poll_interval:g} s)")
    print(f"{'':16}{'polling':>12}{'events':>12}{'ratio':>10}")
    for name in ("reads", "cpu_s", "last_answer_s"):
        ratio = baseline[name] / events[name] if events[name] else float("inf")
        print(f"{name:16}{baseline[name]:12.3f}{events[name]:12.3f}{ratio:10.1f}x")


if __name__ == "__main__":
    asyncio.run(main())

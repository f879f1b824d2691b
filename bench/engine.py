"""Engine throughput: stock-backend jobs/s through ``tryon-gateway worker`` against a no-op actor.

``jobs`` FitInView test-key jobs are submitted over HTTP with no worker running (they wait,
queued), the API process is stopped, then one ``worker`` process (``threads`` threads) starts and
runs them all; the rate is ``jobs`` over the span from the first job's ``started_at`` to the last
one's ``completed_at`` (the database's own clock; the worker's start-up is not counted). The
ceiling is the same number of messages to :mod:`bench.noop_actor` on the same Redis, one process,
the same threads, timed the same way (first start to last end). The worker's sweeper is told not
to re-send older queued jobs (``TRYON_REQUEUE_AFTER_SECONDS``) and the queue is emptied first, so
only these jobs are counted.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import asyncpg
from dramatiq.brokers.redis import RedisBroker

from bench import noop_actor
from bench.processes import ROOT, Child, new_namespace, start_serve, start_worker
from bench.report import Run
from bench.world import World

TARGET = 0.3


async def _submit_many(base: str, key: str, body: str, count: int, concurrency: int = 16) -> list[str]:
    ids: list[str] = []
    queue = list(range(count))
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    async with aiohttp.ClientSession(base) as session:

        async def one() -> None:
            while queue:
                queue.pop()
                async with session.post("/api/v1/tryon", data=body, headers=headers) as response:
                    response.raise_for_status()
                    ids.append((await response.json())["job_id"])

        await asyncio.gather(*(one() for _ in range(concurrency)))
    return ids


async def _wait_finished(database_url: str, ids: list[str], timeout: float) -> tuple[float, int]:
    """(seconds from the first start to the last end, jobs that failed) once every job finished."""
    connection = await asyncpg.connect(database_url)
    try:
        deadline = time.monotonic() + timeout
        while True:
            row = await connection.fetchrow(
                """SELECT count(*) FILTER (WHERE status IN ('succeeded', 'failed')) AS finished,
                          count(*) FILTER (WHERE status = 'failed') AS failed,
                          EXTRACT(EPOCH FROM max(completed_at) - min(started_at)) AS span
                   FROM jobs WHERE public_id = ANY($1::text[])""",
                ids,
            )
            assert row is not None
            if row["finished"] == len(ids):
                return float(row["span"]), int(row["failed"])
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {row['finished']} of {len(ids)} jobs finished in {timeout:.0f} s")
            await asyncio.sleep(0.5)
    finally:
        await connection.close()


def _noop_rate(redis_url: str, jobs: int, threads: int, log_dir: Path) -> float:
    namespace = new_namespace()
    noop_actor.enqueue(redis_url, namespace, jobs)
    out = log_dir / f"noop-{namespace}.json"
    args = [sys.executable, "-m", "bench.noop_actor", redis_url, namespace, str(threads), str(jobs), str(out)]
    child = Child("noop-worker", args, {**os.environ, "PYTHONPATH": str(ROOT)}, log_dir / "noop.log")
    try:
        child.popen.wait(timeout=600)
    except subprocess.TimeoutExpired:
        child.stop()
        raise
    if not out.exists():
        raise child.failed_start("ended without counting every message")
    timing = json.loads(out.read_text())
    return float(jobs / (timing["last"] - timing["first"]))


def measure(
    run: Run,
    env: dict[str, str],
    world: World,
    bodies: dict[str, str],
    log_dir: Path,
    *,
    jobs: int,
    threads: int,
    database_url: str,
) -> None:
    broker = RedisBroker(url=env["TRYON_REDIS_URL"], namespace=env["TRYON_REDIS_NAMESPACE"])  # type: ignore[no-untyped-call]
    broker.flush("default")
    broker.close()
    serve, base = start_serve(env, log_dir, name="serve-engine")
    try:
        ids = asyncio.run(_submit_many(base, world.fitinview[-1].test_key, bodies["fitinview"], jobs))
    finally:
        serve.stop()
    worker = start_worker({**env, "TRYON_REQUEUE_AFTER_SECONDS": "86400"}, log_dir, threads=threads)
    try:
        span, failed = asyncio.run(_wait_finished(database_url, ids, timeout=60 + jobs))
    finally:
        worker.stop()
    stock = jobs / span
    noop = _noop_rate(env["TRYON_REDIS_URL"], jobs, threads, log_dir)
    note = f"{jobs} jobs, 1 process, {threads} threads"
    run.add(
        "engine", "stock jobs via worker", stock, "jobs/s", note + (f"; {failed} failed" if failed else "")
    )
    run.add("engine", "no-op Dramatiq actor", noop, "msgs/s", note)
    run.at_least("engine stock jobs/s / no-op actor", stock / noop, TARGET)

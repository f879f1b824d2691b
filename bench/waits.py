"""Held sync waits: memory per waiter, and how fast held waiters are answered when their jobs finish.

One ``tryon-gateway serve`` process (no worker, so jobs stay queued) is warmed up and its idle
resident memory read; then a separate load process (``python -m bench.waits client …``) opens
``waiters`` connections, each holding ``POST /api/v1/tryon`` with ``wait: true`` (test key, 256 px
base64 images), started at ``fill_rate`` per second (clients arrive over time; the default is
60 % of the run's own async-submit rate, so the fill measures holding, not a submit stampede
through a 10-connection pool). Once every job is in the database and held, the server's memory is read again
(the growth is the target), then jobs are finished the way a worker finishes them — the job row
becomes ``succeeded`` (its person input stands in as the result) and it is announced on the
completion channel as a worker announces it (the id, the job as committed and the balance: see
:mod:`engine.completion`):

* steady: 100 jobs per second, one every 10 ms, for ``steady_seconds``; each waiter's latency is
  the time from its job's commit to its answer arriving at the client;
* burst: every remaining job in one ``UPDATE``; each latency is from that commit.

Finishing jobs here rather than through a worker isolates the gateway's wake-up path (the worker's
own rate is :mod:`bench.engine`'s figure). The clock is the machine's wall clock, shared by both
processes. Sync waits are held up to ``TRYON_SYNC_WAIT_SECONDS`` = 900 s here, so the slowest fill
never times a waiter out. ``bench/sync_waits.py`` is the in-process comparison with polling.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import asyncpg
import msgspec
import redis.asyncio as aioredis

from bench.gateway_paths import http_json
from bench.processes import ROOT, Child, start_serve
from bench.report import Run
from bench.world import World
from engine.completion import channel_name
from engine.models import FinishedEvent
from engine.repository import job_record
from ledger.keys import hash_key

MEMORY_TARGET_MB = 250.0
BURST_P99_TARGET_MS = 1000.0
STEADY_P99_TARGET_MS = 50.0
STEADY_RATE = 100

FINISH = """UPDATE jobs SET status = 'succeeded', stage = 'done', progress = 100, started_at = now(),
                          completed_at = now(),
                          results = jsonb_build_array(jsonb_set(inputs -> 0, '{role}', '"result"')),
                          duration_ms = (EXTRACT(EPOCH FROM (now() - created_at)) * 1000)::int
            WHERE public_id = ANY($1::text[]) AND status = 'queued'
            RETURNING *, (SELECT balance FROM accounts WHERE accounts.id = jobs.account) AS balance_now"""


def _announcement(record: asyncpg.Record) -> bytes:
    """What a worker publishes after its finishing commit (``engine.execution._announce``): the id,
    then the job as committed and the balance, so a woken waiter answers without a database read."""
    row = dict(record)
    balance = row.pop("balance_now")
    job = job_record(row)
    return job.public_id.encode() + b"\n" + msgspec.json.encode(FinishedEvent(job=job, balance=balance))


# --- the load process ------------------------------------------------------------------------------


async def _hold(host: str, port: int, request: bytes, start_at: float) -> tuple[str, float, str]:
    """One held request, sent at ``start_at`` (loop time): (status, when the answer arrived, job id)."""
    await asyncio.sleep(max(0.0, start_at - asyncio.get_running_loop().time()))
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(request)
    await writer.drain()
    try:
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.decode("latin-1").split("\r\n")[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        body = await reader.readexactly(length)
        answered = time.time()
        status = head[9:12].decode()
        job_id = json.loads(body).get("job_id", "") if status == "200" else ""
        return status, answered, job_id
    except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
        return f"error: {type(exc).__name__}", time.time(), ""
    finally:
        writer.close()


async def _client(
    base_port: int, key: str, body: bytes, waiters: int, rate: float
) -> list[tuple[str, float, str]]:
    host = "127.0.0.1"
    request = (
        f"POST /api/v1/tryon HTTP/1.1\r\nHost: {host}:{base_port}\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body
    start = asyncio.get_running_loop().time()
    results = await asyncio.gather(
        *(_hold(host, base_port, request, start + index / rate) for index in range(waiters))
    )
    return results


def client_main(argv: list[str]) -> None:
    port, key, body_path, waiters, rate, out = argv
    results = asyncio.run(_client(int(port), key, Path(body_path).read_bytes(), int(waiters), float(rate)))
    Path(out).write_text(json.dumps([list(result) for result in results]))


# --- the orchestration --------------------------------------------------------------------------


def _percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def _held_jobs(
    connection: asyncpg.Connection, key: str, waiters: int, timeout: float, stalled_after: float = 20.0
) -> list[str]:
    """The held jobs' ids, once all ``waiters`` are in, or their number stopped growing (some failed)."""
    deadline = time.monotonic() + timeout
    last_count, last_growth = -1, time.monotonic()
    while True:
        rows = await connection.fetch(
            """SELECT j.public_id FROM jobs j JOIN api_keys k ON k.id = j.api_key
               WHERE k.key_hash = $1 AND j.status = 'queued' ORDER BY j.id""",
            hash_key(key),
        )
        if len(rows) != last_count:
            last_count, last_growth = len(rows), time.monotonic()
        if len(rows) >= waiters or (rows and time.monotonic() - last_growth > stalled_after):
            return [row["public_id"] for row in rows]
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {len(rows)} of {waiters} sync waits were accepted in {timeout:.0f} s")
        await asyncio.sleep(0.5)


async def _finish(
    database_url: str, redis_url: str, namespace: str, ids: list[str], steady: int
) -> tuple[dict[str, float], float, float]:
    """Finish ``steady`` jobs at 100/s, then the rest at once: (commit time per steady job, burst
    time, seconds the bench took to publish the burst's announcements)."""
    connection = await asyncpg.connect(database_url)
    redis = aioredis.from_url(redis_url)
    finished: dict[str, float] = {}
    try:
        started = time.perf_counter()
        channel = channel_name(namespace)
        for index, public_id in enumerate(ids[:steady]):
            await asyncio.sleep(max(0.0, started + index / STEADY_RATE - time.perf_counter()))
            records = await connection.fetch(FINISH, [public_id])
            finished[public_id] = time.time()
            for record in records:
                await redis.publish(channel, _announcement(record))
        rest = ids[steady:]
        await asyncio.sleep(1.0)
        records = await connection.fetch(FINISH, rest)
        burst = time.time()
        async with redis.pipeline(transaction=False) as pipe:
            for record in records:
                pipe.publish(channel, _announcement(record))
            await pipe.execute()
        published = time.time() - burst
    finally:
        await redis.aclose()
        await connection.close()
    return finished, burst, published


def _rss_mb(child: Child, samples: int = 5) -> float:
    values = []
    for _ in range(samples):
        values.append(child.rss_bytes() / 1024 / 1024)
        time.sleep(0.2)
    return statistics.median(values)


def measure(
    run: Run,
    env: dict[str, str],
    world: World,
    bodies: dict[str, str],
    log_dir: Path,
    *,
    waiters: int,
    fill_rate: float,
    quick: bool,
) -> None:
    body = json.loads(bodies["fitinview"])
    body["wait"] = True
    body_path = log_dir / "wait-body.json"
    body_path.write_text(json.dumps(body))
    key = world.fitinview[1].test_key
    serve_env = {**env, "TRYON_SYNC_WAIT_SECONDS": "900"}
    serve, base = start_serve(serve_env, log_dir, name="serve-waits")
    port = int(base.rsplit(":", 1)[1])
    out = log_dir / "waits-client.json"
    client: subprocess.Popen[bytes] | None = None
    try:
        # warm the paths a held wait takes (auth, images, S3, the job row) before reading idle memory
        warm_key = world.fitinview[2].test_key
        for _ in range(5):
            http_json("POST", base + "/api/v1/tryon", warm_key, bodies["fitinview"])
        time.sleep(1.0)
        idle = _rss_mb(serve)
        client = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.waits",
                "client",
                str(port),
                key,
                str(body_path),
                str(waiters),
                str(fill_rate),
                str(out),
            ],
            cwd=ROOT,
            env=env,
        )
        fill_started = time.monotonic()
        timeout = 120 + waiters / fill_rate * 2
        ids = asyncio.run(_wait_held(env["TRYON_DATABASE_URL"], key, waiters, timeout=timeout))
        fill_seconds = time.monotonic() - fill_started
        time.sleep(2.0)
        held = _rss_mb(serve)
        steady_count = min(len(ids) // 2, STEADY_RATE * (2 if quick else 10))
        finished, burst, published = asyncio.run(
            _finish(
                env["TRYON_DATABASE_URL"],
                env["TRYON_REDIS_URL"],
                env["TRYON_REDIS_NAMESPACE"],
                ids,
                steady_count,
            )
        )
        client.wait(timeout=120)
    finally:
        serve.stop()
        if client is not None and client.poll() is None:
            client.kill()
            client.wait()
    answers = json.loads(out.read_text())
    answered = {job_id: at for status, at, job_id in answers if status == "200" and job_id}
    failures = Counter(status for status, _, _ in answers if status != "200")
    steady_ms = [(answered[j] - at) * 1000 for j, at in finished.items() if j in answered]
    burst_ids = [j for j in ids if j not in finished]
    burst_ms = [(answered[j] - burst) * 1000 for j in burst_ids if j in answered]
    unanswered = len(ids) - len(steady_ms) - len(burst_ms)
    growth = held - idle
    note = (
        f"{len(ids)} of {waiters} waiters held; sent at {fill_rate:.0f}/s, all in after {fill_seconds:.0f} s"
    )
    if failures or unanswered:
        refused = ", ".join(f"{status}: {count}" for status, count in sorted(failures.items()))
        note += f"; not 200: {refused or 'none'}; {unanswered} held without an answer"
    run.add("waits", "RSS idle", idle, "MB")
    run.add("waits", "RSS holding waiters", held, "MB", note)
    run.add("waits", "RSS per waiter", growth * 1024 / max(len(ids), 1), "KB")
    run.add(
        "waits", f"steady {STEADY_RATE}/s p50", _percentile(steady_ms, 0.5), "ms", f"{len(steady_ms)} jobs"
    )
    run.add("waits", f"steady {STEADY_RATE}/s p99", _percentile(steady_ms, 0.99), "ms")
    run.add(
        "waits",
        "burst p50",
        _percentile(burst_ms, 0.5),
        "ms",
        f"{len(burst_ms)} jobs at once; the bench published them in {published * 1000:.0f} ms",
    )
    run.add("waits", "burst p99", _percentile(burst_ms, 0.99), "ms")
    run.add("waits", "burst last answer", max(burst_ms, default=float("nan")), "ms")
    run.at_most(f"memory growth holding {len(ids)} sync waits", growth, MEMORY_TARGET_MB, "MB")
    burst_p99 = _percentile(burst_ms, 0.99) if not unanswered else None  # someone never answered
    run.at_most("burst completion: every waiter answered, p99", burst_p99, BURST_P99_TARGET_MS, "ms")
    run.at_most(
        f"steady {STEADY_RATE} completions/s, p99", _percentile(steady_ms, 0.99), STEADY_P99_TARGET_MS, "ms"
    )


async def _wait_held(database_url: str, key: str, waiters: int, timeout: float) -> list[str]:
    connection = await asyncpg.connect(database_url)
    try:
        return await _held_jobs(connection, key, waiters, timeout)
    finally:
        await connection.close()


if __name__ == "__main__":
    if sys.argv[1:2] == ["client"]:
        client_main(sys.argv[2:])

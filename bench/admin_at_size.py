"""Ops' reads at size: 1,000,000 jobs and 2,000,000 ledger entries, each read under 100 ms at p95.

Creates its own database on the local PostgreSQL, applies the gateway's migrations, fills it
with ``generate_series`` (a few thousand accounts with a skewed size mix, like real customers:
the biggest has tens of thousands of jobs, most have a few hundred), runs ``ANALYZE``, then
times a few hundred calls of each admin read ops make all day:

* job search filtered by account and status (``GET /admin/jobs?account=&status=``),
* a job by its integer id and by its ``job_…`` id (``GET /admin/jobs/{id}``),
* an account's ledger page, first page and one deep in its history (``…/ledger?cursor=``),
* an account's usage over 30 days (``GET /admin/usage?account=&from=&to=``).

Each is measured twice: at the repository level (the exact service/repository call the route
makes, on one asyncpg pool) and over real HTTP against ``python -m gateway.cli serve`` started
on that database (``TRYON_ENGINE=local``; the S3 endpoint is never contacted by these routes, so
an unreachable one is given on purpose). It prints a table and a JSON line, and exits non-zero
when a p95 is 100 ms or more.

The fill writes rows straight into the tables with ``session_replication_role = replica``, which
skips the tables' triggers (the usage rollup's and the append-only guards) and foreign-key
checks for speed; the generated rows are consistent by construction (every entry's
``balance_after`` is the running sum per account, every job belongs to an account and its key),
and ``usage_daily`` is then filled with exactly what the triggers would have written.

    python bench/admin_at_size.py [--jobs 1000000] [--entries 2000000] [--accounts 3000]
                                  [--calls 300] [--no-http] [--keep] [--database NAME]

Needs PostgreSQL (``TRYON_TEST_PG_ADMIN_URL``, default postgres@127.0.0.1:5432, trust) and, for
the HTTP half, Redis (``TRYON_TEST_REDIS_URL``). Takes a few minutes, mostly the fill.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from engine.models import JobFilter
from engine.repository import JobRepository
from engine.usage import UsageQuery, usage_report
from gateway.migrations import ALL_MIGRATIONS
from ledger.database import Database, apply_migrations
from ledger.service import LedgerService
from ledger.statements import statement_page

PG_ADMIN_URL = os.environ.get("TRYON_TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("TRYON_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
TARGET_P95_MS = 100.0
ROOT = Path(__file__).resolve().parents[1]


# --- the fill -----------------------------------------------------------------------------------


def fill_statements(*, accounts: int, jobs: int, entries: int, days: int = 30) -> list[str]:
    """The SQL that fills a freshly migrated database (run in order, on one connection).

    Accounts are picked with ``1 + floor(A * random()^2)``: a few big customers and a long tail.
    """
    span = f"interval '{days} days'"
    return [
        "SET session_replication_role = replica",
        "SET work_mem = '256MB'",
        "SET maintenance_work_mem = '256MB'",
        "SELECT setseed(0.42)",
        f"""INSERT INTO accounts (name, dialect, plan, balance, email, created_at)
            SELECT 'Bench customer ' || i, CASE WHEN i % 3 = 0 THEN 'ftmvai' ELSE 'fitinview' END,
                   CASE WHEN i % 10 = 0 THEN 'free' ELSE 'paid' END, 0,
                   'ops' || i || '@example.com', now() - {span} - interval '1 day'
            FROM generate_series(1, {accounts}) i ORDER BY i""",
        # two keys per account, in order: the live key is 2a-1, the test key 2a
        """INSERT INTO api_keys (account, dialect, mode, name, key_hash, key_hint, created_at)
           SELECT a.id, a.dialect, m.mode, m.mode, md5(a.id || m.mode) || md5(m.mode || a.id),
                  'bench_' || a.id || '_' || m.mode, a.created_at
           FROM accounts a CROSS JOIN (VALUES (1, 'live'), (2, 'test')) m(n, mode)
           ORDER BY a.id, m.n""",
        f"""INSERT INTO jobs (public_id, account, api_key, dialect, kind, mode, backend, status, stage,
                              progress, error_code, error_message, cost_credits, credits_refunded,
                              created_at, started_at, completed_at, duration_ms)
            SELECT 'job_' || substr(md5(g.i::text), 1, 24), g.account,
                   2 * g.account - CASE WHEN g.test THEN 0 ELSE 1 END, a.dialect, 'tryon',
                   CASE WHEN g.test THEN 'test' ELSE 'live' END,
                   CASE WHEN g.test THEN 'stock' WHEN g.r < 0.5 THEN 'gemini' ELSE 'local' END,
                   g.status, CASE WHEN g.status = 'queued' THEN 'accepted' ELSE 'done' END,
                   CASE WHEN g.status IN ('succeeded', 'failed') THEN 100 ELSE 0 END,
                   CASE WHEN g.status = 'failed' THEN (ARRAY['generation_failed', 'content_blocked',
                        'internal_error', 'storage_failed'])[1 + (g.i % 4)] END,
                   CASE WHEN g.status = 'failed' THEN 'no_image' END,
                   g.cost, CASE WHEN g.status = 'failed' AND g.i % 4 <> 1 THEN g.cost ELSE 0 END,
                   g.at, CASE WHEN g.status <> 'queued' THEN g.at + interval '1 second' END,
                   CASE WHEN g.status IN ('succeeded', 'failed')
                        THEN g.at + make_interval(secs => 6 + 20 * g.r) END,
                   CASE WHEN g.status IN ('succeeded', 'failed') THEN (5000 + 20000 * g.r)::int END
            FROM (
                SELECT s.i, s.account, s.r, s.test, now() - {span} + s.i * ({span} / {jobs}) AS at,
                       CASE WHEN s.test THEN 0 WHEN s.account % 3 = 0 THEN 1 ELSE 12 END AS cost,
                       CASE WHEN s.i > {jobs} - 50 THEN 'queued' WHEN s.i > {jobs} - 150 THEN 'running'
                            WHEN s.r2 < 0.9 THEN 'succeeded' ELSE 'failed' END AS status
                FROM (SELECT i, 1 + floor({accounts} * power(random(), 2))::int AS account,
                             random() AS r, random() AS r2, random() < 0.1 AS test
                      FROM generate_series(1, {jobs}) i) s
            ) g JOIN accounts a ON a.id = g.account
            ORDER BY g.i""",
        # the ledger: an opening grant per account, a debit per charged job, a refund per refunded
        # failure, and top-ups (grants, purchases, adjustments) up to the wanted number of entries;
        # balance_after is the running sum per account, in time order
        f"""INSERT INTO ledger_entries (account, kind, amount, balance_after, job_id, reason, reference,
                                        created_at)
            SELECT account, kind, amount,
                   (SUM(amount) OVER (PARTITION BY account ORDER BY at, tiebreak))::int,
                   job_id, reason, reference, at
            FROM (
                SELECT id AS account, 'grant' AS kind, 1000000 AS amount, NULL::bigint AS job_id,
                       'opening balance' AS reason, NULL AS reference, created_at AS at, id AS tiebreak
                FROM accounts
                UNION ALL
                SELECT account, 'debit', -cost_credits, id, 'job submitted', NULL, created_at, id
                FROM jobs WHERE cost_credits > 0
                UNION ALL
                SELECT account, 'refund', credits_refunded, id, error_message, NULL, completed_at, id
                FROM jobs WHERE credits_refunded > 0
                UNION ALL
                SELECT t.account, t.kind, CASE t.kind WHEN 'adjust' THEN -1 ELSE 120 END, NULL,
                       'bench top-up', CASE WHEN t.kind = 'purchase' THEN 'pi:bench_' || t.k END,
                       now() - {span} + t.k * ({span} / GREATEST(t.n, 1)), t.k
                FROM (
                    SELECT k, n, 1 + floor({accounts} * power(random(), 2))::int AS account,
                           (ARRAY['grant', 'purchase', 'adjust'])[1 + k % 3] AS kind
                    FROM (SELECT GREATEST({entries} - (SELECT count(*) FROM accounts)
                                 - (SELECT count(*) FROM jobs WHERE cost_credits > 0)
                                 - (SELECT count(*) FROM jobs WHERE credits_refunded > 0), 0) AS n) c,
                         generate_series(1, c.n) k
                ) t
            ) s
            ORDER BY at, tiebreak""",
        """UPDATE accounts a SET balance = s.total
           FROM (SELECT account, SUM(amount) AS total FROM ledger_entries GROUP BY account) s
           WHERE s.account = a.id""",
        # exactly what the usage triggers would have written (engine_0003)
        """INSERT INTO usage_daily (day, account, dialect, backend, jobs_submitted, jobs_succeeded,
                                    jobs_failed, credits_debited, credits_refunded, credits_granted,
                                    credits_purchased, credits_adjusted, credits_reversed,
                                    generation_seconds)
           SELECT day, account, dialect, backend, SUM(submitted), SUM(succeeded), SUM(failed),
                  SUM(debited), SUM(refunded), SUM(granted), SUM(purchased), SUM(adjusted),
                  SUM(reversed), SUM(seconds)
           FROM (
               SELECT (created_at AT TIME ZONE 'UTC')::date AS day, account, dialect, backend,
                      1 AS submitted, 0 AS succeeded, 0 AS failed, 0 AS debited, 0 AS refunded,
                      0 AS granted, 0 AS purchased, 0 AS adjusted, 0 AS reversed, 0::float8 AS seconds
               FROM jobs
               UNION ALL
               SELECT (completed_at AT TIME ZONE 'UTC')::date, account, dialect, backend, 0,
                      (status = 'succeeded')::int, (status = 'failed')::int, 0, 0, 0, 0, 0, 0,
                      COALESCE(EXTRACT(EPOCH FROM (completed_at - started_at)), 0)
               FROM jobs WHERE status IN ('succeeded', 'failed')
               UNION ALL
               SELECT (e.created_at AT TIME ZONE 'UTC')::date, e.account, COALESCE(j.dialect, a.dialect),
                      COALESCE(j.backend, ''), 0, 0, 0,
                      CASE WHEN e.kind = 'debit' THEN -e.amount ELSE 0 END,
                      CASE WHEN e.kind = 'refund' THEN e.amount ELSE 0 END,
                      CASE WHEN e.kind = 'grant' THEN e.amount ELSE 0 END,
                      CASE WHEN e.kind = 'purchase' THEN e.amount ELSE 0 END,
                      CASE WHEN e.kind = 'adjust' THEN e.amount ELSE 0 END,
                      CASE WHEN e.kind = 'reversal' THEN -e.amount ELSE 0 END, 0
               FROM ledger_entries e JOIN accounts a ON a.id = e.account LEFT JOIN jobs j ON j.id = e.job_id
           ) s
           GROUP BY day, account, dialect, backend""",
        # the jobs_count trigger keeps these (engine/history_indexes.py); triggers are off here
        """INSERT INTO job_counts (api_key, account, jobs)
           SELECT api_key, account, count(*) FROM jobs GROUP BY api_key, account""",
        "SET session_replication_role = DEFAULT",
    ]


async def create_database(prefix: str = "tryon_bench_") -> tuple[str, str]:
    name = prefix + secrets.token_hex(4)
    connection = await asyncpg.connect(PG_ADMIN_URL)
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    base, _, _ = PG_ADMIN_URL.rpartition("/")
    url = f"{base}/{name}"
    await apply_migrations(url, ALL_MIGRATIONS)
    return name, url


async def drop_database(name: str) -> None:
    connection = await asyncpg.connect(PG_ADMIN_URL)
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


async def fill(url: str, *, accounts: int, jobs: int, entries: int, log: bool = True) -> dict[str, int]:
    """Fill and ANALYZE; returns the row counts."""
    connection = await asyncpg.connect(url)
    try:
        for statement in fill_statements(accounts=accounts, jobs=jobs, entries=entries):
            started = time.perf_counter()
            await connection.execute(statement)
            if log and not statement.startswith(("SET", "SELECT setseed")):
                first = " ".join(statement.split()[:3])
                print(f"  {first} … {time.perf_counter() - started:.1f} s", flush=True)
        await connection.execute("ANALYZE")
    finally:
        await connection.close()
    return await row_counts(url)


async def row_counts(url: str) -> dict[str, int]:
    connection = await asyncpg.connect(url)
    try:
        return {
            table: int(await connection.fetchval(f"SELECT count(*) FROM {table}"))
            for table in ("accounts", "api_keys", "jobs", "ledger_entries", "usage_daily")
        }
    finally:
        await connection.close()


# --- measuring ----------------------------------------------------------------------------------


class Sample:
    """What the calls will ask about: accounts (biggest first), statuses, job ids, cursors."""

    def __init__(self, rows: dict[str, Any], seed: int = 7) -> None:
        self.random = random.Random(seed)
        self.accounts: list[int] = rows["accounts"]
        self.jobs: list[tuple[int, str]] = rows["jobs"]
        self.deep_cursors: dict[int, int] = rows["deep_cursors"]

    def account(self) -> int:
        # a quarter of the calls ask about one of the ten biggest customers, the rest anyone
        if self.random.random() < 0.25:
            return self.random.choice(self.accounts[:10])
        return self.random.choice(self.accounts)

    def status(self) -> str:
        return self.random.choice(("succeeded", "failed", "failed", "queued", "running"))

    def job(self) -> tuple[int, str]:
        return self.random.choice(self.jobs)


async def sample_rows(db: Database) -> dict[str, Any]:
    accounts = [
        int(row["account"])
        for row in await db.fetch(
            "SELECT account, count(*) AS n FROM jobs GROUP BY account ORDER BY n DESC, account"
        )
    ]
    jobs = [
        (int(row["id"]), str(row["public_id"]))
        for row in await db.fetch("SELECT id, public_id FROM jobs TABLESAMPLE SYSTEM (1) LIMIT 2000")
    ]
    deep = {
        int(row["account"]): int(row["mid"])
        for row in await db.fetch(
            """SELECT account, percentile_disc(0.5) WITHIN GROUP (ORDER BY id) AS mid
               FROM ledger_entries WHERE account = ANY($1::bigint[]) GROUP BY account""",
            accounts[:50],
        )
    }
    return {"accounts": accounts, "jobs": jobs, "deep_cursors": deep}


def percentiles(timings: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(timings, n=100, method="inclusive")
    return {
        "p50": round(cuts[49], 2),
        "p95": round(cuts[94], 2),
        "p99": round(cuts[98], 2),
        "max": round(max(timings), 2),
        "calls": len(timings),
    }


async def timed(call: Callable[[], Awaitable[Any]], calls: int, warmup: int = 10) -> dict[str, float]:
    for _ in range(warmup):
        await call()
    timings = []
    for _ in range(calls):
        started = time.perf_counter()
        await call()
        timings.append((time.perf_counter() - started) * 1000)
    return percentiles(timings)


def today_window() -> tuple[str, str]:
    today = datetime.now(UTC).date()
    return str(today - timedelta(days=29)), str(today)


async def measure_repository(url: str, sample: Sample, calls: int) -> dict[str, dict[str, float]]:
    db = Database(url, max_pool=4)
    await db.start()
    jobs, ledger = JobRepository(db), LedgerService(db)
    first, last = today_window()
    try:
        results: dict[str, dict[str, float]] = {}

        async def search() -> None:
            await jobs.search(JobFilter(account=sample.account(), status=sample.status(), limit=51))

        async def by_id() -> None:
            assert await jobs.get(sample.job()[0]) is not None

        async def by_public_id() -> None:
            assert await jobs.by_public_id(sample.job()[1]) is not None

        async def ledger_page() -> None:
            await statement_page(ledger, sample.account(), kind=None, before_id=None, limit=50)

        async def ledger_deep() -> None:
            account = sample.random.choice(list(sample.deep_cursors))
            await statement_page(ledger, account, kind=None, before_id=sample.deep_cursors[account], limit=50)

        async def usage() -> None:
            await usage_report(
                db,
                UsageQuery(
                    account_id=sample.account(),
                    first_day=datetime.fromisoformat(first).date(),
                    last_day=datetime.fromisoformat(last).date(),
                ),
            )

        for name, call in (
            ("job search (account+status)", search),
            ("job by id", by_id),
            ("job by public id", by_public_id),
            ("ledger page (newest)", ledger_page),
            ("ledger page (deep cursor)", ledger_deep),
            ("usage, one account, 30 days", usage),
        ):
            results[name] = await timed(call, calls)
        return results
    finally:
        await db.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_gateway(
    url: str, token: str, port: int, *, extra_env: dict[str, str] | None = None, log: Path | None = None
) -> subprocess.Popen[bytes]:
    """``serve`` on ``url``; ``extra_env`` overrides settings (e.g. a real S3), ``log`` takes its stderr."""
    env = (
        os.environ
        | {
            "TRYON_DATABASE_URL": url,
            "TRYON_REDIS_URL": REDIS_URL,
            "TRYON_REDIS_NAMESPACE": "tryon-bench-" + secrets.token_hex(4),
            "TRYON_ENGINE": "local",
            "TRYON_ADMIN_TOKEN": token,
            "TRYON_S3_ENDPOINT": "http://127.0.0.1:9",  # never contacted by these routes
            "TRYON_LOG_LEVEL": "warning",
            "PYTHONPATH": str(ROOT),
        }
        | (extra_env or {})
    )
    return subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "serve", "--port", str(port)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=None if log is None else log.open("ab"),
    )


async def measure_http(url: str, sample: Sample, calls: int) -> dict[str, dict[str, float]] | str:
    token = "adm_bench_" + secrets.token_hex(8)
    port = free_port()
    process = start_gateway(url, token, port)
    base = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {token}"}
    first, last = today_window()
    try:
        async with aiohttp.ClientSession(headers=headers, timeout=aiohttp.ClientTimeout(total=30)) as http:
            for _ in range(300):
                if process.poll() is not None:
                    return f"the gateway exited with {process.returncode}"
                try:
                    async with http.get(base + "/healthz") as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
            else:
                return "the gateway did not start within 30 s"

            async def get(path: str) -> None:
                async with http.get(base + path) as response:
                    await response.read()
                    assert response.status == 200, (path, response.status)

            routes: list[tuple[str, Callable[[], str]]] = [
                (
                    "job search (account+status)",
                    lambda: f"/admin/jobs?account={sample.account()}&status={sample.status()}&limit=50",
                ),
                ("job by id", lambda: f"/admin/jobs/{sample.job()[0]}"),
                ("job by public id", lambda: f"/admin/jobs/{sample.job()[1]}"),
                ("ledger page (newest)", lambda: f"/admin/accounts/{sample.account()}/ledger?limit=50"),
                ("ledger page (deep cursor)", lambda: deep_path(sample)),
                (
                    "usage, one account, 30 days",
                    lambda: f"/admin/usage?account={sample.account()}&from={first}&to={last}",
                ),
            ]
            results: dict[str, dict[str, float]] = {}
            for name, path in routes:

                async def call(make: Callable[[], str] = path) -> None:
                    await get(make())

                results[name] = await timed(call, calls)
            return results
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


def deep_path(sample: Sample) -> str:
    account = sample.random.choice(list(sample.deep_cursors))
    return f"/admin/accounts/{account}/ledger?limit=50&cursor={sample.deep_cursors[account]}"


def table(title: str, results: dict[str, dict[str, float]]) -> str:
    lines = [title, f"  {'read':<30} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'max ms':>8}  calls"]
    for name, figures in results.items():
        mark = "" if figures["p95"] < TARGET_P95_MS else "  <-- over 100 ms"
        lines.append(
            f"  {name:<30} {figures['p50']:>8.2f} {figures['p95']:>8.2f} {figures['p99']:>8.2f}"
            f" {figures['max']:>8.2f}  {int(figures['calls'])}{mark}"
        )
    return "\n".join(lines)


async def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--entries", type=int, default=2_000_000)
    parser.add_argument("--accounts", type=int, default=3000)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--no-http", action="store_true", help="only the repository-level figures")
    parser.add_argument("--keep", action="store_true", help="keep the database (its name is printed)")
    parser.add_argument("--database", help="measure an already filled database (a --keep run's) again")
    args = parser.parse_args()

    if args.database:
        name, url = args.database, PG_ADMIN_URL.rpartition("/")[0] + "/" + args.database
        args.keep = True
    else:
        name, url = await create_database()
        print(f"database {name}: filling {args.jobs:,} jobs, {args.entries:,} entries", end="")
        print(f", {args.accounts:,} accounts", flush=True)
    started = time.perf_counter()
    try:
        if args.database:
            counts = await row_counts(url)
        else:
            counts = await fill(url, accounts=args.accounts, jobs=args.jobs, entries=args.entries)
        fill_seconds = time.perf_counter() - started
        done = "reusing it" if args.database else f"filled in {fill_seconds:.0f} s"
        print(f"{done}: " + ", ".join(f"{k} {v:,}" for k, v in counts.items()))
        db = Database(url)
        await db.start()
        try:
            sample = Sample(await sample_rows(db))
        finally:
            await db.close()
        biggest = sample.accounts[0]
        print(f"biggest account: {biggest}; accounts with jobs: {len(sample.accounts):,}")

        repository = await measure_repository(url, sample, args.calls)
        print(
            table("repository level (the route's own service/repository call, one asyncpg pool)", repository)
        )
        http: dict[str, dict[str, float]] | str = "skipped (--no-http)"
        if not args.no_http:
            sample.random.seed(7)
            http = await measure_http(url, sample, args.calls)
            if isinstance(http, str):
                print(f"over HTTP: {http}")
            else:
                print(table("over HTTP (python -m gateway.cli serve, one process)", http))
        report = {
            "rows": counts,
            "fill_seconds": round(fill_seconds),
            "target_p95_ms": TARGET_P95_MS,
            "repository": repository,
            "http": http,
            "load_average": os.getloadavg(),
            "cpus": os.cpu_count(),
        }
        print(json.dumps(report))
        worst = [f["p95"] for f in repository.values()]
        if isinstance(http, dict):
            worst += [f["p95"] for f in http.values()]
        return 0 if max(worst) < TARGET_P95_MS else 1
    finally:
        if args.keep:
            print(f"kept database {name}: {url}")
        else:
            await drop_database(name)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))

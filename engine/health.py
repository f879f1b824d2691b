"""What ops need to know is wrong: services, the scheduled ledger check, the queue, retention.

The ledger check (``engine.audit.verify_all``, what ``tryon-gateway ledger verify`` runs) also
runs on a schedule: the sweeper calls :func:`check_ledger_if_due`, which runs it at most once per
``ledger_verify_interval_seconds`` across all workers and keeps each result in ``ledger_checks``.
``/readyz`` never looks at it (a money bug must not take the API out of the load balancer);
``GET /admin/health`` (:func:`health_report`) shows the newest result, loudly.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable
from datetime import datetime
from typing import Any, Literal

import msgspec

from engine import audit, metrics, retention
from engine.runtime import Runtime
from ledger.database import Database

log = logging.getLogger(__name__)

LEDGER_CHECK_LOCK = 72710002
"""The advisory lock key one scheduled ledger check holds (migrations use 72710001)."""
MAX_PROBLEMS_KEPT = 1000
PROBLEMS_SHOWN = 50
PROBE_TIMEOUT_SECONDS = 3.0


class LedgerCheck(msgspec.Struct, frozen=True, kw_only=True):
    ok: bool
    problems: list[str]
    checked_at: datetime


class LedgerCheckRepository:
    """The queries on ``ledger_checks``."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def try_lock(self) -> bool:
        """Take the check's advisory lock for this transaction, without waiting for it."""
        row = await self.db.fetchrow("SELECT pg_try_advisory_xact_lock($1) AS got", LEDGER_CHECK_LOCK)
        return bool(row and row["got"])

    async def due(self, interval_seconds: float) -> bool:
        row = await self.db.fetchrow(
            """SELECT NOT EXISTS (SELECT 1 FROM ledger_checks
                                  WHERE checked_at > now() - make_interval(secs => $1)) AS due""",
            interval_seconds,
        )
        return bool(row and row["due"])

    async def record(self, problems: list[str]) -> LedgerCheck:
        kept = problems[:MAX_PROBLEMS_KEPT]
        if len(problems) > MAX_PROBLEMS_KEPT:
            kept.append(f"… and {len(problems) - MAX_PROBLEMS_KEPT} more")
        row = await self.db.fetchrow(
            """INSERT INTO ledger_checks (ok, problems) VALUES ($1, $2::jsonb)
               RETURNING ok, problems, checked_at""",
            not problems,
            json.dumps(kept),
        )
        assert row is not None
        return _check(row)

    async def newest(self) -> LedgerCheck | None:
        row = await self.db.fetchrow(
            "SELECT ok, problems, checked_at FROM ledger_checks ORDER BY id DESC LIMIT 1"
        )
        return None if row is None else _check(row)


def _check(row: dict[str, Any]) -> LedgerCheck:
    problems = row["problems"]
    if isinstance(problems, str):
        problems = json.loads(problems)
    return LedgerCheck(
        ok=bool(row["ok"]), problems=[str(item) for item in problems], checked_at=row["checked_at"]
    )


async def check_ledger_if_due(runtime: Runtime) -> LedgerCheck | None:
    """Run and record the ledger check if none was recorded within the interval (else None).

    One transaction: an advisory lock that other workers don't wait for (they skip), the age
    of the newest recorded check, the check itself and its record. It runs at REPEATABLE READ
    so every query of the check sees the same snapshot: a credit movement committing while the
    check runs can't make a balance and its entries look apart.
    """
    checks = LedgerCheckRepository(runtime.db)
    async with runtime.db.transaction():
        await runtime.db.fetch("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        if not await checks.try_lock():
            return None
        if not await checks.due(runtime.config.ledger_verify_interval_seconds):
            return None
        problems = await audit.verify_all(runtime)
        result = await checks.record(problems)
    if problems:
        log.error(
            "scheduled ledger check found %d problem(s): %s",
            len(problems),
            "; ".join(problems[:5]),
            extra={"ledger_problems": len(problems)},
        )
    return result


# the report ---------------------------------------------------------------------------------
class LedgerHealth(msgspec.Struct, frozen=True, kw_only=True):
    status: Literal["ok", "violation", "unchecked", "unknown"]
    """``violation``: the newest check found problems; ``unchecked``: none has run yet;
    ``unknown``: the database did not answer."""
    problems: list[str]
    problem_count: int
    checked_at: datetime | None
    interval_seconds: float


class QueueHealth(msgspec.Struct, frozen=True, kw_only=True):
    queued: int
    running: int
    oldest_queued_at: datetime | None
    oldest_queued_seconds: float | None


class RetentionHealth(msgspec.Struct, frozen=True, kw_only=True):
    days: float
    interval_seconds: float
    last_run: retention.PurgeReport | None


class HealthReport(msgspec.Struct, frozen=True, kw_only=True):
    status: Literal["ok", "degraded"]
    """``degraded`` when a service is unavailable or the newest ledger check found a violation."""
    services: dict[str, str]
    ledger: LedgerHealth
    queue: QueueHealth | None
    retention: RetentionHealth


async def _probe(probe: Awaitable[Any]) -> str:
    try:
        await asyncio.wait_for(probe, timeout=PROBE_TIMEOUT_SECONDS)
    except Exception as exc:
        return f"unavailable: {type(exc).__name__}"
    return "ok"


async def _ledger(runtime: Runtime, checks: LedgerCheckRepository) -> LedgerHealth:
    interval = runtime.config.ledger_verify_interval_seconds
    try:
        newest = await asyncio.wait_for(checks.newest(), timeout=PROBE_TIMEOUT_SECONDS)
    except Exception:
        return LedgerHealth(
            status="unknown", problems=[], problem_count=0, checked_at=None, interval_seconds=interval
        )
    if newest is None:
        return LedgerHealth(
            status="unchecked", problems=[], problem_count=0, checked_at=None, interval_seconds=interval
        )
    return LedgerHealth(
        status="ok" if newest.ok else "violation",
        problems=newest.problems[:PROBLEMS_SHOWN],
        problem_count=len(newest.problems),
        checked_at=newest.checked_at,
        interval_seconds=interval,
    )


async def queue_snapshot(runtime: Runtime) -> metrics.QueueSnapshot:
    """The queue gauges of ``/metrics``: Dramatiq's ready list in Redis and the queued jobs."""
    messages = int(await runtime.redis.llen(f"{runtime.config.redis_namespace}:default"))
    row = await runtime.jobs.queue_summary()
    oldest: datetime | None = row["oldest_queued_at"]
    return metrics.QueueSnapshot(
        broker_messages=messages,
        queued_jobs=int(row["queued"]),
        oldest_queued_seconds=0.0 if oldest is None else max((row["now"] - oldest).total_seconds(), 0.0),
    )


async def _queue(runtime: Runtime) -> QueueHealth | None:
    try:
        row = await asyncio.wait_for(runtime.jobs.queue_summary(), timeout=PROBE_TIMEOUT_SECONDS)
    except Exception:
        return None
    oldest: datetime | None = row["oldest_queued_at"]
    return QueueHealth(
        queued=int(row["queued"]),
        running=int(row["running"]),
        oldest_queued_at=oldest,
        oldest_queued_seconds=None if oldest is None else round((row["now"] - oldest).total_seconds(), 3),
    )


async def _retention(runtime: Runtime) -> RetentionHealth:
    try:
        last = await asyncio.wait_for(retention.last_run(runtime), timeout=PROBE_TIMEOUT_SECONDS)
    except Exception:
        last = None
    return RetentionHealth(
        days=runtime.config.retention_seconds / 86_400,
        interval_seconds=runtime.config.retention_interval_seconds,
        last_run=last,
    )


async def health_report(runtime: Runtime) -> HealthReport:
    """Every section answers even when a service is down (that section then says so)."""
    checks = LedgerCheckRepository(runtime.db)
    database, redis, storage = await asyncio.gather(
        _probe(runtime.db.ping()), _probe(runtime.redis.ping()), _probe(runtime.store.ping())
    )
    services = {"database": database, "redis": redis, "storage": storage}
    ledger, queue, kept = await asyncio.gather(_ledger(runtime, checks), _queue(runtime), _retention(runtime))
    degraded = any(state != "ok" for state in services.values()) or ledger.status == "violation"
    return HealthReport(
        status="degraded" if degraded else "ok",
        services=services,
        ledger=ledger,
        queue=queue,
        retention=kept,
    )

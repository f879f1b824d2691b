"""Retention: a finished job's stored images expire; the job's record and its money stay.

DECISIONS.md keeps inputs and results ``TRYON_RETENTION_DAYS`` after a job was created. The
sweeper calls :func:`purge_if_due`; once per ``retention_interval_seconds`` across all workers
(a Redis key set with NX and that TTL) it runs :func:`purge_expired`, which works in batches,
each its own transaction:

1. claim up to ``retention_batch_size`` finished, unpurged jobs created before the cutoff with
   ``SELECT … FOR UPDATE SKIP LOCKED`` — a second purge running at the same time (another
   worker, or an operator's manual run) takes other rows or none, never the same ones;
2. delete their objects (deleting an object that is already gone is harmless, so a batch that
   failed half-way is simply done again next time);
3. set ``purged_at`` and commit.

A storage failure rolls the batch back: its jobs stay unpurged and are tried again on the next
run. Queued and running jobs are never touched, whatever their age. Ledger entries, the job's
status, error and price are not touched either; the dialects answer a purged job with null links
(:func:`engine.service.present`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from datetime import UTC, datetime
from typing import Any

import msgspec

from engine.backends.stock import is_shared_key
from engine.runtime import Runtime
from ledger.database import Database

log = logging.getLogger(__name__)

DELETES_AT_ONCE = 8
"""Object deletions in flight at once within a batch."""


class PurgeReport(msgspec.Struct, frozen=True, kw_only=True):
    """One purge run: what it removed, and when."""

    started_at: datetime
    finished_at: datetime
    jobs_purged: int
    objects_deleted: int
    batches: int
    error: str | None = None


class RetentionRepository:
    """The purge's queries on ``jobs``."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def claim_expired(self, older_than_seconds: float, limit: int) -> list[dict[str, Any]]:
        """Lock a batch of expired finished jobs (rows another purge holds are skipped)."""
        return await self.db.fetch(
            """SELECT id, inputs, results FROM jobs
               WHERE purged_at IS NULL AND created_at < now() - make_interval(secs => $1)
                 AND status IN ('succeeded', 'failed')
               ORDER BY created_at LIMIT $2
               FOR UPDATE SKIP LOCKED""",
            older_than_seconds,
            limit,
        )

    async def mark_purged(self, job_ids: list[int]) -> int:
        rows = await self.db.fetch(
            """UPDATE jobs SET purged_at = now()
               WHERE id = ANY($1::bigint[]) AND purged_at IS NULL RETURNING id""",
            job_ids,
        )
        return len(rows)


def _keys(row: dict[str, Any]) -> list[str]:
    keys: list[str] = []
    for column in ("inputs", "results"):
        images = row[column]
        if isinstance(images, str):
            images = json.loads(images)
        keys += [str(image["key"]) for image in images or [] if image.get("key")]
    # a test-key job's results are the shared stock pictures (engine/execution.py): not its own
    return [key for key in keys if not is_shared_key(key)]


async def _delete_all(runtime: Runtime, keys: list[str]) -> None:
    slots = asyncio.Semaphore(DELETES_AT_ONCE)

    async def delete(key: str) -> None:
        async with slots:
            await runtime.store.delete(key)

    await asyncio.gather(*(delete(key) for key in keys))


async def purge_expired(runtime: Runtime, *, max_batches: int | None = None) -> PurgeReport:
    """Delete the images of every finished job older than the retention period, batch by batch.

    Safe to run in several processes at once and to run again after a failure. Storage errors
    propagate (after rolling back the batch in progress) so the caller records the run as failed.
    """
    config = runtime.config
    repo = RetentionRepository(runtime.db)
    started = datetime.now(UTC)
    purged = deleted = batches = 0
    while max_batches is None or batches < max_batches:
        async with runtime.db.transaction():
            rows = await repo.claim_expired(config.retention_seconds, config.retention_batch_size)
            if not rows:
                break
            keys = [key for row in rows for key in _keys(row)]
            await _delete_all(runtime, keys)
            purged += await repo.mark_purged([int(row["id"]) for row in rows])
        deleted += len(keys)
        batches += 1
        if len(rows) < config.retention_batch_size:
            break
    return PurgeReport(
        started_at=started,
        finished_at=datetime.now(UTC),
        jobs_purged=purged,
        objects_deleted=deleted,
        batches=batches,
    )


# the schedule ------------------------------------------------------------------------------
def _last_run_key(runtime: Runtime) -> str:
    return f"{runtime.config.redis_namespace}:retention:last-run"


async def purge_if_due(runtime: Runtime) -> PurgeReport | None:
    """Run the purge when no worker has started one within ``retention_interval_seconds``.

    The Redis key expires after the interval, so a crashed run is simply retried one interval
    later; the purge itself is safe to overlap, so the key only saves work. Each run's report
    (or its error) is kept in Redis for ``GET /admin/health``.
    """
    config = runtime.config
    due = await runtime.redis.set(
        f"{config.redis_namespace}:retention:due",
        secrets.token_hex(4),
        nx=True,
        px=max(1, int(config.retention_interval_seconds * 1000)),
    )
    if not due:
        return None
    started, clock = datetime.now(UTC), time.monotonic()
    try:
        report = await purge_expired(runtime)
    except Exception as exc:
        report = PurgeReport(
            started_at=started,
            finished_at=datetime.now(UTC),
            jobs_purged=0,
            objects_deleted=0,
            batches=0,
            error=f"{type(exc).__name__}: {exc}"[:500],
        )
        log.exception(
            "retention purge failed after %.1fs; it runs again next interval", time.monotonic() - clock
        )
    await runtime.redis.set(_last_run_key(runtime), msgspec.json.encode(report))
    if report.jobs_purged:
        log.info(
            "retention purged %d job(s), %d object(s)",
            report.jobs_purged,
            report.objects_deleted,
            extra={"jobs_purged": report.jobs_purged, "objects_deleted": report.objects_deleted},
        )
    return report


async def last_run(runtime: Runtime) -> PurgeReport | None:
    """The newest scheduled run's report, if any run has finished in this deployment."""
    raw = await runtime.redis.get(_last_run_key(runtime))
    return None if raw is None else msgspec.json.decode(raw, type=PurgeReport)

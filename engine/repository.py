"""Every query on jobs and remembered Idempotency-Keys.

Status transitions are conditional UPDATEs (``WHERE status = …``): the database,
not the caller, decides whether a transition still applies, so concurrent
workers, sweepers and redelivered messages cannot double-run or rewind a job.
"""

from __future__ import annotations

import json
from typing import Any, TypedDict, Unpack

import msgspec

from engine.coalesce import TurnBatch
from engine.history_indexes import ID_BOUND_MARGIN
from engine.models import STAGE_PROGRESS, JobFilter, JobRecord, Stage, StoredImage
from ledger.database import Database

_NO_ID_ABOVE = 2**63 - 1
"""Larger than any job id (``bigint``'s maximum)."""
_JSON_COLUMNS = ("params", "inputs", "results", "metadata", "report")


def _row(record: dict[str, Any]) -> JobRecord:
    data = dict(record)
    for column in _JSON_COLUMNS:
        if isinstance(data[column], str):
            data[column] = json.loads(data[column])
    return msgspec.convert(data, JobRecord)


def job_record(record: dict[str, Any]) -> JobRecord:
    """A ``jobs`` row (``SELECT *``/``RETURNING *``) as the job model, for code that reads rows
    itself (the bench finishes held jobs with its own statement and announces them as a worker does)."""
    return _row(record)


def _json(value: Any) -> str:
    return msgspec.json.encode(value).decode()


class NewJob(TypedDict):
    """The columns a submit gives a new job (:meth:`JobRepository.insert`)."""

    public_id: str
    account_id: int
    api_key_id: int
    dialect: str
    kind: str
    mode: str
    backend: str
    params: dict[str, Any]
    inputs: list[StoredImage]
    cost_credits: int
    metadata: dict[str, Any] | None
    seed: int | None
    webhook_url: str | None


_INSERT = """INSERT INTO jobs (public_id, account, api_key, dialect, kind, mode, backend, params, inputs,
                               cost_credits, metadata, seed, webhook_url)
             {source}
             RETURNING *"""
_INSERT_VALUES = "VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb, $9::jsonb, $10, $11::jsonb, $12, $13)"
_INSERT_IF_ROOM = """SELECT $1, $2, $3, $4, $5, $6, $7, $8::jsonb, $9::jsonb, $10, $11::jsonb, $12, $13
             WHERE (SELECT count(*) FROM jobs WHERE account = $2 AND status IN ('queued', 'running')) < $14"""


def _insert_args(job: NewJob) -> tuple[Any, ...]:
    """``job`` as ``_INSERT``'s parameters $1 to $13."""
    metadata = job["metadata"]
    return (
        job["public_id"],
        job["account_id"],
        job["api_key_id"],
        job["dialect"],
        job["kind"],
        job["mode"],
        job["backend"],
        _json(job["params"]),
        _json(job["inputs"]),
        job["cost_credits"],
        None if metadata is None else _json(metadata),
        job["seed"],
        job["webhook_url"],
    )


class JobRepository:
    def __init__(self, db: Database) -> None:
        self.db = db
        # polls of one event-loop turn share one read (engine.coalesce; ``batch=True`` below)
        self._polled_by_public_id = TurnBatch(self._one_by_public_id, self._many_by_public_id)
        self._polled_by_id = TurnBatch(self._one_by_id, self._many_by_id)

    async def insert(self, **job: Unpack[NewJob]) -> JobRecord:
        record = await self.db.fetchrow(_INSERT.format(source=_INSERT_VALUES), *_insert_args(job))
        assert record is not None
        return _row(record)

    async def insert_if_room(self, *, max_unfinished: int, **job: Unpack[NewJob]) -> JobRecord | None:
        """:meth:`insert`, unless the account already has ``max_unfinished`` queued or running jobs:
        then None, and nothing is written. Counting and inserting in one statement saves FtmvAI's
        submit a round trip (issue 10). The caller must hold the account's row lock, taken by an
        earlier statement of its transaction, so that this statement's snapshot (taken after the
        lock was granted) sees every job a concurrent submit of the account committed."""
        record = await self.db.fetchrow(
            _INSERT.format(source=_INSERT_IF_ROOM), *_insert_args(job), max_unfinished
        )
        return None if record is None else _row(record)

    async def get(self, job_id: int, *, batch: bool = False) -> JobRecord | None:
        """The job with order number ``job_id``. ``batch``: a poll's read, which may share one
        ``= ANY`` statement with the other polls of its event-loop turn (outside a transaction)."""
        if batch and self.db.engine.current_transaction.get() is None:
            return await self._polled_by_id(job_id)
        return await self._one_by_id(job_id)

    async def by_public_id(self, public_id: str, *, batch: bool = False) -> JobRecord | None:
        """The job ``public_id``; ``batch`` as for :meth:`get`."""
        if batch and self.db.engine.current_transaction.get() is None:
            return await self._polled_by_public_id(public_id)
        return await self._one_by_public_id(public_id)

    async def _one_by_id(self, job_id: int) -> JobRecord | None:
        record = await self.db.fetchrow("SELECT * FROM jobs WHERE id = $1", job_id)
        return None if record is None else _row(record)

    async def _one_by_public_id(self, public_id: str) -> JobRecord | None:
        record = await self.db.fetchrow("SELECT * FROM jobs WHERE public_id = $1", public_id)
        return None if record is None else _row(record)

    async def _many_by_id(self, job_ids: list[int]) -> list[JobRecord | None]:
        rows = await self.db.fetch("SELECT * FROM jobs WHERE id = ANY($1::bigint[])", list(set(job_ids)))
        found = {row["id"]: _row(row) for row in rows}
        return [found.get(job_id) for job_id in job_ids]

    async def _many_by_public_id(self, public_ids: list[str]) -> list[JobRecord | None]:
        rows = await self.db.fetch(
            "SELECT * FROM jobs WHERE public_id = ANY($1::varchar[])", list(set(public_ids))
        )
        found = {row["public_id"]: _row(row) for row in rows}
        return [found.get(public_id) for public_id in public_ids]

    async def page_for_key(self, api_key_id: int, *, before_id: int | None, limit: int) -> list[JobRecord]:
        # one statement per shape: in a prepared statement's generic plan ``($2 IS NULL OR id < $2)``
        # is a filter, not an index bound, and a deep page would read every newer job of the key
        if before_id is None:
            records = await self.db.fetch(
                "SELECT * FROM jobs WHERE api_key = $1 ORDER BY id DESC LIMIT $2", api_key_id, limit
            )
        else:
            records = await self.db.fetch(
                "SELECT * FROM jobs WHERE api_key = $1 AND id < $2 ORDER BY id DESC LIMIT $3",
                api_key_id,
                before_id,
                limit,
            )
        return [_row(record) for record in records]

    async def created_counts(self, account_id: int) -> tuple[int, int]:
        """(today in UTC, all time) jobs the account created, from the counts the job-insert
        triggers keep (``usage_daily``, ``job_counts``): a few index rows, not the history."""
        record = await self.db.fetchrow(
            """SELECT (SELECT COALESCE(sum(jobs_submitted), 0) FROM usage_daily
                       WHERE account = $1 AND day >= (now() AT TIME ZONE 'UTC')::date) AS today,
                      (SELECT COALESCE(sum(jobs), 0) FROM job_counts WHERE account = $1) AS total""",
            account_id,
        )
        assert record is not None
        return int(record["today"]), int(record["total"])

    async def count_for_key(self, api_key_id: int) -> int:
        """Jobs the key created, from ``job_counts`` (kept by the job-insert trigger)."""
        record = await self.db.fetchrow(
            "SELECT COALESCE(sum(jobs), 0) AS n FROM job_counts WHERE api_key = $1", api_key_id
        )
        assert record is not None
        return int(record["n"])

    # transitions --------------------------------------------------------------
    async def claim(self, job_id: int, *, deadline_seconds: float) -> JobRecord | None:
        """queued → running, once. None if the job is not queued any more."""
        record = await self.db.fetchrow(
            """UPDATE jobs SET status = 'running', stage = $2, progress = $3, started_at = now(),
                               attempts = attempts + 1,
                               deadline_at = now() + make_interval(secs => $4)
               WHERE id = $1 AND status = 'queued' RETURNING *""",
            job_id,
            Stage.STARTED.value,
            STAGE_PROGRESS[Stage.STARTED],
            deadline_seconds,
        )
        return None if record is None else _row(record)

    async def set_stage(self, job_id: int, stage: Stage, progress: int) -> None:
        await self.db.fetch(
            "UPDATE jobs SET stage = $2, progress = $3 WHERE id = $1 AND status = 'running'",
            job_id,
            stage.value,
            progress,
        )

    async def add_report(self, job_id: int, report: dict[str, Any]) -> None:
        """Merge ``report`` into the job's generation report (ops data; never shown to callers)."""
        await self.db.fetch(
            "UPDATE jobs SET report = report || $2::jsonb WHERE id = $1", job_id, _json(report)
        )

    async def set_stage_and_report(
        self, job_id: int, stage: Stage, progress: int, report: dict[str, Any]
    ) -> None:
        """:meth:`set_stage` and :meth:`add_report` in one statement (one round trip per job, not two).

        The report is merged whatever the job's status (ops data, as :meth:`add_report`); the stage
        moves only while the job runs, like :meth:`set_stage`.
        """
        await self.db.fetch(
            """UPDATE jobs SET report = report || $4::jsonb,
                               stage = CASE WHEN status = 'running' THEN $2 ELSE stage END,
                               progress = CASE WHEN status = 'running' THEN $3 ELSE progress END
               WHERE id = $1""",
            job_id,
            stage.value,
            progress,
            _json(report),
        )

    async def succeed(
        self, job_id: int, results: list[StoredImage], *, report: dict[str, Any] | None = None
    ) -> tuple[JobRecord, int | None] | None:
        """running → succeeded, once: the job and its account's balance at that moment (read in the
        same statement: the completion event carries it, see :mod:`engine.completion`).

        ``report``, when given, is merged into the job's report by the same statement (a stock job's
        only write after its claim); if the job is not running any more nothing is written, and the
        caller records the report with :meth:`add_report`.
        """
        merge = "report = report || $4::jsonb," if report is not None else ""
        record = await self.db.fetchrow(
            f"""UPDATE jobs SET status = 'succeeded', stage = $2, progress = 100, results = $3::jsonb,
                               {merge} completed_at = now(),
                               duration_ms = (EXTRACT(EPOCH FROM (now() - created_at)) * 1000)::int
               WHERE id = $1 AND status = 'running'
               RETURNING *, (SELECT balance FROM accounts WHERE accounts.id = jobs.account) AS balance_now""",
            job_id,
            Stage.DONE.value,
            _json(results),
            *(() if report is None else (_json(report),)),
        )
        if record is None:
            return None
        balance = record.pop("balance_now")
        return _row(record), None if balance is None else int(balance)

    async def fail(self, job_id: int, *, code: str, message: str) -> JobRecord | None:
        """queued|running → failed, once. None if it had already finished."""
        record = await self.db.fetchrow(
            """UPDATE jobs SET status = 'failed', error_code = $2, error_message = $3, completed_at = now(),
                               duration_ms = (EXTRACT(EPOCH FROM (now() - created_at)) * 1000)::int
               WHERE id = $1 AND status IN ('queued', 'running') RETURNING *""",
            job_id,
            code,
            message,
        )
        return None if record is None else _row(record)

    async def record_refund(self, job_id: int, amount: int) -> JobRecord:
        record = await self.db.fetchrow(
            "UPDATE jobs SET credits_refunded = $2 WHERE id = $1 RETURNING *", job_id, amount
        )
        assert record is not None
        return _row(record)

    async def queue_summary(self) -> dict[str, Any]:
        """Unfinished jobs: queued and running counts, the oldest queued one's creation, and the
        database's now (the ``jobs_unfinished`` partial index keeps this cheap)."""
        row = await self.db.fetchrow(
            """SELECT count(*) FILTER (WHERE status = 'queued') AS queued,
                      count(*) FILTER (WHERE status = 'running') AS running,
                      min(created_at) FILTER (WHERE status = 'queued') AS oldest_queued_at,
                      now() AS now
               FROM jobs WHERE status IN ('queued', 'running')"""
        )
        assert row is not None
        return row

    # sweeping -----------------------------------------------------------------
    async def stale_queued(self, older_than_seconds: float, limit: int = 500) -> list[int]:
        records = await self.db.fetch(
            """SELECT id FROM jobs WHERE status = 'queued'
               AND created_at < now() - make_interval(secs => $1) ORDER BY id LIMIT $2""",
            older_than_seconds,
            limit,
        )
        return [int(record["id"]) for record in records]

    async def past_deadline(self, limit: int = 500) -> list[int]:
        records = await self.db.fetch(
            "SELECT id FROM jobs WHERE status = 'running' AND deadline_at < now() ORDER BY id LIMIT $1", limit
        )
        return [int(record["id"]) for record in records]

    # idempotency --------------------------------------------------------------
    async def remembered(self, api_key_id: int, key: str, ttl_seconds: int) -> tuple[str, int] | None:
        """(request fingerprint, job id) remembered for this key within the TTL."""
        record = await self.db.fetchrow(
            """SELECT request_hash, job FROM idempotency_keys
               WHERE api_key = $1 AND key = $2 AND created_at > now() - make_interval(secs => $3)""",
            api_key_id,
            key,
            float(ttl_seconds),
        )
        return None if record is None else (str(record["request_hash"]), int(record["job"]))

    async def remember(
        self, api_key_id: int, key: str, fingerprint: str, job_id: int, ttl_seconds: int
    ) -> None:
        await self.db.fetch(
            """DELETE FROM idempotency_keys WHERE api_key = $1 AND key = $2
               AND created_at <= now() - make_interval(secs => $3)""",
            api_key_id,
            key,
            float(ttl_seconds),
        )
        await self.db.fetch(
            "INSERT INTO idempotency_keys (api_key, key, request_hash, job) VALUES ($1, $2, $3, $4)",
            api_key_id,
            key,
            fingerprint,
            job_id,
        )

    async def audit(self) -> list[dict[str, Any]]:
        """Per job: its state beside the debit and refund entries the ledger holds for it."""
        return await self.db.fetch(
            """SELECT j.id, j.public_id, j.mode, j.status, j.error_code, j.error_message, j.cost_credits,
                      j.credits_refunded,
                      (SELECT count(*) FROM ledger_entries e WHERE e.job_id = j.id AND e.kind = 'debit')
                          AS debits,
                      (SELECT COALESCE(-SUM(e.amount), 0) FROM ledger_entries e
                          WHERE e.job_id = j.id AND e.kind = 'debit') AS debited,
                      (SELECT count(*) FROM ledger_entries e WHERE e.job_id = j.id AND e.kind = 'refund')
                          AS refunds,
                      (SELECT COALESCE(SUM(e.amount), 0) FROM ledger_entries e
                          WHERE e.job_id = j.id AND e.kind = 'refund') AS refunded,
                      (SELECT max(e.reference) FROM ledger_entries e
                          WHERE e.job_id = j.id AND e.kind = 'refund') AS refund_reference,
                      j.rerun_of
               FROM jobs j ORDER BY j.id"""
        )

    # operations (what ops do to jobs: engine/operations.py) ---------------------
    async def search(self, query: JobFilter) -> list[JobRecord]:
        """Jobs matching every given filter, newest first.

        The SQL names only the filters given (values stay parameters), so each combination gets
        a plan for its own index — ``(account, status, id DESC)``, ``(status, id DESC)``, … —
        instead of one generic plan full of ``$n IS NULL OR …``.
        """
        conditions: list[str] = []
        args: list[Any] = []
        for column, operator, value in (
            ("account", "=", query.account),
            ("api_key", "=", query.api_key),
            ("dialect", "=", query.dialect),
            ("kind", "=", query.kind),
            ("status", "=", query.status),
            ("error_code", "=", query.error_code),
            ("backend", "=", query.backend),
            ("created_at", ">=", query.since),
            ("created_at", "<", query.until),
            ("id", "<", query.before_id),
        ):
            if value is not None:
                args.append(value)
                conditions.append(f"{column} {operator} ${len(args)}")
        # a time bound is also an id bound (engine/history_indexes.py): without it the newest-first
        # walk skips every job newer than ``until`` (or, with few jobs since ``since``, reads on
        # past them to the oldest) before it knows it is done
        margin = f"interval '{int(ID_BOUND_MARGIN.total_seconds())} seconds'"
        if query.until is not None:
            args.append(query.until)
            conditions.append(
                f"""id < COALESCE((SELECT id FROM jobs
                                   WHERE created_at >= ${len(args)}::timestamptz + {margin}
                                   ORDER BY created_at LIMIT 1), {_NO_ID_ABOVE})"""
            )
        if query.since is not None:
            args.append(query.since)
            conditions.append(
                f"""id > COALESCE((SELECT id FROM jobs
                                   WHERE created_at < ${len(args)}::timestamptz - {margin}
                                   ORDER BY created_at DESC LIMIT 1), 0)"""
            )
        where = " AND ".join(conditions) or "TRUE"
        args.append(query.limit)
        records = await self.db.fetch(
            f"SELECT * FROM jobs WHERE {where} ORDER BY id DESC LIMIT ${len(args)}", *args
        )
        return [_row(record) for record in records]

    async def lock(self, job_id: int) -> JobRecord | None:
        """The job, row-locked until the caller's transaction ends (serialises ops actions on it)."""
        record = await self.db.fetchrow("SELECT * FROM jobs WHERE id = $1 FOR UPDATE", job_id)
        return None if record is None else _row(record)

    async def reruns(self, job_id: int) -> list[JobRecord]:
        records = await self.db.fetch("SELECT * FROM jobs WHERE rerun_of = $1 ORDER BY id", job_id)
        return [_row(record) for record in records]

    async def insert_rerun(self, original_id: int, public_id: str, inputs: list[StoredImage]) -> JobRecord:
        """A new queued job repeating ``original_id``: same account, key, parameters and seed,
        the given (copied) inputs, free (cost 0) and without the original's webhook."""
        record = await self.db.fetchrow(
            """INSERT INTO jobs (public_id, account, api_key, dialect, kind, mode, backend, params, inputs,
                                 cost_credits, metadata, seed, webhook_url, rerun_of)
               SELECT $2, account, api_key, dialect, kind, mode, backend, params, $3::jsonb,
                      0, metadata, seed, NULL, id
               FROM jobs WHERE id = $1 RETURNING *""",
            original_id,
            public_id,
            _json(inputs),
        )
        assert record is not None, f"job {original_id} vanished"
        return _row(record)

    async def idempotency_key(self, job: JobRecord) -> dict[str, Any] | None:
        """The Idempotency-Key remembered for the job, if its request carried one."""
        return await self.db.fetchrow(
            """SELECT key, request_hash, created_at FROM idempotency_keys
               WHERE job = $1 ORDER BY id DESC LIMIT 1""",
            job.id,
        )

    async def webhook_deliveries(self, job_id: int) -> list[dict[str, Any]]:
        """The job's webhook event (one at most today) with its attempts, oldest first."""
        events = await self.db.fetch(
            """SELECT id, public_id, url, status, attempts, created_at, delivered_at
               FROM webhook_events WHERE job = $1 ORDER BY id""",
            job_id,
        )
        for event in events:
            event["deliveries"] = await self.db.fetch(
                """SELECT attempt, delivery_id, attempted_at, status_code, error, duration_ms
                   FROM webhook_attempts WHERE event = $1 ORDER BY attempt, id""",
                event["id"],
            )
        return events

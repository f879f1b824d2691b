"""The job search's ``since``/``until`` become id bounds without ever losing a matching job.

``JobRepository.search`` pages newest first by id but filters ``created_at``; it narrows the id
range with the first job created ``ID_BOUND_MARGIN`` past ``until`` (and the last one created
that margin before ``since``). Ids and ``created_at`` disagree in order for jobs whose
transactions overlap, so these tests build histories where they disagree — by a real
transaction that starts before another and inserts after it, and by jobs stamped up to just
under the margin out of order — and compare every search with the answer computed in Python
from all the rows.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from engine.history_indexes import ID_BOUND_MARGIN
from engine.models import JobFilter
from engine.repository import JobRepository
from ledger.database import Database
from tests.support import services


@pytest.fixture(scope="module")
async def url() -> AsyncIterator[str]:
    await services.check_postgres()
    name, url = await services.create_database()
    try:
        yield url
    finally:
        await services.drop_database(name)


@pytest.fixture
async def db(url: str) -> AsyncIterator[Database]:
    database = Database(url)
    await database.start()
    try:
        await database.fetch("TRUNCATE jobs, job_counts, usage_daily, api_keys, accounts CASCADE")
        await database.fetch(
            "INSERT INTO accounts (id, name, dialect, plan) VALUES (1, 'a', 'fitinview', 'paid')"
        )
        await database.fetch(
            """INSERT INTO api_keys (id, account, dialect, mode, name, key_hash, key_hint)
               VALUES (1, 1, 'fitinview', 'live', 'k', 'hash-1', 'hint')"""
        )
        yield database
    finally:
        await database.close()


_INSERT = """INSERT INTO jobs (public_id, account, api_key, dialect, kind, mode, backend, created_at)
             VALUES ($1, 1, 1, 'fitinview', 'tryon', 'live', 'stock', COALESCE($2, now()))
             RETURNING id, created_at"""


async def _insert(conn: Any, at: datetime | None) -> tuple[int, datetime]:
    row = await conn.fetchrow(_INSERT, f"job_{random.getrandbits(64):016x}", at)
    return int(row["id"]), row["created_at"]


def _expected(rows: list[tuple[int, datetime]], query: JobFilter) -> list[int]:
    matching = [
        job_id
        for job_id, created in rows
        if (query.since is None or created >= query.since)
        and (query.until is None or created < query.until)
        and (query.before_id is None or job_id < query.before_id)
    ]
    return sorted(matching, reverse=True)[: query.limit]


async def _found(db: Database, query: JobFilter) -> list[int]:
    return [job.id for job in await JobRepository(db).search(query)]


async def test_a_transaction_that_inserts_after_a_younger_one_is_still_found(db: Database, url: str) -> None:
    """The real disorder: A begins (its created_at), B begins, inserts and commits, then A inserts.
    A's job is older by ``created_at`` and newer by id; a search up to B's time must return it."""
    older = await asyncpg.connect(url)
    younger = await asyncpg.connect(url)
    try:
        transaction = older.transaction()
        await transaction.start()
        await older.fetchval("SELECT now()")
        await asyncio.sleep(0.05)
        b_id, b_at = await _insert(younger, None)
        a_id, a_at = await _insert(older, None)
        await transaction.commit()
    finally:
        await older.close()
        await younger.close()
    assert a_at < b_at and a_id > b_id, "the two orders should disagree"
    assert await _found(db, JobFilter(until=b_at, limit=10)) == [a_id]
    assert await _found(db, JobFilter(since=b_at, limit=10)) == [b_id]
    assert await _found(db, JobFilter(since=a_at, until=b_at, limit=10)) == [a_id]


async def test_searches_match_the_rows_when_ids_and_times_disagree_within_the_margin(db: Database) -> None:
    """Three days of jobs, each stamped up to just under the margin earlier than its id's place,
    plus quiet gaps longer than the margin: every bound, alone, together and with a cursor, finds
    exactly the jobs a full scan finds."""
    rng = random.Random(10)
    start = datetime(2026, 11, 1, tzinfo=UTC)
    rows: list[tuple[int, datetime]] = []
    async with db.transaction():
        clock = start
        for index in range(1500):
            clock += timedelta(minutes=rng.choice([1, 2, 5, 30]) if index % 200 else 300)
            slip = ID_BOUND_MARGIN * rng.random() * 0.999 if rng.random() < 0.3 else timedelta(0)
            [row] = await db.fetch(
                _INSERT.replace("COALESCE($2, now())", "$2"), f"job_{index:06d}", clock - slip
            )
            rows.append((int(row["id"]), row["created_at"]))
    disagreeing = sum(1 for (a, at), (b, bt) in itertools.pairwise(rows) if b > a and bt < at)
    assert disagreeing > 100, "the history should have many pairs in disagreeing order"

    times = [created for _, created in rows]
    ids = [job_id for job_id, _ in rows]
    probes = [*rng.sample(times, 25), start - timedelta(days=1), clock + timedelta(days=1)]
    probes += [at + delta for at in rng.sample(times, 10) for delta in (ID_BOUND_MARGIN, -ID_BOUND_MARGIN)]
    checked = 0
    for probe in probes:
        other = rng.choice(probes)
        for query in (
            JobFilter(until=probe, limit=50),
            JobFilter(since=probe, limit=50),
            JobFilter(since=min(probe, other), until=max(probe, other), limit=50),
            JobFilter(until=probe, before_id=rng.choice(ids), limit=20),
            JobFilter(since=probe, before_id=rng.choice(ids), limit=20),
            JobFilter(until=probe, limit=2000),
        ):
            assert await _found(db, query) == _expected(rows, query), query
            checked += 1
    assert checked > 200


async def test_an_empty_history_and_bounds_beyond_it(db: Database) -> None:
    """No job past ``until + margin`` or before ``since - margin``: the bound falls back to none."""
    now = datetime.now(UTC)
    assert await _found(db, JobFilter(until=now, limit=5)) == []
    job_id, created = await _insert(db.engine.pool, None)
    assert await _found(db, JobFilter(until=created + timedelta(microseconds=1), limit=5)) == [job_id]
    assert await _found(db, JobFilter(since=created, limit=5)) == [job_id]
    assert await _found(db, JobFilter(until=created, limit=5)) == []
    assert await _found(db, JobFilter(since=created + timedelta(microseconds=1), limit=5)) == []

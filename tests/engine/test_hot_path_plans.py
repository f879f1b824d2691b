"""Every query a poll, a list page, a submit, an account read and the sweeper send reads an index,
in the index's order, on a database with a history (issue 10: cost grows with the work, not with
history).

The database is filled by ``bench/admin_at_size.py``'s fill (20,000 jobs and 40,000 ledger
entries by default; ``TRYON_TEST_PLANS_ROWS=1000000`` for the issue's million, which takes
minutes to fill on a loaded build machine). The real repository and service calls run inside a
transaction that is rolled back, with ``auto_explain`` reporting the plan of every statement they
send — the nested ones too: the job and ledger-entry insert triggers' upserts, the foreign-key
checks — with sequential scans, bitmap scans and sorts disabled, so each plan shows the index the
planner *can* use. Each call is planned twice: with the values (a custom plan) and as the generic
plan a prepared statement switches to after five runs. Every relation read must be an index
scan, and no plan may sort (a page or a lookup costs its own rows, not the account's history).
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest

from bench.admin_at_size import fill
from engine.history_indexes import TABLES as HISTORY_TABLES
from engine.models import JobFilter
from engine.repository import JobRepository, NewJob
from ledger.database import Database
from ledger.repository import LedgerRepository
from ledger.service import LedgerService
from tests.support import services

ROWS = int(os.environ.get("TRYON_TEST_PLANS_ROWS", "20000"))

Plan = dict[str, Any]


class _Rollback(Exception):
    pass


_END = "SELECT 'end of the call'"


@pytest.fixture(scope="module")
async def db() -> AsyncIterator[Database]:
    await services.check_postgres()
    name, url = await services.create_database()
    try:
        await fill(url, accounts=max(40, ROWS // 300), jobs=ROWS, entries=2 * ROWS, log=False)
        database = Database(url)
        await database.start()
        try:
            # the fill skips triggers: count the jobs as the migration's backfill does (unless the
            # fill already did)
            await database.fetch(
                """INSERT INTO job_counts (api_key, account, jobs)
                   SELECT api_key, account, count(*) FROM jobs GROUP BY api_key, account
                   ON CONFLICT (api_key, account) DO NOTHING"""
            )
            await database.fetch("ANALYZE job_counts")
            yield database
        finally:
            await database.close()
    finally:
        await services.drop_database(name)


@pytest.fixture(scope="module")
async def sample(db: Database) -> dict[str, Any]:
    """The biggest account (the worst case for a count over history), its live key and a job."""
    [row] = await db.fetch(
        """SELECT account, api_key, count(*) AS n, max(id) AS newest, min(id) AS oldest FROM jobs
           WHERE mode = 'live' GROUP BY account, api_key ORDER BY count(*) DESC LIMIT 1"""
    )
    [job] = await db.fetch("SELECT id, public_id FROM jobs WHERE id = $1", row["newest"])
    [typical] = await db.fetch(
        """SELECT api_key, max(id) AS newest, min(id) AS oldest FROM jobs GROUP BY api_key
           ORDER BY count(*), api_key OFFSET (SELECT count(DISTINCT api_key) / 2 FROM jobs) LIMIT 1"""
    )
    return dict(row) | {"public_id": job["public_id"], "typical_key": typical}


def nodes(plan: Plan) -> list[Plan]:
    found = [plan]
    for child in plan.get("Plans", []):
        found.extend(nodes(child))
    return found


async def plans_of(
    db: Database, call: Callable[[], Awaitable[Any]], *, generic: bool
) -> list[tuple[str, Plan]]:
    """(statement, plan) for every statement ``call`` sends, nested ones included; rolled back."""
    messages: list[Any] = []

    def listen(_: Any, message: Any) -> None:
        messages.append(message)

    try:
        async with db.transaction() as transaction:
            connection = transaction.connection
            await connection.execute("LOAD 'auto_explain'")
            for setting in (
                "auto_explain.log_min_duration = 0",
                "auto_explain.log_nested_statements = on",
                "auto_explain.log_format = json",
                "auto_explain.log_level = notice",
                "enable_seqscan = off",
                "enable_bitmapscan = off",
                "enable_sort = off",
                f"plan_cache_mode = {'force_generic_plan' if generic else 'force_custom_plan'}",
            ):
                await connection.execute(f"SET LOCAL {setting}")
            connection.add_log_listener(listen)
            try:
                await call()
                # the rollup triggers are deferred to COMMIT (engine_0007): fire them now, as COMMIT would
                await connection.execute("SET CONSTRAINTS ALL IMMEDIATE")
                # a statement's plan is reported when its portal closes, which in a transaction is
                # at the next statement: this one closes the call's last portal
                await connection.execute(_END)
                await asyncio.sleep(0.05)  # notices are handed over by callbacks
            finally:
                connection.remove_log_listener(listen)
            raise _Rollback
    except _Rollback:
        pass
    explained = [json.loads(m.message.split("plan:\n", 1)[1]) for m in messages if "plan:\n" in m.message]
    statements = [
        (" ".join(entry["Query Text"].split()), entry["Plan"])
        for entry in explained
        if entry["Query Text"] != _END
    ]
    assert statements, "the call sent no statement"
    return statements


def check(plans: list[tuple[str, Plan]]) -> set[str]:
    """Every read an index scan, no Sort; returns the indexes read."""
    read: set[str] = set()
    for text, plan in plans:
        for node in nodes(plan):
            if "Relation Name" in node and node["Node Type"] != "ModifyTable":
                assert node["Node Type"] in ("Index Scan", "Index Only Scan"), (text, node["Node Type"], plan)
                read.add(node["Index Name"])
            assert node["Node Type"] not in ("Sort", "Incremental Sort"), (text, plan)
    return read


async def indexes_of(db: Database, call: Callable[[], Awaitable[Any]]) -> set[str]:
    custom = check(await plans_of(db, call, generic=False))
    generic = check(await plans_of(db, call, generic=True))
    return custom | generic


@pytest.fixture(scope="module")
def jobs(db: Database) -> JobRepository:
    return JobRepository(db)


async def test_a_poll_reads_one_index_row(db: Database, jobs: JobRepository, sample: dict[str, Any]) -> None:
    assert await indexes_of(db, lambda: jobs.by_public_id(sample["public_id"])) == {"jobs_public_id_key"}
    assert await indexes_of(db, lambda: jobs.get(sample["newest"])) == {"jobs_pkey"}


async def test_a_list_page_walks_the_keys_index(
    db: Database, jobs: JobRepository, sample: dict[str, Any]
) -> None:
    """A key of median size (for the very biggest keys walking the primary key is the cheaper way to
    their newest 51 jobs, and the planner rightly takes it: it reads about 51 / the key's share)."""
    typical = sample["typical_key"]
    key = typical["api_key"]
    assert await indexes_of(db, lambda: jobs.page_for_key(key, before_id=None, limit=51)) == {
        "jobs_key_newest"
    }
    middle = (typical["newest"] + typical["oldest"]) // 2
    assert await indexes_of(db, lambda: jobs.page_for_key(key, before_id=middle, limit=51)) == {
        "jobs_key_newest"
    }
    # the cursor bounds the index range (a deep page starts at the cursor), in either plan
    for generic in (False, True):
        plans = await plans_of(
            db, lambda: jobs.page_for_key(key, before_id=middle, limit=51), generic=generic
        )
        [scan] = [node for _, plan in plans for node in nodes(plan) if node.get("Index Name")]
        assert "id <" in scan["Index Cond"], scan


async def test_a_submit_and_its_triggers_read_indexes(
    db: Database, jobs: JobRepository, sample: dict[str, Any]
) -> None:
    """What ``engine.service._accept`` sends, in its order, on the biggest account."""
    ledger = LedgerService(db)
    account, key = sample["account"], sample["api_key"]

    async def submit() -> None:
        assert await jobs.remembered(key, "retry-1", 86400) is None
        await ledger.balance(account)
        await ledger.lock_account(account)
        new_job: NewJob = {
            "public_id": "job_plans_test",
            "account_id": account,
            "api_key_id": key,
            "dialect": "fitinview",
            "kind": "tryon",
            "mode": "live",
            "backend": "gemini",
            "params": {},
            "inputs": [],
            "cost_credits": 1,
            "metadata": None,
            "seed": None,
            "webhook_url": None,
        }
        first: NewJob = {**new_job, "public_id": "job_plans_test_admitted"}
        # FtmvAI's insert: counted and inserted in one statement
        admitted = await jobs.insert_if_room(max_unfinished=10**6, **first)
        assert admitted is not None
        job = await jobs.insert(**new_job)
        await ledger.debit_for_job(account, job.id, 1)
        await jobs.remember(key, "retry-1", "0" * 64, job.id, 86400)

    plans = await plans_of(db, submit, generic=False)
    texts = [text for text, _ in plans]
    # the insert triggers' statements are among them: counted, rolled up, the entry's job looked up
    assert any(text.startswith("INSERT INTO job_counts") for text in texts), texts
    assert any(text.startswith("INSERT INTO usage_daily") for text in texts), texts
    assert any(text.startswith("SELECT dialect, backend FROM jobs") for text in texts), texts
    read = check(plans) | check(await plans_of(db, submit, generic=True))
    assert {"accounts_pkey", "jobs_pkey"} <= read, read
    assert any(name.startswith("idempotency_keys") for name in read), read
    upserts = [plan for text, plan in plans if "ON CONFLICT" in text]
    assert upserts and all(plan.get("Conflict Arbiter Indexes") for plan in upserts), upserts


async def test_account_reads_are_counters_not_history(
    db: Database, jobs: JobRepository, sample: dict[str, Any]
) -> None:
    account, key = sample["account"], sample["api_key"]
    assert await indexes_of(db, lambda: jobs.count_for_key(key)) == {"job_counts_key"}
    assert await indexes_of(db, lambda: jobs.created_counts(account)) == {
        "usage_daily_account",
        "job_counts_account",
    }
    assert await indexes_of(db, lambda: LedgerRepository(db).balance(account)) == {"accounts_pkey"}
    # and they agree with the history they replace
    [truth] = await db.fetch(
        """SELECT count(*) FILTER (WHERE api_key = $2) AS key_jobs, count(*) AS account_jobs,
                  count(*) FILTER (WHERE created_at >= date_trunc('day', now() AT TIME ZONE 'UTC')
                                                       AT TIME ZONE 'UTC') AS today
           FROM jobs WHERE account = $1""",
        account,
        key,
    )
    assert await jobs.count_for_key(key) == truth["key_jobs"] == sample["n"]
    assert await jobs.created_counts(account) == (truth["today"], truth["account_jobs"])


async def test_the_sweepers_reads_use_indexes(db: Database, jobs: JobRepository) -> None:
    assert await indexes_of(db, lambda: jobs.stale_queued(60.0))
    assert await indexes_of(db, lambda: jobs.past_deadline())
    assert await indexes_of(db, jobs.queue_summary) == {"jobs_unfinished"}


async def test_the_job_search_by_time_starts_at_the_time(
    db: Database, jobs: JobRepository, sample: dict[str, Any]
) -> None:
    """``until`` far back reads from its id bound down (found on ``jobs_created_id``), not from the
    newest job; ``since`` stops at its own bound."""
    [row] = await db.fetch("SELECT created_at FROM jobs WHERE id = $1", (sample["newest"] + 1) // 2)
    middle = row["created_at"]
    for query in (
        JobFilter(until=middle, limit=51),
        JobFilter(since=middle, limit=51),
        JobFilter(since=middle - timedelta(days=1), until=middle, limit=51),
    ):
        read = await indexes_of(db, functools.partial(jobs.search, query))
        assert read == {"jobs_pkey", "jobs_created_id"}, (query, read)
    # with ANALYZE: the walk for ``until`` in the middle of history skips only the jobs of the
    # margin past it, not the half of the table that is newer
    explained = await db.fetch(
        "EXPLAIN (ANALYZE, FORMAT JSON) SELECT * FROM jobs WHERE created_at < $1 AND id < COALESCE("
        "(SELECT id FROM jobs WHERE created_at >= $1::timestamptz + interval '3600 seconds'"
        " ORDER BY created_at LIMIT 1), 9223372036854775807) ORDER BY id DESC LIMIT 51",
        middle,
    )
    plan = explained[0]["QUERY PLAN"]
    walked = sum(
        node.get("Rows Removed by Filter", 0) + node.get("Actual Rows", 0)
        for node in nodes((json.loads(plan) if isinstance(plan, str) else plan)[0]["Plan"])
        if node.get("Index Name") == "jobs_pkey"
    )
    assert walked < ROWS // 10, walked


async def test_the_counter_table_matches_its_declaration(db: Database) -> None:
    for table in HISTORY_TABLES:
        rows = await db.fetch(
            "SELECT column_name FROM information_schema.columns WHERE table_name = $1", table._meta.tablename
        )
        assert {row["column_name"] for row in rows} == {c._meta.db_column_name for c in table._meta.columns}

"""The admin reads that must stay fast at size run on their indexes, in the order they are read.

``bench/admin_at_size.py`` times them with a million jobs; this keeps the reason they are fast
from regressing, cheaply: on a small database filled by the bench's own fill, every query the
repositories actually send is EXPLAINed (with sequential scans disabled, so the planner shows
the index it *can* use) and must read its index — and, for the pages, in the index's order
(no Sort node: a page costs its ``limit`` rows, not the account's whole history).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bench.admin_at_size import fill
from engine.models import JobFilter
from engine.payments_admin import PurchaseFilter, list_purchases
from engine.repository import JobRepository
from engine.usage import UsageQuery, usage_report
from ledger.database import Database
from ledger.service import LedgerService
from tests.support import services


class ExplainingDatabase(Database):
    """A real Database that EXPLAINs every SELECT it is asked to run, then runs it."""

    def __init__(self, dsn: str) -> None:
        super().__init__(dsn)
        self.plans: list[dict[str, Any]] = []

    async def fetch(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        if sql.lstrip().upper().startswith("SELECT"):
            explained = await super().fetch("EXPLAIN (FORMAT JSON) " + sql, *args)
            plan = explained[0]["QUERY PLAN"]
            self.plans.append((json.loads(plan) if isinstance(plan, str) else plan)[0]["Plan"])
        return await super().fetch(sql, *args)


def nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    found = [plan]
    for child in plan.get("Plans", []):
        found.extend(nodes(child))
    return found


@pytest.fixture(scope="module")
async def db() -> AsyncIterator[ExplainingDatabase]:
    await services.check_postgres()
    name, url = await services.create_database()
    try:
        await fill(url, accounts=40, jobs=3000, entries=8000, log=False)
        database = ExplainingDatabase(url)
        await database.start()
        try:
            yield database
        finally:
            await database.close()
    finally:
        await services.drop_database(name)


async def plan_of(db: ExplainingDatabase, call: Any) -> list[dict[str, Any]]:
    """The plan nodes of the last SELECT ``call`` runs (sequential/bitmap scans and sorts off)."""
    db.plans.clear()
    async with db.transaction():
        for setting in ("enable_seqscan", "enable_bitmapscan", "enable_sort"):
            await db.fetch(f"SET LOCAL {setting} = off")
        await call()
    assert db.plans, "the call ran no SELECT"
    return nodes(db.plans[-1])


def index_reads(plan: list[dict[str, Any]]) -> set[str]:
    return {node["Index Name"] for node in plan if "Index Name" in node}


async def test_the_fill_is_consistent(db: ExplainingDatabase) -> None:
    """The bench's data keeps the ledger's invariants, so its figures are about a real ledger."""
    assert await LedgerService(db).verify() == []
    [row] = await db.fetch(
        """SELECT (SELECT count(*) FROM jobs) AS jobs, (SELECT count(*) FROM ledger_entries) AS entries,
                  (SELECT SUM(jobs_submitted) FROM usage_daily) AS submitted"""
    )
    assert (row["jobs"], row["entries"], row["submitted"]) == (3000, 8000, 3000)


async def test_ledger_pages_read_the_account_index_in_order(db: ExplainingDatabase) -> None:
    ledger = LedgerService(db)
    [small] = await db.fetch(
        "SELECT account, max(id) AS newest FROM ledger_entries"
        " GROUP BY account ORDER BY count(*), account LIMIT 1"
    )
    account = small["account"]
    plan = await plan_of(db, lambda: ledger.entries_page(account, limit=51))
    assert index_reads(plan) == {"ledger_entries_account"}
    assert not any(node["Node Type"] == "Sort" for node in plan)
    plan = await plan_of(db, lambda: ledger.entries_page(account, before_id=small["newest"], limit=51))
    assert index_reads(plan) == {"ledger_entries_account"}
    plan = await plan_of(db, lambda: ledger.entries_page(account, kind="debit", before_id=10**6, limit=51))
    assert index_reads(plan) == {"ledger_entries_account_kind"}
    assert not any(node["Node Type"] == "Sort" for node in plan)


async def test_job_search_and_lookups_read_their_indexes(db: ExplainingDatabase) -> None:
    jobs = JobRepository(db)
    plan = await plan_of(db, lambda: jobs.search(JobFilter(account=1, status="failed", limit=51)))
    assert index_reads(plan) == {"jobs_account_status_newest"}
    assert not any(node["Node Type"] == "Sort" for node in plan)
    assert index_reads(await plan_of(db, lambda: jobs.get(42))) == {"jobs_pkey"}
    [row] = await db.fetch("SELECT public_id FROM jobs WHERE id = 42")
    assert index_reads(await plan_of(db, lambda: jobs.by_public_id(row["public_id"]))) == {
        "jobs_public_id_key"
    }


async def test_usage_reads_the_rollup_by_account_never_jobs(db: ExplainingDatabase) -> None:
    today = datetime.now(UTC).date()
    query = UsageQuery(account_id=1, first_day=today - timedelta(days=29), last_day=today)
    plan = await plan_of(db, lambda: usage_report(db, query))
    assert index_reads(plan) == {"usage_daily_account"}
    assert {node.get("Relation Name") for node in plan} <= {None, "usage_daily"}


# the ops console's pages (bench/console_at_size.py; indexes of engine/console_indexes.py) ------------


async def test_job_search_by_a_rare_kind_dialect_or_backend_reads_its_own_index(
    db: ExplainingDatabase,
) -> None:
    """A value no job has is the primary key walk's worst case (every row read for no match)."""
    jobs = JobRepository(db)
    for query, index in (
        (JobFilter(kind="catalog", limit=51), "jobs_kind_newest"),
        (JobFilter(dialect="nodialect", limit=51), "jobs_dialect_newest"),
        (JobFilter(backend="nobackend", limit=51), "jobs_backend_newest"),
        (JobFilter(kind="catalog", before_id=2000, limit=51), "jobs_kind_newest"),
    ):
        plan = await plan_of(db, lambda query=query: jobs.search(query))
        assert index_reads(plan) == {index}, (query, plan)
        assert not any(node["Node Type"] == "Sort" for node in plan)


async def test_account_page_sums_the_ledger_from_the_index_and_pages_purchases(
    db: ExplainingDatabase,
) -> None:
    plan = await plan_of(db, lambda: LedgerService(db).ledger_sum(1))
    assert index_reads(plan) == {"ledger_entries_account_amount"}
    assert {node["Node Type"] for node in plan} >= {"Index Only Scan"}
    plan = await plan_of(db, lambda: list_purchases(db, PurchaseFilter(account_id=1, limit=11)))
    reads = {node.get("Relation Name"): node.get("Index Name") for node in plan if "Relation Name" in node}
    assert reads.get("purchases") == "purchases_account_newest", plan
    assert not any(node["Node Type"] == "Sort" for node in plan)

"""Usage reports, read only from the ``usage_daily`` rollup, never from ``jobs`` or the ledger.

Usage queries that scan raw job or request logs collapse at about a million rows. Here the
database keeps one row per (UTC day, account, dialect, backend) up to date with triggers
(``engine_0003_ops_reruns_retention_usage``) in the very transactions that create a job, finish
it and move credits, so a report reads at most a few rows per account and day whatever the
size of ``jobs``, and it can never disagree with the ledger it was bumped beside.

What each number counts, per UTC day:

* ``jobs_submitted`` — jobs created that day (test and live keys alike, by dialect and backend)
* ``jobs_succeeded`` / ``jobs_failed`` — jobs that *ended* that day (a job submitted at 23:59 and
  finished at 00:01 counts as submitted one day and succeeded the next)
* ``credits_debited`` — credits charged for jobs (positive numbers)
* ``credits_refunded`` — credits given back for failed or refunded jobs
* ``credits_granted`` / ``credits_purchased`` — ops grants (and opening balances) / Stripe packs
* ``credits_adjusted`` — ops corrections, signed (a positive adjustment is a grant made through
  ``POST /admin/accounts/{id}/credits``; a negative one takes credits away)
* ``credits_reversed`` — credits taken back for refunded or disputed payments (positive numbers)
* ``generation_seconds`` — wall time from a worker's claim to the job's end, of jobs ended that day

Credits that belong to no job (grants, purchases, adjustments, reversals) have no backend: they
are reported under the backend ``null``.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

import msgspec

from engine.errors import InvalidRequest
from ledger.database import Database

UsageGroup = Literal["day", "account", "dialect", "backend"]
DEFAULT_DAYS = 30
MAX_DAYS = 366
"""The widest window one report may cover (a year and a day, for leap years)."""

COUNTERS = (
    "jobs_submitted",
    "jobs_succeeded",
    "jobs_failed",
    "credits_debited",
    "credits_refunded",
    "credits_granted",
    "credits_purchased",
    "credits_adjusted",
    "credits_reversed",
    "generation_seconds",
)
_SUMS = ", ".join(f"COALESCE(SUM({name}), 0) AS {name}" for name in COUNTERS)
_KEYS: dict[str, str] = {"day": "day", "account": "account", "dialect": "dialect", "backend": "backend"}


class UsageQuery(msgspec.Struct, frozen=True, kw_only=True):
    group: UsageGroup = "day"
    account_id: int | None = None
    first_day: date | None = None
    """Inclusive; default: 29 days before ``last_day`` (30 days in all)."""
    last_day: date | None = None
    """Inclusive; default: today (UTC)."""


class UsageRow(msgspec.Struct, frozen=True, kw_only=True):
    key: str | int | None
    """The group's value: a day (``2026-12-01``), an account id, a dialect, or a backend
    (``null`` for credits that belong to no job)."""
    jobs_submitted: int = 0
    jobs_succeeded: int = 0
    jobs_failed: int = 0
    credits_debited: int = 0
    credits_refunded: int = 0
    credits_granted: int = 0
    credits_purchased: int = 0
    credits_adjusted: int = 0
    credits_reversed: int = 0
    generation_seconds: float = 0.0


class UsageReport(msgspec.Struct, frozen=True, kw_only=True):
    group: UsageGroup
    account_id: int | None
    first_day: date
    last_day: date
    rows: list[UsageRow]
    totals: UsageRow


def window(first_day: date | None, last_day: date | None, *, today: date | None = None) -> tuple[date, date]:
    """The inclusive UTC days a report covers; raises InvalidRequest naming ``from`` or ``to``."""
    last = last_day or (first_day + timedelta(days=DEFAULT_DAYS - 1) if first_day else None)
    last = last or today or datetime.now(UTC).date()
    first = first_day or last - timedelta(days=DEFAULT_DAYS - 1)
    if first > last:
        raise InvalidRequest("from must not be after to", field="from")
    if (last - first).days + 1 > MAX_DAYS:
        raise InvalidRequest(f"the window may cover at most {MAX_DAYS} days", field="to")
    return first, last


class UsageRepository:
    """The rollup's one reading query, per group; the account filter uses ``(account, day)``."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def grouped(
        self, group: UsageGroup, first: date, last: date, account_id: int | None
    ) -> list[dict[str, Any]]:
        key = _KEYS[group]
        if account_id is None:
            return await self.db.fetch(
                f"SELECT {key} AS key, {_SUMS} FROM usage_daily WHERE day BETWEEN $1 AND $2"
                f" GROUP BY {key} ORDER BY {key}",
                first,
                last,
            )
        return await self.db.fetch(
            f"SELECT {key} AS key, {_SUMS} FROM usage_daily WHERE account = $3 AND day BETWEEN $1 AND $2"
            f" GROUP BY {key} ORDER BY {key}",
            first,
            last,
            account_id,
        )


def _row(record: dict[str, Any], group: UsageGroup) -> UsageRow:
    key: str | int | None = record["key"]
    if group == "day" and isinstance(key, date):
        key = key.isoformat()
    elif group == "backend" and key == "":
        key = None
    counters = {name: int(record[name]) for name in COUNTERS if name != "generation_seconds"}
    return UsageRow(key=key, generation_seconds=round(float(record["generation_seconds"]), 3), **counters)


def _total(rows: list[UsageRow]) -> UsageRow:
    sums: dict[str, Any] = {name: sum(getattr(row, name) for row in rows) for name in COUNTERS}
    sums["generation_seconds"] = round(float(sums["generation_seconds"]), 3)
    return UsageRow(key=None, **sums)


async def usage_report(db: Database, query: UsageQuery) -> UsageReport:
    """Usage over the query's UTC days, one row per group value (only values with usage)."""
    first, last = window(query.first_day, query.last_day)
    records = await UsageRepository(db).grouped(query.group, first, last, query.account_id)
    rows = [_row(record, query.group) for record in records]
    return UsageReport(
        group=query.group,
        account_id=query.account_id,
        first_day=first,
        last_day=last,
        rows=rows,
        totals=_total(rows),
    )

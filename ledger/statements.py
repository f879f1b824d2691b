"""An account's statement: its ledger entries newest first, as pages and as a streamed CSV.

Every entry already carries ``balance_after`` (written with the movement, under the account's
row lock), so a statement never recomputes running balances: each row is read as it was
written. Both forms page by keyset (``id < cursor``, newest first) on the ``(account, id)`` /
``(account, kind, id)`` indexes, so a page costs the same on the first day and after millions
of entries. The CSV export walks the same pages one after another and yields each page's lines
as soon as they are read, so an account's whole history never sits in memory; entries are
append-only and the walk goes downwards from where it started, so a movement made during an
export never shifts or repeats a row.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import msgspec

from ledger.models import EntryRecord
from ledger.service import LedgerService

CSV_COLUMNS = ("id", "created_at", "kind", "amount", "balance_after", "job_id", "reason", "reference")
CSV_PAGE_SIZE = 1000
"""Entries read per query while streaming a CSV export."""
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


class StatementPage(msgspec.Struct, frozen=True, kw_only=True):
    entries: list[EntryRecord]
    next_cursor: str | None
    """The id to pass as ``cursor`` for the next (older) page; None on the last page."""


async def statement_page(
    ledger: LedgerService, account_id: int, *, kind: str | None, before_id: int | None, limit: int
) -> StatementPage:
    """One page of the account's entries (raises NotFound for an unknown account)."""
    await ledger.account(account_id)
    entries = await ledger.entries_page(account_id, kind=kind, before_id=before_id, limit=limit + 1)
    more = len(entries) > limit
    entries = entries[:limit]
    return StatementPage(entries=entries, next_cursor=str(entries[-1].id) if more and entries else None)


def utc_text(moment: datetime) -> str:
    """``2026-12-01T09:30:00.123456Z``: the form msgspec gives the JSON pages, so both agree."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _cell(text: str | None) -> str:
    """Free text as a spreadsheet will show it: a leading ``=``, ``+``, ``-``, ``@`` would make
    Excel or LibreOffice evaluate an operator's reason as a formula, so such text gets a ``'``."""
    if not text:
        return ""
    return "'" + text if text.startswith(_FORMULA_START) else text


def csv_row(entry: EntryRecord) -> list[str]:
    return [
        str(entry.id),
        utc_text(entry.created_at),
        entry.kind,
        str(entry.amount),
        str(entry.balance_after),
        "" if entry.job_id is None else str(entry.job_id),
        _cell(entry.reason),
        _cell(entry.reference),
    ]


def _lines(rows: list[list[str]]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerows(rows)
    return buffer.getvalue()


async def statement_csv(
    ledger: LedgerService, account_id: int, *, kind: str | None = None, page_size: int = CSV_PAGE_SIZE
) -> AsyncIterator[str]:
    """The account's entries as CSV text (RFC 4180, CRLF, a header line first), newest first.

    Checks the account now (NotFound before any byte is sent) and returns an iterator that
    reads ``page_size`` entries per query and yields each page's lines.
    """
    await ledger.account(account_id)

    async def lines() -> AsyncIterator[str]:
        yield _lines([list(CSV_COLUMNS)])
        before: int | None = None
        while True:
            entries = await ledger.entries_page(account_id, kind=kind, before_id=before, limit=page_size)
            if not entries:
                return
            yield _lines([csv_row(entry) for entry in entries])
            if len(entries) < page_size:
                return
            before = entries[-1].id

    return lines()

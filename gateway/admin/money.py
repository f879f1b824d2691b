"""Admin routes for money and usage: statements, usage, purchases. All reads (viewer).

* ``GET /admin/accounts/{id}/ledger?kind=&cursor=&limit=`` — entries newest first, each with the
  balance after it
* ``GET /admin/accounts/{id}/ledger.csv?kind=`` — the same entries as one streamed CSV file
* ``GET /admin/usage?account=&from=&to=&group=day|account|dialect|backend`` — from the daily
  rollup (:mod:`engine.usage`), never from the jobs table
* ``GET /admin/payments?account=&status=&cursor=&limit=`` — purchases with their PaymentIntent,
  credits granted and reversed

Credit adjustments (``POST /admin/accounts/{id}/credits``) live with the accounts routes.
"""

from __future__ import annotations

from datetime import datetime

import msgspec
from litestar import get
from litestar.di import NamedDependency
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath
from litestar.response import Stream

from engine.payments_admin import PurchaseFilter, PurchaseView, list_purchases
from engine.runtime import Runtime
from engine.usage import UsageQuery, UsageReport, usage_report
from gateway.admin.params import (
    Cursor,
    FromDay,
    Id,
    IdFilter,
    LedgerKind,
    Limit,
    PaymentStatus,
    ToDay,
    UsageGroup,
    before_id,
)
from ledger.models import EntryRecord
from ledger.statements import statement_csv, statement_page


class EntryOut(msgspec.Struct, kw_only=True):
    id: int
    created_at: datetime
    kind: str
    amount: int
    """Signed: credits in are positive, credits out negative."""
    balance_after: int
    job_id: int | None
    reason: str
    reference: str | None


class LedgerPage(msgspec.Struct, kw_only=True):
    account_id: int
    entries: list[EntryOut]
    next_cursor: str | None


class PaymentsPage(msgspec.Struct, kw_only=True):
    payments: list[PurchaseView]
    next_cursor: str | None


def entry_out(entry: EntryRecord) -> EntryOut:
    return EntryOut(
        id=entry.id,
        created_at=entry.created_at,
        kind=entry.kind,
        amount=entry.amount,
        balance_after=entry.balance_after,
        job_id=entry.job_id,
        reason=entry.reason,
        reference=entry.reference,
    )


@get("/accounts/{account_id:int}/ledger", opt={"role": "viewer"})
async def account_ledger(
    account_id: FromPath[Id],
    runtime: NamedDependency[Runtime],
    kind: LedgerKind = None,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> LedgerPage:
    page = await statement_page(
        runtime.ledger, account_id, kind=kind, before_id=before_id(cursor), limit=limit
    )
    return LedgerPage(
        account_id=account_id,
        entries=[entry_out(entry) for entry in page.entries],
        next_cursor=page.next_cursor,
    )


@get("/accounts/{account_id:int}/ledger.csv", opt={"role": "viewer"}, media_type="text/csv")
async def account_ledger_csv(
    account_id: FromPath[Id], runtime: NamedDependency[Runtime], kind: LedgerKind = None
) -> Stream:
    lines = await statement_csv(runtime.ledger, account_id, kind=kind)
    suffix = f"-{kind}" if kind else ""
    return Stream(
        lines,
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="account-{account_id}-ledger{suffix}.csv"',
            "Cache-Control": "no-store",
        },
    )


@get("/usage", opt={"role": "viewer"})
async def usage(
    runtime: NamedDependency[Runtime],
    account: IdFilter = None,
    from_: FromDay = None,
    to: ToDay = None,
    group: UsageGroup = "day",
) -> UsageReport:
    return await usage_report(
        runtime.db, UsageQuery(group=group, account_id=account, first_day=from_, last_day=to)
    )


@get("/payments", opt={"role": "viewer"})
async def payments(
    runtime: NamedDependency[Runtime],
    account: IdFilter = None,
    status: PaymentStatus = None,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> PaymentsPage:
    found = await list_purchases(
        runtime.db,
        PurchaseFilter(account_id=account, status=status, before_id=before_id(cursor), limit=limit + 1),
    )
    page = found[:limit]
    return PaymentsPage(payments=page, next_cursor=str(page[-1].id) if len(found) > limit and page else None)


ROUTES: list[HTTPRouteHandler] = [account_ledger, account_ledger_csv, usage, payments]

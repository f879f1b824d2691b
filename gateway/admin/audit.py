"""``GET /admin/audit``: the audit trail, newest first, filtered and paged."""

from __future__ import annotations

from litestar import get
from litestar.di import NamedDependency
from litestar.handlers import HTTPRouteHandler

from engine.runtime import Runtime
from gateway.admin.params import Action, Cursor, IdFilter, Limit, OperatorFilter, Target, When, before_id
from gateway.admin.schemas import AuditOut, AuditPage
from ledger.audit import AuditFilter
from ledger.models import AuditRecord


def audit_out(entry: AuditRecord) -> AuditOut:
    return AuditOut(
        id=entry.id,
        operator=entry.operator,
        action=entry.action,
        target=f"{entry.target_type}:{entry.target_id}",
        account_id=entry.account_id,
        reason=entry.reason,
        change=entry.change,
        request_id=entry.request_id,
        created_at=entry.created_at,
    )


@get("/audit", opt={"role": "viewer"})
async def search_audit(
    runtime: NamedDependency[Runtime],
    operator: OperatorFilter = None,
    action: Action = None,
    target: Target = None,
    account: IdFilter = None,
    since: When = None,
    until: When = None,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> AuditPage:
    target_type, _, target_id = (target or "").partition(":")
    entries = await runtime.audit.search(
        AuditFilter(
            operator=operator,
            action=action,
            target_type=target_type or None,
            target_id=target_id or None,
            account_id=account,
            since=since,
            until=until,
            before_id=before_id(cursor),
            limit=limit + 1,
        )
    )
    more = len(entries) > limit
    entries = entries[:limit]
    return AuditPage(
        entries=[audit_out(entry) for entry in entries],
        next_cursor=str(entries[-1].id) if more and entries else None,
    )


ROUTES: list[HTTPRouteHandler] = [search_audit]

"""The audit trail of every admin write: who did what to which target, why, and what changed.

Each entry is written by the service that makes the change, in the same transaction, so a
change and its entry commit together or not at all. Entries are append-only: a trigger
refuses UPDATE and DELETE, exactly like ledger entries. Money movements, refunds, cancels,
key disables and erasures need a reason; :func:`require_reason` is the one check.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import msgspec

from ledger.database import Database
from ledger.errors import InvalidRequest
from ledger.models import Actor, AuditRecord

MAX_REASON = 500


def require_reason(reason: str | None) -> str:
    """The reason a destructive or money-moving action must carry: 1 to 500 characters."""
    text = (reason or "").strip()
    if not text:
        raise InvalidRequest("reason is required for this action", field="reason")
    if len(text) > MAX_REASON:
        raise InvalidRequest(f"reason must be at most {MAX_REASON} characters", field="reason")
    if "\x00" in text:
        raise InvalidRequest("reason must not contain NUL characters", field="reason")
    return text


def _json_safe(value: Any) -> Any:
    return json.loads(msgspec.json.encode(value))


def _record(row: dict[str, Any]) -> AuditRecord:
    change = row["change"]
    if isinstance(change, str):
        change = json.loads(change)
    return AuditRecord(
        id=row["id"],
        operator=row["operator"],
        action=row["action"],
        target_type=row["target_type"],
        target_id=row["target_id"],
        account_id=row["account"],
        reason=row["reason"],
        change=change or {},
        request_id=row["request_id"],
        created_at=row["created_at"],
    )


class AuditFilter(msgspec.Struct, frozen=True, kw_only=True):
    operator: str | None = None
    action: str | None = None
    target_type: str | None = None
    target_id: str | None = None
    account_id: int | None = None
    since: datetime | None = None
    until: datetime | None = None
    before_id: int | None = None
    limit: int = 50


class AuditRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def insert(
        self,
        *,
        operator: str,
        action: str,
        target_type: str,
        target_id: str,
        account_id: int | None,
        reason: str,
        change: dict[str, Any],
        request_id: str | None,
    ) -> AuditRecord:
        row = await self.db.fetchrow(
            """INSERT INTO audit_log (operator, action, target_type, target_id, account, reason, change,
                                      request_id)
               VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8) RETURNING *""",
            operator,
            action,
            target_type,
            target_id,
            account_id,
            reason,
            json.dumps(change),
            request_id,
        )
        assert row is not None
        return _record(row)

    async def search(self, query: AuditFilter) -> list[AuditRecord]:
        rows = await self.db.fetch(
            """SELECT * FROM audit_log
               WHERE ($1::text IS NULL OR operator = $1)
                 AND ($2::text IS NULL OR action = $2)
                 AND ($3::text IS NULL OR target_type = $3)
                 AND ($4::text IS NULL OR target_id = $4)
                 AND ($5::bigint IS NULL OR account = $5)
                 AND ($6::timestamptz IS NULL OR created_at >= $6)
                 AND ($7::timestamptz IS NULL OR created_at < $7)
                 AND ($8::bigint IS NULL OR id < $8)
               ORDER BY id DESC LIMIT $9""",
            query.operator,
            query.action,
            query.target_type,
            query.target_id,
            query.account_id,
            query.since,
            query.until,
            query.before_id,
            query.limit,
        )
        return [_record(row) for row in rows]


class AuditLog:
    """Appends and reads audit entries; writers call :meth:`record` inside their transaction."""

    def __init__(self, db: Database) -> None:
        self.repo = AuditRepository(db)

    async def record(
        self,
        actor: Actor,
        action: str,
        *,
        target_type: str,
        target_id: int | str,
        account_id: int | None = None,
        reason: str = "",
        before: Any = None,
        after: Any = None,
    ) -> AuditRecord:
        """One entry; ``before``/``after`` are the changed fields (any msgspec-encodable values)."""
        change: dict[str, Any] = {}
        if before is not None:
            change["before"] = _json_safe(before)
        if after is not None:
            change["after"] = _json_safe(after)
        return await self.repo.insert(
            operator=actor.operator,
            action=action,
            target_type=target_type,
            target_id=str(target_id),
            account_id=account_id,
            reason=reason,
            change=change,
            request_id=actor.request_id,
        )

    async def search(self, query: AuditFilter) -> list[AuditRecord]:
        return await self.repo.search(query)

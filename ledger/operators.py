"""Operators: the named people behind the admin API, the CLI and the console, and their roles.

Roles are ordered — ``viewer`` reads everything; ``support`` also cancels, refunds, re-runs,
adjusts credits, disables and enables keys and re-sends webhooks; ``admin`` also manages
accounts, plans, prices, operators, key rotation and erasure — so a check is a comparison of
ranks. Tokens (``adm_…``) are shown once and stored as a SHA-256 hash, like API keys.
``TRYON_ADMIN_TOKEN`` is the bootstrap operator ``root`` (role ``admin``); it lives in the
settings, not in the table, so a deployment can never lock itself out.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from typing import Any, Literal

from ledger.audit import AuditLog, require_reason
from ledger.database import Database
from ledger.errors import AccessDenied, Conflict, InvalidRequest, NotFound, Unauthenticated
from ledger.models import Actor, OperatorRecord

Role = Literal["viewer", "support", "admin"]
ROLES: tuple[Role, ...] = ("viewer", "support", "admin")
ROOT = "root"
ROOT_OPERATOR = OperatorRecord(id=0, name=ROOT, role="admin", token_hint="", disabled=False, created_at=None)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,99}$")


def allows(role: str, needed: str) -> bool:
    """Whether ``role`` may do what needs ``needed`` (roles are ordered viewer < support < admin)."""
    if role not in ROLES or needed not in ROLES:
        return False
    return ROLES.index(role) >= ROLES.index(needed)


def require(operator: OperatorRecord, needed: str) -> None:
    if not allows(operator.role, needed):
        raise AccessDenied(f"this action needs the {needed} role; {operator.name} is {operator.role}")


def new_token() -> str:
    return "adm_" + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _record(row: dict[str, Any]) -> OperatorRecord:
    return OperatorRecord(
        id=row["id"],
        name=row["name"],
        role=row["role"],
        token_hint=row["token_hint"],
        disabled=row["disabled"],
        created_at=row["created_at"],
    )


class OperatorRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def insert(
        self, *, name: str, role: str, token_hash: str, token_hint: str
    ) -> OperatorRecord | None:
        row = await self.db.fetchrow(
            """INSERT INTO operators (name, role, token_hash, token_hint) VALUES ($1, $2, $3, $4)
               ON CONFLICT (name) DO NOTHING RETURNING *""",
            name,
            role,
            token_hash,
            token_hint,
        )
        return None if row is None else _record(row)

    async def by_token_hash(self, token_hash: str) -> OperatorRecord | None:
        row = await self.db.fetchrow("SELECT * FROM operators WHERE token_hash = $1", token_hash)
        return None if row is None else _record(row)

    async def by_name(self, name: str) -> OperatorRecord | None:
        row = await self.db.fetchrow("SELECT * FROM operators WHERE name = $1", name)
        return None if row is None else _record(row)

    async def all(self) -> list[OperatorRecord]:
        return [_record(row) for row in await self.db.fetch("SELECT * FROM operators ORDER BY id")]

    async def set_disabled(self, name: str, disabled: bool) -> OperatorRecord | None:
        row = await self.db.fetchrow(
            "UPDATE operators SET disabled = $2 WHERE name = $1 RETURNING *", name, disabled
        )
        return None if row is None else _record(row)


class OperatorService:
    def __init__(self, db: Database, audit: AuditLog) -> None:
        self.repo = OperatorRepository(db)
        self.audit = audit

    async def authenticate(self, token: str | None, root_token: str) -> OperatorRecord:
        """The operator a bearer token belongs to; root's token is compared in constant time."""
        if not token:
            raise Unauthenticated("Missing or invalid admin token")
        if root_token and hmac.compare_digest(token.encode(), root_token.encode()):
            return ROOT_OPERATOR
        if not token.startswith("adm_") or len(token) > 200:
            raise Unauthenticated("Missing or invalid admin token")
        operator = await self.repo.by_token_hash(hash_token(token))
        if operator is None or operator.disabled:
            raise Unauthenticated("Missing or invalid admin token")
        return operator

    async def create(self, actor: Actor, *, name: str, role: str) -> tuple[OperatorRecord, str]:
        """A new operator and its token (shown once)."""
        if not _NAME.match(name):
            raise InvalidRequest(
                "name must be 1-100 characters: letters, digits and . _ @ -, starting with a letter or digit",
                field="name",
            )
        if role not in ROLES:
            raise InvalidRequest(f"role must be one of {', '.join(ROLES)}", field="role")
        if name == ROOT:
            raise Conflict("the name root is the bootstrap operator's")
        token = new_token()
        operator = await self.repo.insert(
            name=name, role=role, token_hash=hash_token(token), token_hint=token[:10] + "…"
        )
        if operator is None:
            raise Conflict(f"an operator named {name} exists already")
        await self.audit.record(
            actor, "operator.create", target_type="operator", target_id=name, after={"role": role}
        )
        return operator, token

    async def list(self) -> list[OperatorRecord]:
        return [ROOT_OPERATOR, *await self.repo.all()]

    async def set_disabled(self, actor: Actor, name: str, *, disabled: bool, reason: str) -> OperatorRecord:
        if disabled:
            reason = require_reason(reason)
        if name == ROOT:
            raise Conflict("root is configured by TRYON_ADMIN_TOKEN; unset it to retire root")
        before = await self.repo.by_name(name)
        if before is None:
            raise NotFound("Operator not found")
        operator = await self.repo.set_disabled(name, disabled)
        assert operator is not None
        await self.audit.record(
            actor,
            "operator.disable" if disabled else "operator.enable",
            target_type="operator",
            target_id=name,
            reason=reason,
            before={"disabled": before.disabled},
            after={"disabled": disabled},
        )
        return operator

"""Every query the ledger runs. Services call these; nothing else touches the tables."""

from __future__ import annotations

import json
from typing import Any

from ledger.database import Database
from ledger.models import AccountRecord, ApiKeyRecord, EntryRecord


def _account(row: dict[str, Any]) -> AccountRecord:
    prices = row["prices"]
    if isinstance(prices, str):
        prices = json.loads(prices)
    return AccountRecord(
        id=row["id"],
        name=row["name"],
        dialect=row["dialect"],
        plan=row["plan"],
        balance=row["balance"],
        prices=prices or {},
        created_at=row["created_at"],
    )


def _key(row: dict[str, Any]) -> ApiKeyRecord:
    return ApiKeyRecord(
        id=row["id"],
        account_id=row["account"],
        dialect=row["dialect"],
        mode=row["mode"],
        name=row["name"],
        key_hint=row["key_hint"],
        webhook_secret=row["webhook_secret"],
        disabled=row["disabled"],
        disabled_reason=row["disabled_reason"],
        created_at=row["created_at"],
    )


def _entry(row: dict[str, Any]) -> EntryRecord:
    return EntryRecord(
        id=row["id"],
        account_id=row["account"],
        kind=row["kind"],
        amount=row["amount"],
        balance_after=row["balance_after"],
        job_id=row["job_id"],
        reason=row["reason"],
        reference=row["reference"],
        created_at=row["created_at"],
    )


class LedgerRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    # accounts -----------------------------------------------------------------
    async def insert_account(self, *, name: str, dialect: str, plan: str) -> AccountRecord:
        row = await self.db.fetchrow(
            "INSERT INTO accounts (name, dialect, plan) VALUES ($1, $2, $3) RETURNING *",
            name,
            dialect,
            plan,
        )
        assert row is not None
        return _account(row)

    async def get_account(self, account_id: int) -> AccountRecord | None:
        row = await self.db.fetchrow("SELECT * FROM accounts WHERE id = $1", account_id)
        return None if row is None else _account(row)

    async def set_plan(self, account_id: int, plan: str) -> None:
        await self.db.fetch("UPDATE accounts SET plan = $2 WHERE id = $1", account_id, plan)

    async def lock(self, account_id: int) -> None:
        await self.db.fetch("SELECT id FROM accounts WHERE id = $1 FOR UPDATE", account_id)

    async def take_from_balance(self, account_id: int, amount: int) -> int | None:
        """Subtract ``amount`` unless that would leave the balance below zero.

        Returns the new balance, or None when the balance does not cover it. The
        row lock taken here serialises concurrent debits on one account until the
        surrounding transaction ends.
        """
        row = await self.db.fetchrow(
            "UPDATE accounts SET balance = balance - $2"
            " WHERE id = $1 AND balance - $2 >= 0 RETURNING balance",
            account_id,
            amount,
        )
        return None if row is None else int(row["balance"])

    async def add_to_balance(self, account_id: int, amount: int) -> int:
        """Add a (possibly negative) amount with no floor: callers decide the rule."""
        row = await self.db.fetchrow(
            "UPDATE accounts SET balance = balance + $2 WHERE id = $1 RETURNING balance", account_id, amount
        )
        assert row is not None, f"account {account_id} vanished"
        return int(row["balance"])

    async def balance(self, account_id: int) -> int | None:
        row = await self.db.fetchrow("SELECT balance FROM accounts WHERE id = $1", account_id)
        return None if row is None else int(row["balance"])

    # entries ------------------------------------------------------------------
    async def insert_entry(
        self,
        *,
        account_id: int,
        kind: str,
        amount: int,
        balance_after: int,
        job_id: int | None = None,
        reason: str = "",
        reference: str | None = None,
    ) -> EntryRecord:
        row = await self.db.fetchrow(
            "INSERT INTO ledger_entries (account, kind, amount, balance_after, job_id, reason, reference)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING *",
            account_id,
            kind,
            amount,
            balance_after,
            job_id,
            reason,
            reference,
        )
        assert row is not None
        return _entry(row)

    async def job_entry(self, job_id: int, kind: str) -> EntryRecord | None:
        row = await self.db.fetchrow(
            "SELECT * FROM ledger_entries WHERE job_id = $1 AND kind = $2", job_id, kind
        )
        return None if row is None else _entry(row)

    async def entries(self, account_id: int, limit: int = 100) -> list[EntryRecord]:
        rows = await self.db.fetch(
            "SELECT * FROM ledger_entries WHERE account = $1 ORDER BY id DESC LIMIT $2", account_id, limit
        )
        return [_entry(row) for row in rows]

    async def entries_sum(self, account_id: int) -> int:
        row = await self.db.fetchrow(
            "SELECT COALESCE(SUM(amount), 0) AS total FROM ledger_entries WHERE account = $1", account_id
        )
        assert row is not None
        return int(row["total"])

    async def account_audit(self) -> list[dict[str, Any]]:
        """Every account's balance beside the sum of its entries and whether a reversal exists."""
        return await self.db.fetch(
            """SELECT a.id, a.balance,
                      COALESCE(SUM(e.amount), 0) AS entries_sum,
                      COALESCE(BOOL_OR(e.kind = 'reversal'), false) AS has_reversal
               FROM accounts a LEFT JOIN ledger_entries e ON e.account = a.id
               GROUP BY a.id, a.balance ORDER BY a.id"""
        )

    # keys ---------------------------------------------------------------------
    async def insert_key(
        self,
        *,
        account_id: int,
        dialect: str,
        mode: str,
        name: str,
        key_hash: str,
        key_hint: str,
        webhook_secret: str | None,
    ) -> ApiKeyRecord:
        row = await self.db.fetchrow(
            "INSERT INTO api_keys (account, dialect, mode, name, key_hash, key_hint, webhook_secret)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING *",
            account_id,
            dialect,
            mode,
            name,
            key_hash,
            key_hint,
            webhook_secret,
        )
        assert row is not None
        return _key(row)

    async def key_by_hash(self, key_hash: str) -> ApiKeyRecord | None:
        row = await self.db.fetchrow("SELECT * FROM api_keys WHERE key_hash = $1", key_hash)
        return None if row is None else _key(row)

    async def get_key(self, key_id: int) -> ApiKeyRecord | None:
        row = await self.db.fetchrow("SELECT * FROM api_keys WHERE id = $1", key_id)
        return None if row is None else _key(row)

    async def has_test_key(self, account_id: int) -> bool:
        row = await self.db.fetchrow(
            "SELECT 1 FROM api_keys WHERE account = $1 AND mode = 'test'", account_id
        )
        return row is not None

    async def set_key_disabled(self, key_id: int, disabled: bool, reason: str | None) -> ApiKeyRecord | None:
        row = await self.db.fetchrow(
            "UPDATE api_keys SET disabled = $2, disabled_reason = $3 WHERE id = $1 RETURNING *",
            key_id,
            disabled,
            reason,
        )
        return None if row is None else _key(row)

"""Every query the ledger runs. Services call these; nothing else touches the tables."""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Any

from ledger.database import Database
from ledger.models import AccountRecord, ApiKeyRecord, EntryRecord, UsageDayRecord


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
        email=row["email"],
        suspended=row["suspended"],
        suspended_reason=row["suspended_reason"],
        erased_at=row["erased_at"],
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
        expires_at=row["expires_at"],
        last_used_at=row["last_used_at"],
        previous_key_expires_at=row["previous_key_expires_at"] if row["previous_key_hash"] else None,
        previous_webhook_secret=row["previous_webhook_secret"],
        previous_webhook_secret_expires_at=row["previous_webhook_secret_expires_at"],
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

    async def job_entries(self, job_id: int) -> list[EntryRecord]:
        # Only debits and refunds ever carry a job_id; naming them lets the partial unique index
        # ledger_entries_once_per_job (job_id, kind) serve this — without it, a seq scan of the
        # whole ledger (hundreds of ms at 2M entries, bench/admin_at_size.py).
        rows = await self.db.fetch(
            "SELECT * FROM ledger_entries WHERE job_id = $1 AND kind IN ('debit', 'refund') ORDER BY id",
            job_id,
        )
        return [_entry(row) for row in rows]

    async def entries(self, account_id: int, limit: int = 100) -> list[EntryRecord]:
        rows = await self.db.fetch(
            "SELECT * FROM ledger_entries WHERE account = $1 ORDER BY id DESC LIMIT $2", account_id, limit
        )
        return [_entry(row) for row in rows]

    async def entries_page(
        self, account_id: int, *, kind: str | None, before_id: int | None, limit: int
    ) -> list[EntryRecord]:
        """One page of an account's entries, newest first, continuing below ``before_id``.

        Keyset paging on ``(account, id)`` (or ``(account, kind, id)`` with a kind): one index
        range scan however long the ledger is, never an OFFSET. The SQL names only the filters
        given (values stay parameters), so each shape gets its own plan on its own index.
        """
        conditions: list[str] = ["account = $1"]
        args: list[Any] = [account_id]
        for condition, value in (("kind = ${}", kind), ("id < ${}", before_id)):
            if value is not None:
                args.append(value)
                conditions.append(condition.format(len(args)))
        args.append(limit)
        where = " AND ".join(conditions)
        rows = await self.db.fetch(
            f"SELECT * FROM ledger_entries WHERE {where} ORDER BY id DESC LIMIT ${len(args)}", *args
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
        expires_at: datetime | None = None,
    ) -> ApiKeyRecord:
        row = await self.db.fetchrow(
            "INSERT INTO api_keys"
            " (account, dialect, mode, name, key_hash, key_hint, webhook_secret, expires_at)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING *",
            account_id,
            dialect,
            mode,
            name,
            key_hash,
            key_hint,
            webhook_secret,
            expires_at,
        )
        assert row is not None
        return _key(row)

    async def key_by_hash(self, key_hash: str) -> ApiKeyRecord | None:
        """The key whose current secret hashes to ``key_hash``, or whose previous one does and is
        still inside its rotation grace period (two unique-index probes)."""
        row = await self.db.fetchrow(
            "SELECT * FROM api_keys WHERE key_hash = $1"
            " OR (previous_key_hash = $1 AND previous_key_expires_at > now()) LIMIT 1",
            key_hash,
        )
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

    # operators' account and key management (issue 8) ------------------------------------------
    async def search_accounts(
        self,
        *,
        account_id: int | None,
        text_from: str | None,
        text_to: str | None,
        hint_from: str | None,
        hint_to: str | None,
        key_hash: str | None,
        dialect: str | None,
        plan: str | None,
        before_id: int | None,
        limit: int,
    ) -> list[AccountRecord]:
        """Accounts newest first, filtered; with a search, the union of five index probes.

        ``text_from``/``text_to`` bound a case-folded prefix range on ``lower(name)`` and
        ``lower(email)`` (their ``text_pattern_ops`` indexes; the ``~>=~``/``~<~`` operators keep
        the index usable under a generic prepared plan, where ``LIKE $1`` would not),
        ``hint_from``/``hint_to`` one on ``api_keys.key_hint``; ``key_hash`` finds the account of
        a whole pasted key; ``account_id`` the account itself. Without any, every account.
        """
        filters = (
            "($1::text IS NULL OR a.dialect = $1) AND ($2::text IS NULL OR a.plan = $2)"
            " AND ($3::bigint IS NULL OR a.id < $3)"
        )
        searching = any(v is not None for v in (account_id, text_from, hint_from, key_hash))
        if not searching:
            rows = await self.db.fetch(
                f"SELECT a.* FROM accounts a WHERE {filters} ORDER BY a.id DESC LIMIT $4",
                dialect,
                plan,
                before_id,
                limit,
            )
            return [_account(row) for row in rows]
        rows = await self.db.fetch(
            f"""WITH hits AS (
                    SELECT id FROM accounts WHERE id = $5::bigint
                    UNION SELECT id FROM accounts
                        WHERE lower(name) ~>=~ $6::text AND lower(name) ~<~ $7::text
                    UNION SELECT id FROM accounts
                        WHERE lower(email) ~>=~ $6::text AND lower(email) ~<~ $7::text
                    UNION SELECT account FROM api_keys
                        WHERE key_hint ~>=~ $8::text AND key_hint ~<~ $9::text
                    UNION SELECT account FROM api_keys WHERE key_hash = $10::text
                )
                SELECT a.* FROM accounts a JOIN hits h ON h.id = a.id
                WHERE {filters} ORDER BY a.id DESC LIMIT $4""",
            dialect,
            plan,
            before_id,
            limit,
            account_id,
            text_from,
            text_to,
            hint_from,
            hint_to,
            key_hash,
        )
        return [_account(row) for row in rows]

    async def account_for_update(self, account_id: int) -> AccountRecord | None:
        row = await self.db.fetchrow("SELECT * FROM accounts WHERE id = $1 FOR UPDATE", account_id)
        return None if row is None else _account(row)

    async def update_account(
        self,
        account_id: int,
        *,
        name: str,
        email: str | None,
        plan: str,
        prices: dict[str, int],
        suspended: bool,
        suspended_reason: str | None,
    ) -> AccountRecord:
        row = await self.db.fetchrow(
            """UPDATE accounts SET name = $2, email = $3, plan = $4, prices = $5::jsonb, suspended = $6,
                                   suspended_reason = $7
               WHERE id = $1 RETURNING *""",
            account_id,
            name,
            email,
            plan,
            json.dumps(prices),
            suspended,
            suspended_reason,
        )
        assert row is not None, f"account {account_id} vanished"
        return _account(row)

    async def mark_erased(self, account_id: int, *, name: str) -> AccountRecord:
        """Replace the account's personal fields; ``erased_at`` keeps the first erasure's time."""
        row = await self.db.fetchrow(
            """UPDATE accounts SET name = $2, email = NULL, erased_at = COALESCE(erased_at, now())
               WHERE id = $1 RETURNING *""",
            account_id,
            name,
        )
        assert row is not None, f"account {account_id} vanished"
        return _account(row)

    async def account_keys(self, account_id: int) -> list[ApiKeyRecord]:
        rows = await self.db.fetch("SELECT * FROM api_keys WHERE account = $1 ORDER BY id", account_id)
        return [_key(row) for row in rows]

    async def disable_account_keys(self, account_id: int, reason: str) -> list[int]:
        """Disable every enabled key of the account; returns the ids it disabled now."""
        rows = await self.db.fetch(
            """UPDATE api_keys SET disabled = true, disabled_reason = $2
               WHERE account = $1 AND NOT disabled RETURNING id""",
            account_id,
            reason,
        )
        return [int(row["id"]) for row in rows]

    async def rotate_key(
        self, key_id: int, *, key_hash: str, key_hint: str, grace_seconds: int
    ) -> ApiKeyRecord | None:
        """Give the key row a new secret; the current one becomes the previous, valid for the grace
        (none at 0 s). A previous secret still in its grace from an earlier rotation is dropped."""
        row = await self.db.fetchrow(
            """UPDATE api_keys SET
                   previous_key_hash = CASE WHEN $4::integer > 0 THEN key_hash END,
                   previous_key_expires_at =
                       CASE WHEN $4::integer > 0 THEN now() + make_interval(secs => $4::integer) END,
                   key_hash = $2, key_hint = $3
               WHERE id = $1 RETURNING *""",
            key_id,
            key_hash,
            key_hint,
            grace_seconds,
        )
        return None if row is None else _key(row)

    async def rotate_webhook_secret(
        self, key_id: int, *, secret: str, grace_seconds: int
    ) -> ApiKeyRecord | None:
        row = await self.db.fetchrow(
            """UPDATE api_keys SET
                   previous_webhook_secret = CASE WHEN $3::integer > 0 THEN webhook_secret END,
                   previous_webhook_secret_expires_at =
                       CASE WHEN $3::integer > 0 THEN now() + make_interval(secs => $3::integer) END,
                   webhook_secret = $2
               WHERE id = $1 RETURNING *""",
            key_id,
            secret,
            grace_seconds,
        )
        return None if row is None else _key(row)

    async def touch_keys(self, key_ids: list[int], used_at: list[datetime]) -> int:
        """Move ``last_used_at`` forward (never back) for many keys in one statement."""
        rows = await self.db.fetch(
            """UPDATE api_keys k SET last_used_at = u.used_at
               FROM unnest($1::bigint[], $2::timestamptz[]) AS u(id, used_at)
               WHERE k.id = u.id AND (k.last_used_at IS NULL OR k.last_used_at < u.used_at)
               RETURNING k.id""",
            key_ids,
            used_at,
        )
        return len(rows)

    async def usage_days(self, account_id: int, since: date) -> list[UsageDayRecord]:
        """The account's ``usage_daily`` rows from ``since`` on, one per day (index on account, day)."""
        rows = await self.db.fetch(
            """SELECT day, SUM(jobs_submitted)::bigint AS jobs_submitted,
                      SUM(jobs_succeeded)::bigint AS jobs_succeeded, SUM(jobs_failed)::bigint AS jobs_failed,
                      SUM(credits_debited)::bigint AS credits_debited,
                      SUM(credits_refunded)::bigint AS credits_refunded,
                      SUM(credits_granted)::bigint AS credits_granted,
                      SUM(credits_purchased)::bigint AS credits_purchased,
                      SUM(credits_adjusted)::bigint AS credits_adjusted,
                      SUM(credits_reversed)::bigint AS credits_reversed,
                      SUM(generation_seconds) AS generation_seconds
               FROM usage_daily WHERE account = $1 AND day >= $2 GROUP BY day ORDER BY day""",
            account_id,
            since,
        )
        return [UsageDayRecord(**row) for row in rows]

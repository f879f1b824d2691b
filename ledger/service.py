"""The single credit ledger: every movement of credits goes through here.

Each movement updates the account's balance and appends one immutable entry
recording the signed amount and the balance after it, in the caller's
transaction (services never commit). The balance therefore always equals the
sum of the entries, which ``tryon-gateway ledger verify`` checks.
"""

from __future__ import annotations

from datetime import datetime

import asyncpg

from ledger.database import Database
from ledger.errors import Conflict, InsufficientCredits, NotFound
from ledger.keys import Dialect, KeyMode, hash_key, key_hint, new_key, new_webhook_secret
from ledger.models import AccountRecord, ApiKeyRecord, EntryRecord, MintedKey
from ledger.repository import LedgerRepository


class LedgerService:
    def __init__(self, db: Database) -> None:
        self.repo = LedgerRepository(db)

    # accounts and keys --------------------------------------------------------
    async def open_account(self, *, name: str, dialect: Dialect, plan: str, credits: int) -> AccountRecord:
        account = await self.repo.insert_account(name=name, dialect=dialect, plan=plan)
        if credits:
            await self.grant(account.id, credits, reason="opening balance")
        return await self.account(account.id)

    async def account(self, account_id: int) -> AccountRecord:
        account = await self.repo.get_account(account_id)
        if account is None:
            raise NotFound("Account not found")
        return account

    async def lock_account(self, account_id: int) -> None:
        """Hold the account's row lock until the caller's transaction ends (serialises admissions)."""
        await self.repo.lock(account_id)

    async def mint_key(
        self, account_id: int, *, mode: KeyMode, name: str, expires_at: datetime | None = None
    ) -> MintedKey:
        account = await self.account(account_id)
        if mode == "test" and await self.repo.has_test_key(account_id):
            raise Conflict("This account already has a test key")
        plaintext = new_key(account.dialect, mode)
        secret = new_webhook_secret() if account.dialect == "fitinview" else None
        try:
            record = await self.repo.insert_key(
                account_id=account_id,
                dialect=account.dialect,
                mode=mode,
                name=name,
                key_hash=hash_key(plaintext),
                key_hint=key_hint(plaintext),
                webhook_secret=secret,
                expires_at=expires_at,
            )
        except asyncpg.UniqueViolationError:
            raise Conflict("This account already has a test key") from None
        return MintedKey(record=record, plaintext=plaintext, webhook_secret=secret)

    async def key_for_token(self, token: str) -> ApiKeyRecord | None:
        return await self.repo.key_by_hash(hash_key(token))

    async def key(self, key_id: int) -> ApiKeyRecord:
        key = await self.repo.get_key(key_id)
        if key is None:
            raise NotFound("Key not found")
        return key

    async def set_key_disabled(self, key_id: int, *, disabled: bool, reason: str | None) -> ApiKeyRecord:
        key = await self.repo.set_key_disabled(key_id, disabled, reason if disabled else None)
        if key is None:
            raise NotFound("Key not found")
        return key

    # movements ----------------------------------------------------------------
    async def grant(
        self, account_id: int, amount: int, *, reason: str, kind: str = "grant", reference: str | None = None
    ) -> int:
        """Add credits (ops grants, purchases). Returns the new balance."""
        if amount <= 0:
            raise ValueError("a grant must be positive")
        await self.account(account_id)
        balance = await self.repo.add_to_balance(account_id, amount)
        await self.repo.insert_entry(
            account_id=account_id,
            kind=kind,
            amount=amount,
            balance_after=balance,
            reason=reason,
            reference=reference,
        )
        return balance

    async def adjust(self, account_id: int, amount: int, *, reason: str) -> int:
        """An ops correction in either direction; it may not take the balance below zero."""
        if amount > 0:
            return await self.grant(account_id, amount, reason=reason, kind="adjust")
        if amount == 0:
            raise ValueError("an adjustment must not be zero")
        await self.account(account_id)
        balance = await self.repo.take_from_balance(account_id, -amount)
        if balance is None:
            available = await self.repo.balance(account_id) or 0
            raise InsufficientCredits(required=-amount, available=available)
        await self.repo.insert_entry(
            account_id=account_id, kind="adjust", amount=amount, balance_after=balance, reason=reason
        )
        return balance

    async def reverse(self, account_id: int, amount: int, *, reason: str, reference: str) -> int:
        """Take back credits of a reversed payment; the only movement allowed below zero."""
        balance = await self.repo.add_to_balance(account_id, -amount)
        await self.repo.insert_entry(
            account_id=account_id,
            kind="reversal",
            amount=-amount,
            balance_after=balance,
            reason=reason,
            reference=reference,
        )
        return balance

    async def debit_for_job(self, account_id: int, job_id: int, amount: int) -> int:
        """Charge a job its price, in the transaction that creates the job.

        Raises InsufficientCredits (and writes nothing) if the balance does not
        cover the price — including any price at all while the balance is negative.
        """
        balance = await self.repo.take_from_balance(account_id, amount)
        if balance is None:
            available = await self.repo.balance(account_id)
            if available is None:
                raise NotFound("Account not found")
            raise InsufficientCredits(required=amount, available=max(available, 0))
        await self.repo.insert_entry(
            account_id=account_id,
            kind="debit",
            amount=-amount,
            balance_after=balance,
            job_id=job_id,
            reason="job submitted",
        )
        return balance

    async def refund_job(self, account_id: int, job_id: int, *, reason: str) -> int:
        """Give a job's debit back, once. Returns the amount refunded (0 if nothing to refund).

        The unique index on (job_id, kind) makes a second refund impossible even if
        two callers race; callers also transition the job in the same transaction.
        """
        debit = await self.repo.job_entry(job_id, "debit")
        if debit is None or debit.amount == 0:
            return 0
        if await self.repo.job_entry(job_id, "refund") is not None:
            return 0
        amount = -debit.amount
        balance = await self.repo.add_to_balance(account_id, amount)
        await self.repo.insert_entry(
            account_id=account_id,
            kind="refund",
            amount=amount,
            balance_after=balance,
            job_id=job_id,
            reason=reason,
        )
        return amount

    async def refund_job_once(self, account_id: int, job_id: int, *, reason: str, reference: str) -> int:
        """An operator's goodwill refund of a job's debit: exactly once, or :class:`Conflict`.

        Unlike :meth:`refund_job` (the failure rule, which may be asked twice and answers 0), a
        second goodwill refund is an error the operator must see. ``reference`` (unique in the
        ledger, e.g. ``goodwill:job_…``) marks the entry so ``ledger verify`` can tell it from a
        failure refund. Racing callers meet the unique (job_id, kind) index: one wins, the others
        get Conflict. Returns the amount refunded.
        """
        debit = await self.repo.job_entry(job_id, "debit")
        if debit is None or debit.amount == 0:
            raise Conflict("Nothing to refund: the job cost no credits")
        if await self.repo.job_entry(job_id, "refund") is not None:
            raise Conflict("The job was already refunded")
        amount = -debit.amount
        balance = await self.repo.add_to_balance(account_id, amount)
        try:
            await self.repo.insert_entry(
                account_id=account_id,
                kind="refund",
                amount=amount,
                balance_after=balance,
                job_id=job_id,
                reason=reason,
                reference=reference,
            )
        except asyncpg.UniqueViolationError:
            raise Conflict("The job was already refunded") from None
        return amount

    async def job_entries(self, job_id: int) -> list[EntryRecord]:
        """Every ledger entry of one job (its debit, its refund), oldest first."""
        return await self.repo.job_entries(job_id)

    async def balance(self, account_id: int) -> int:
        balance = await self.repo.balance(account_id)
        if balance is None:
            raise NotFound("Account not found")
        return balance

    async def ledger_sum(self, account_id: int) -> int:
        return await self.repo.entries_sum(account_id)

    async def entries(self, account_id: int, limit: int = 100) -> list[EntryRecord]:
        return await self.repo.entries(account_id, limit)

    async def entries_page(
        self, account_id: int, *, kind: str | None = None, before_id: int | None = None, limit: int = 50
    ) -> list[EntryRecord]:
        """Entries newest first below ``before_id`` (keyset paging; see :mod:`ledger.statements`)."""
        return await self.repo.entries_page(account_id, kind=kind, before_id=before_id, limit=limit)

    async def verify(self) -> list[str]:
        """Violations of the ledger's invariants, one sentence each (empty: all good)."""
        problems: list[str] = []
        for row in await self.repo.account_audit():
            if row["balance"] != row["entries_sum"]:
                problems.append(
                    f"account {row['id']}: balance {row['balance']} != sum of entries {row['entries_sum']}"
                )
            if row["balance"] < 0 and not row["has_reversal"]:
                problems.append(f"account {row['id']}: negative balance {row['balance']} without a reversal")
        return problems


def open_ledger(db: Database) -> LedgerService:
    return LedgerService(db)

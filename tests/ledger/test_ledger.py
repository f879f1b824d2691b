"""The ledger's invariants, enforced by the service and by the database itself."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from ledger.database import Database
from ledger.errors import Conflict, InsufficientCredits
from ledger.keys import dialect_of_token, hash_key
from ledger.service import LedgerService


@pytest.fixture(scope="module")
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url)
    await database.start()
    yield database
    await database.close()


@pytest.fixture(scope="module")
def ledger(db: Database) -> LedgerService:
    return LedgerService(db)


async def test_opening_balance_is_an_entry(db: Database, ledger: LedgerService) -> None:
    async with db.transaction():
        account = await ledger.open_account(name="A", dialect="fitinview", plan="paid", credits=50)
    assert account.balance == 50
    assert await ledger.ledger_sum(account.id) == 50
    entries = await ledger.entries(account.id)
    assert [(entry.kind, entry.amount, entry.balance_after) for entry in entries] == [("grant", 50, 50)]


async def test_debit_never_goes_below_zero_and_writes_nothing_when_refused(
    db: Database, ledger: LedgerService
) -> None:
    async with db.transaction():
        account = await ledger.open_account(name="B", dialect="fitinview", plan="paid", credits=10)
    async with db.transaction():
        assert await ledger.debit_for_job(account.id, 900001, 8) == 2
    with pytest.raises(InsufficientCredits) as refused:
        async with db.transaction():
            await ledger.debit_for_job(account.id, 900002, 8)
    assert (refused.value.required, refused.value.available) == (8, 2)
    assert await ledger.balance(account.id) == 2 == await ledger.ledger_sum(account.id)


async def test_refund_happens_once(db: Database, ledger: LedgerService) -> None:
    async with db.transaction():
        account = await ledger.open_account(name="C", dialect="fitinview", plan="paid", credits=20)
        await ledger.debit_for_job(account.id, 900010, 12)
    async with db.transaction():
        assert await ledger.refund_job(account.id, 900010, reason="no_image") == 12
    async with db.transaction():
        assert await ledger.refund_job(account.id, 900010, reason="no_image") == 0
    assert await ledger.balance(account.id) == 20 == await ledger.ledger_sum(account.id)


async def test_concurrent_refunds_of_one_job_pay_once(db: Database, ledger: LedgerService) -> None:
    async with db.transaction():
        account = await ledger.open_account(name="D", dialect="fitinview", plan="paid", credits=20)
        await ledger.debit_for_job(account.id, 900020, 8)

    async def refund() -> int:
        try:
            async with db.transaction():
                return await ledger.refund_job(account.id, 900020, reason="race")
        except asyncpg.UniqueViolationError:
            return 0

    results = await asyncio.gather(*(refund() for _ in range(8)))
    assert sorted(results) == [0] * 7 + [8]
    assert await ledger.balance(account.id) == 20 == await ledger.ledger_sum(account.id)


async def test_entries_are_append_only(db: Database, ledger: LedgerService) -> None:
    async with db.transaction():
        account = await ledger.open_account(name="E", dialect="fitinview", plan="paid", credits=5)
    with pytest.raises(asyncpg.RaiseError, match="append-only"):
        await db.fetch("UPDATE ledger_entries SET amount = 500 WHERE account = $1", account.id)
    with pytest.raises(asyncpg.RaiseError, match="append-only"):
        await db.fetch("DELETE FROM ledger_entries WHERE account = $1", account.id)


async def test_verify_finds_a_balance_that_drifted(db: Database, ledger: LedgerService) -> None:
    async with db.transaction():
        account = await ledger.open_account(name="F", dialect="fitinview", plan="paid", credits=5)
    assert not [p for p in await ledger.verify() if f"account {account.id}:" in p]
    await db.fetch("UPDATE accounts SET balance = balance + 1 WHERE id = $1", account.id)
    problems = [p for p in await ledger.verify() if f"account {account.id}:" in p]
    assert problems == [f"account {account.id}: balance 6 != sum of entries 5"]
    await db.fetch("UPDATE accounts SET balance = balance - 1 WHERE id = $1", account.id)


async def test_reversal_may_go_negative_and_then_blocks_jobs(db: Database, ledger: LedgerService) -> None:
    async with db.transaction():
        account = await ledger.open_account(name="G", dialect="fitinview", plan="paid", credits=10)
        await ledger.debit_for_job(account.id, 900030, 8)
        await ledger.reverse(account.id, 10, reason="charge refunded", reference="evt_test_reversal_1")
    assert await ledger.balance(account.id) == -8
    with pytest.raises(InsufficientCredits):
        async with db.transaction():
            await ledger.debit_for_job(account.id, 900031, 0)
    assert not [p for p in await ledger.verify() if f"account {account.id}:" in p]


async def test_keys_are_stored_hashed_with_one_test_key_per_account(
    db: Database, ledger: LedgerService
) -> None:
    async with db.transaction():
        fiv = await ledger.open_account(name="H", dialect="fitinview", plan="paid", credits=0)
        ftm = await ledger.open_account(name="I", dialect="ftmvai", plan="free", credits=0)
        live = await ledger.mint_key(fiv.id, mode="live", name="Production")
        test = await ledger.mint_key(fiv.id, mode="test", name="CI")
        hex_key = await ledger.mint_key(ftm.id, mode="test", name="")
    assert live.plaintext.startswith("fiv_live_") and test.plaintext.startswith("fiv_test_")
    assert live.webhook_secret is not None and live.webhook_secret.startswith("whsec_")
    assert hex_key.webhook_secret is None and dialect_of_token(hex_key.plaintext) == "ftmvai"
    row = await db.fetchrow("SELECT * FROM api_keys WHERE id = $1", live.record.id)
    assert row is not None and row["key_hash"] == hash_key(live.plaintext)
    assert live.plaintext not in str(row)
    assert (await ledger.key_for_token(live.plaintext)) == live.record
    with pytest.raises(Conflict):
        async with db.transaction():
            await ledger.mint_key(fiv.id, mode="test", name="second")

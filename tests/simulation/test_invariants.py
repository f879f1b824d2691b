"""The money invariants (tests/support/invariants.py) pass on honest books and catch broken ones.

Each test corrupts its own deployment's database behind the gateway's back (inserting is all
the append-only ledger allows), so the checks are seen to fail, not only to pass.
"""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from tests.support.gateway import RunningGateway
from tests.support.image_host import ImageHost
from tests.support.invariants import assert_money_invariants, ledger_verify, money_violations


async def books(gateway_factory: Any, image_host: ImageHost) -> tuple[RunningGateway, int]:
    """A deployment of its own with one live and one test job finished; returns it and the account."""
    gateway: RunningGateway = await gateway_factory()
    account_id, live = await gateway.account_with_key(credits=50)
    test = str((await gateway.new_key(account_id, "test"))["key"])
    body = {"person_url": image_host.url("/person.png"), "garment_urls": [image_host.url("/shirt.png")]}
    for key in (live, test):
        status, answer, _ = await gateway.request("POST", "/api/v1/tryon", key=key, json=body)
        assert status == 200 and answer["status"] == "succeeded", answer
    return gateway, account_id


async def test_honest_books_pass(gateway_factory: Any, image_host: ImageHost) -> None:
    gateway, _ = await books(gateway_factory, image_host)
    await assert_money_invariants(gateway.settings.database_url, terminal_timeout=30)


async def test_broken_books_are_caught(gateway_factory: Any, image_host: ImageHost) -> None:
    gateway, account_id = await books(gateway_factory, image_host)
    url = gateway.settings.database_url
    conn = await asyncpg.connect(url)
    try:
        test_job = await conn.fetchval("SELECT id FROM jobs WHERE mode = 'test'")
        # A refund entry for a test-key job (balance moved with it: the sums still agree) ...
        await conn.execute("UPDATE accounts SET balance = balance + 1 WHERE id = $1", account_id)
        await conn.execute(
            "INSERT INTO ledger_entries (account, kind, amount, balance_after, job_id)"
            " SELECT $1, 'refund', 1, balance, $2 FROM accounts WHERE id = $1",
            account_id,
            test_job,
        )
        # ... and a balance moved with no entry at all.
        await conn.execute("UPDATE accounts SET balance = balance + 7 WHERE id = $1", account_id)
    finally:
        await conn.close()
    problems = await money_violations(url)
    assert len(problems) == 2, problems
    assert f"(#{test_job}, test, succeeded): moved credits although it is a test-key job" in problems[0]
    assert problems[1].startswith(f"account {account_id}: balance "), problems
    with pytest.raises(AssertionError, match="ledger verify exited 1") as failed:
        ledger_verify(url)
    assert "test-key job moved credits" in str(failed.value)
    assert f"account {account_id}: balance" in str(failed.value)

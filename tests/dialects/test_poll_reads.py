"""One database read per poll (issue 10), counted on a running gateway.

Every statement the gateway sends goes through its runtime's :class:`~ledger.database.Database`
(``fetch``; ``fetchrow`` calls it) or opens a transaction; the test wraps both on the running
gateway's own instance and counts what a poll sends once the job is finished and the caller cache
is warm (a first poll authenticates from PostgreSQL and fills it). The job lookup is the one
read: authentication comes from the cache (``engine/caller_cache.py``), presigning is local.
The sweeper is slowed to once an hour so its reads cannot land inside the counted window.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.conftest import GatewayFactory
from tests.dialects.ftmvai.test_orders import poll, tryon_body
from tests.support.gateway import RunningGateway
from tests.support.image_host import ImageHost

POLLS = 5


class StatementCounter:
    """Records each statement the gateway's Database is asked to run, and each transaction."""

    def __init__(self, gateway: RunningGateway) -> None:
        self.statements: list[str] = []
        db = gateway.runtime.db
        fetch, transaction = db.fetch, db.transaction

        async def counting_fetch(sql: str, *args: Any) -> list[dict[str, Any]]:
            self.statements.append(" ".join(sql.split()))
            return await fetch(sql, *args)

        def counting_transaction() -> Any:
            self.statements.append("BEGIN")
            return transaction()

        db.fetch = counting_fetch  # type: ignore[method-assign]
        db.transaction = counting_transaction  # type: ignore[method-assign]

    async def during(self, calls: int, call: Any) -> list[str]:
        self.statements.clear()
        for _ in range(calls):
            await call()
        return list(self.statements)


@pytest.fixture(scope="module")
async def quiet(gateway_factory: GatewayFactory) -> AsyncIterator[tuple[RunningGateway, StatementCounter]]:
    gateway = await gateway_factory(sweep_interval_seconds=3600.0)
    yield gateway, StatementCounter(gateway)


async def test_a_fitinview_poll_is_one_read(
    quiet: tuple[RunningGateway, StatementCounter], image_host: ImageHost
) -> None:
    gateway, counter = quiet
    _, key = await gateway.account_with_key(mode="test")
    status, job, _ = await gateway.request(
        "POST",
        "/api/v1/tryon",
        key=key,
        json={
            "person_url": image_host.url("/person.png"),
            "garment_urls": [image_host.url("/shirt.png")],
            "wait": False,
        },
    )
    assert status in (200, 202), job
    await gateway.wait_for_status(job["job_id"], key, {"succeeded"})  # also warms the cache

    async def one_poll() -> None:
        status, body, _ = await gateway.request("GET", f"/api/v1/tryon/{job['job_id']}", key=key)
        assert status == 200 and body["status"] == "succeeded" and body["result_url"], body

    statements = await counter.during(POLLS, one_poll)
    assert statements == ["SELECT * FROM jobs WHERE public_id = $1"] * POLLS, statements


async def test_an_ftmvai_poll_is_one_read(quiet: tuple[RunningGateway, StatementCounter]) -> None:
    gateway, counter = quiet
    _, key = await gateway.account_with_key(dialect="ftmvai", mode="test")
    status, created, _ = await gateway.request("POST", "/api/v1/generate", key=key, json=tryon_body())
    assert status in (200, 201, 202), created
    order_id = created["order_id"]
    await poll(gateway, key, order_id)  # also warms the cache

    async def one_poll() -> None:
        status, body, _ = await gateway.request("GET", f"/api/v1/orders/{order_id}", key=key)
        assert status == 200 and body["order"]["status"] == "completed", body

    statements = await counter.during(POLLS, one_poll)
    assert statements == ["SELECT * FROM jobs WHERE id = $1"] * POLLS, statements


async def test_the_counter_sees_what_a_cold_caller_costs(
    quiet: tuple[RunningGateway, StatementCounter],
) -> None:
    """The counter is not blind: a key the process has not seen authenticates from PostgreSQL
    (the key, then its account) before the read."""
    gateway, counter = quiet
    _, key = await gateway.account_with_key(mode="test")

    async def one_account_read() -> None:
        status, body, _ = await gateway.request("GET", "/api/v1/account", key=key)
        assert status == 200 and body["total_calls"] == 0, body

    statements = await counter.during(1, one_account_read)
    assert len(statements) >= 3, statements
    assert any("FROM api_keys" in sql for sql in statements), statements

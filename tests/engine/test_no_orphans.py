"""A refused request leaves nothing behind in S3: every stored input belongs to a committed job.

Inputs are stored before the transaction that creates the job and debits it (engine/service.py),
so a request refused inside that transaction — the loser of a race for the last credits, an
order over the plan's concurrency, a lost Idempotency-Key race — deletes what it stored.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import pytest

from tests.dialects.ftmvai.test_orders import poll, tryon_body
from tests.support.gateway import RunningGateway
from tests.support.image_host import ImageHost


async def _orphans(gateway: RunningGateway, account_id: int) -> list[str]:
    """The account's stored objects whose job id has no job row."""
    keys = await gateway.runtime.store.list_prefix(f"accounts/{account_id}/jobs/")
    orphans = []
    for key in keys:
        public_id = key.split("/")[3]
        if await gateway.runtime.jobs.by_public_id(public_id) is None:
            orphans.append(key)
    return orphans


def _fitinview_body(image_host: ImageHost, **extra: Any) -> dict[str, Any]:
    return {
        "person_url": image_host.url("/person.png"),
        "garment_urls": [image_host.url("/shirt.png")],
        **extra,
    }


@pytest.fixture(scope="module")
async def slow(gateway_factory: Any) -> RunningGateway:
    """Jobs take a while, so a free plan's one order in progress is still running for the next.

    Its own bucket: account ids start at 1 in every test gateway's database, and other gateways'
    objects under ``accounts/1/`` in the shared bucket would look like orphans here."""
    gateway: RunningGateway = await gateway_factory(
        local_backend_delay_seconds=1.5, s3_bucket="tryon-orphans-" + secrets.token_hex(4)
    )
    return gateway


async def test_the_loser_of_a_race_for_the_last_credit_leaves_nothing(slow: RunningGateway) -> None:
    """Each account has credits for one order; two arrive at once. Both pass the early balance
    check while neither has committed, store their inputs, and one loses in the debit (402)."""
    refused = 0
    for _ in range(4):
        account_id = await slow.new_account(dialect="ftmvai", credits=1)
        key = (await slow.new_key(account_id))["key"]
        results = await asyncio.gather(
            *(slow.request("POST", "/api/v1/generate", key=key, json=tryon_body()) for _ in range(2))
        )
        statuses = sorted(status for status, _, _ in results)
        assert statuses == [202, 402], results
        refused += 1
        assert await _orphans(slow, account_id) == []
        accepted = next(body for status, body, _ in results if status == 202)
        await poll(slow, key, accepted["order_id"])
        assert len(await slow.runtime.store.list_prefix(f"accounts/{account_id}/jobs/")) >= 2
    assert refused == 4


async def test_a_submit_without_credits_stores_nothing(slow: RunningGateway, image_host: ImageHost) -> None:
    account_id, key = await slow.account_with_key(credits=0)
    status, body, _ = await slow.request("POST", "/api/v1/tryon", key=key, json=_fitinview_body(image_host))
    assert status == 402, body
    assert await slow.runtime.store.list_prefix(f"accounts/{account_id}/") == []


async def test_an_order_over_the_concurrency_limit_leaves_nothing(slow: RunningGateway) -> None:
    """The free plan's one order in progress is checked in the creating transaction, after the
    inputs were stored: the refused order's inputs are deleted."""
    account_id = await slow.new_account(dialect="ftmvai", credits=10, plan="free")
    key = (await slow.new_key(account_id))["key"]
    status, first, _ = await slow.request("POST", "/api/v1/generate", key=key, json=tryon_body())
    assert status == 202, first
    status, refused, _ = await slow.request("POST", "/api/v1/generate", key=key, json=tryon_body())
    assert status == 429 and refused["error"]["details"]["limit"] == "concurrent", refused
    assert await _orphans(slow, account_id) == []
    stored = await slow.runtime.store.list_prefix(f"accounts/{account_id}/jobs/")
    assert len({key.split("/")[3] for key in stored}) == 1, stored  # the first order's inputs only
    await poll(slow, key, first["order_id"])


async def test_idempotency_conflicts_leave_nothing(slow: RunningGateway, image_host: ImageHost) -> None:
    """Concurrent retries of one Idempotency-Key (one job; the others replay it or get 409) and a
    reuse with another body (422): only the one job's inputs are stored."""
    account_id, key = await slow.account_with_key(credits=100)
    headers = {"Idempotency-Key": "order-7"}
    results = await asyncio.gather(
        *(
            slow.request("POST", "/api/v1/tryon", key=key, json=_fitinview_body(image_host), headers=headers)
            for _ in range(4)
        )
    )
    assert {status for status, _, _ in results} <= {200, 409}, results
    status, answer, _ = await slow.request(
        "POST", "/api/v1/tryon", key=key, json=_fitinview_body(image_host, seed=3), headers=headers
    )
    assert status == 422, answer
    assert await _orphans(slow, account_id) == []
    stored = await slow.runtime.store.list_prefix(f"accounts/{account_id}/jobs/")
    job_ids = {key.split("/")[3] for key in stored}
    assert len(job_ids) == 1, stored
    detail = await slow.admin("GET", f"/accounts/{account_id}")
    assert detail["credits_remaining"] == 92 == detail["ledger_sum"]

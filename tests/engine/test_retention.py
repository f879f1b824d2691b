"""Retention: expired finished jobs lose their stored images (never their record or money), the
dialects answer them with null links, and concurrent purges neither fail nor double up."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlsplit

import pytest
from minio import Minio

from engine import retention
from engine.audit import verify_all
from engine.execution import fail_job
from engine.models import StoredImage
from engine.service import new_public_id
from tests.support.gateway import RunningGateway, fixture_b64, fixture_bytes
from tests.support.image_host import ImageHost

PERIOD_SECONDS = 600
"""The shortened retention period; expired jobs are made older than it by moving created_at back."""


@pytest.fixture(scope="module")
async def scheduled(gateway_factory: Any) -> RunningGateway:
    """The purge runs on its own schedule at every sweep (interval shorter than the sweep)."""
    gateway: RunningGateway = await gateway_factory(
        retention_days=PERIOD_SECONDS / 86_400, retention_interval_seconds=0.2, retention_batch_size=2
    )
    return gateway


@pytest.fixture(scope="module")
async def manual(gateway_factory: Any) -> RunningGateway:
    """The scheduled purge ran once at start and not again: only the test's own runs purge."""
    gateway: RunningGateway = await gateway_factory(
        retention_days=PERIOD_SECONDS / 86_400, retention_interval_seconds=86_400, retention_batch_size=2
    )
    return gateway


async def objects_under(gateway: RunningGateway, prefix: str) -> list[str]:
    settings = gateway.settings
    client = Minio(
        urlsplit(settings.s3_endpoint).netloc,
        access_key=settings.s3_access_key,
        secret_key=settings.s3_secret_key,
        secure=False,
        region=settings.s3_region,
    )

    def names() -> list[str]:
        listed = client.list_objects(settings.s3_bucket, prefix, recursive=True)
        return [str(item.object_name) for item in listed]

    return await asyncio.to_thread(names)


def prefix(account_id: int, public_id: str) -> str:
    return f"accounts/{account_id}/jobs/{public_id}/"


async def fitinview_job(gateway: RunningGateway, key: str, image_host: ImageHost) -> dict[str, Any]:
    status, body, _ = await gateway.request(
        "POST",
        "/api/v1/tryon",
        key=key,
        json={"person_url": image_host.url("/person.png"), "garment_urls": [image_host.url("/shirt.png")]},
    )
    assert status == 200 and body["status"] == "succeeded" and body["result_url"], body
    return dict(body)


async def ftmvai_order(gateway: RunningGateway, key: str, body: dict[str, Any]) -> int:
    status, created, _ = await gateway.request("POST", "/api/v1/generate", key=key, json=body)
    assert status == 202, created
    order_id = int(created["order_id"])
    deadline = asyncio.get_running_loop().time() + 90
    while True:
        _, polled, _ = await gateway.request("GET", f"/api/v1/orders/{order_id}", key=key)
        if polled["order"]["status"] == "completed":
            return order_id
        assert polled["order"]["status"] != "failed", polled
        assert asyncio.get_running_loop().time() < deadline, polled
        await asyncio.sleep(0.1)


async def inserted_job(gateway: RunningGateway, account_id: int, key_id: int) -> tuple[int, str]:
    """A live FitInView job with stored inputs and its debit, not sent to the workers."""
    runtime = gateway.runtime
    public_id = new_public_id()
    person = f"accounts/{account_id}/jobs/{public_id}/person.png"
    await runtime.store.put(person, fixture_bytes("person-astronaut.png"), "image/png")
    async with runtime.db.transaction():
        job = await runtime.jobs.insert(
            public_id=public_id,
            account_id=account_id,
            api_key_id=key_id,
            dialect="fitinview",
            kind="tryon",
            mode="live",
            backend="local",
            params={"size_label": "1K", "longest_side": 1024, "output_format": "png"},
            inputs=[StoredImage(key=person, role="person", content_type="image/png", width=512, height=512)],
            cost_credits=8,
            metadata=None,
            seed=None,
            webhook_url=None,
        )
        await runtime.ledger.debit_for_job(account_id, job.id, 8)
    return job.id, public_id


async def key_id_of(gateway: RunningGateway, account_id: int) -> int:
    rows = await gateway.runtime.db.fetch(
        "SELECT id FROM api_keys WHERE account = $1 ORDER BY id", account_id
    )
    return int(rows[0]["id"])


async def age(gateway: RunningGateway, job_ids: list[int], seconds: int = PERIOD_SECONDS + 3600) -> None:
    await gateway.runtime.db.fetch(
        "UPDATE jobs SET created_at = created_at - make_interval(secs => $2) WHERE id = ANY($1::bigint[])",
        job_ids,
        float(seconds),
    )


async def money(gateway: RunningGateway, account_ids: list[int]) -> list[tuple[Any, ...]]:
    rows = await gateway.runtime.db.fetch(
        """SELECT a.id, a.balance, count(e.id) AS entries, COALESCE(sum(e.amount), 0) AS total
           FROM accounts a LEFT JOIN ledger_entries e ON e.account = a.id
           WHERE a.id = ANY($1::bigint[]) GROUP BY a.id ORDER BY a.id""",
        account_ids,
    )
    return [tuple(row.values()) for row in rows]


async def purged_at(gateway: RunningGateway, job_ids: list[int]) -> dict[int, Any]:
    rows = await gateway.runtime.db.fetch(
        "SELECT id, purged_at FROM jobs WHERE id = ANY($1::bigint[])", job_ids
    )
    return {int(row["id"]): row["purged_at"] for row in rows}


async def test_the_scheduled_purge_deletes_expired_images_and_keeps_records_and_money(
    scheduled: RunningGateway, image_host: ImageHost
) -> None:
    gateway = scheduled
    # Test keys (the stock backend: fast) for the dialects' jobs; the inserted live job moves money.
    fiv_account, fiv_key = await gateway.account_with_key(credits=100, mode="test")
    ftm_account, ftm_key = await gateway.account_with_key(credits=100, dialect="ftmvai", mode="test")
    live = await gateway.new_key(fiv_account, "live")
    fiv_key_id, live_key = int(live["id"]), str(live["key"])

    expired_fiv = await fitinview_job(gateway, fiv_key, image_host)
    recent_fiv = await fitinview_job(gateway, fiv_key, image_host)
    tryon_order = await ftmvai_order(
        gateway,
        ftm_key,
        {
            "style": "virtual_tryon",
            "person_image": fixture_b64("person-astronaut.png"),
            "clothing_image": fixture_b64("garment-shirt-red-stripes.png"),
        },
    )
    catalog_order = await ftmvai_order(
        gateway,
        ftm_key,
        {"style": "product_catalog", "product_image": fixture_b64("product-coffee-cup.png"), "quantity": 6},
    )
    failed_id, failed_public = await inserted_job(gateway, fiv_account, fiv_key_id)
    assert await fail_job(gateway.runtime, failed_id, code="generation_failed", message="no_image")
    unfinished_id, unfinished_public = await inserted_job(gateway, fiv_account, fiv_key_id)
    await gateway.runtime.db.fetch(
        "UPDATE jobs SET status = 'running', started_at = now(), deadline_at = now() + interval '1 hour'"
        " WHERE id = $1",
        unfinished_id,
    )

    expired_job = await gateway.runtime.jobs.by_public_id(expired_fiv["job_id"])
    recent_job = await gateway.runtime.jobs.by_public_id(recent_fiv["job_id"])
    orders = [await gateway.runtime.jobs.get(order_id) for order_id in (tryon_order, catalog_order)]
    assert expired_job and recent_job and all(orders)
    expired = [expired_job.id, tryon_order, catalog_order, failed_id]
    expired_prefixes = [prefix(fiv_account, expired_job.public_id), prefix(fiv_account, failed_public)] + [
        prefix(ftm_account, order.public_id) for order in orders if order
    ]
    for name in expired_prefixes:
        assert await objects_under(gateway, name), name
    before = await money(gateway, [fiv_account, ftm_account])

    await age(gateway, [*expired, unfinished_id])
    deadline = asyncio.get_running_loop().time() + 60
    while not all((await purged_at(gateway, expired)).values()):
        assert asyncio.get_running_loop().time() < deadline, "the scheduled purge did not run"
        await asyncio.sleep(0.2)

    for name in expired_prefixes:
        assert await objects_under(gateway, name) == [], name
    # a test-key result is the shared stock picture, which the recent job references too: it stays
    (shared,) = expired_job.results
    assert shared.key.startswith("stock/") and recent_job.results == expired_job.results
    assert await objects_under(gateway, shared.key) == [shared.key]
    assert await objects_under(gateway, prefix(fiv_account, recent_job.public_id))
    assert await objects_under(gateway, prefix(fiv_account, unfinished_public))
    untouched = await purged_at(gateway, [recent_job.id, unfinished_id])
    assert untouched == {recent_job.id: None, unfinished_id: None}

    # FitInView: still succeeded (or failed with its words), no link.
    _, polled, _ = await gateway.request("GET", f"/api/v1/tryon/{expired_fiv['job_id']}", key=fiv_key)
    assert polled["status"] == "succeeded" and polled["result_url"] is None
    assert polled["error_message"] is None and polled["cost_credits"] == expired_fiv["cost_credits"]
    _, polled, _ = await gateway.request("GET", f"/api/v1/tryon/{failed_public}", key=live_key)
    assert (polled["status"], polled["error_code"], polled["error_message"]) == (
        "failed",
        "generation_failed",
        "no_image",
    )
    assert polled["result_url"] is None and polled["credits_refunded"] == 8
    _, polled, _ = await gateway.request("GET", f"/api/v1/tryon/{recent_fiv['job_id']}", key=fiv_key)
    assert polled["result_url"]

    # FtmvAI: completed, every link null; a catalog keeps its quantity.
    _, body, _ = await gateway.request("GET", f"/api/v1/orders/{tryon_order}", key=ftm_key)
    assert body["order"]["status"] == "completed"
    assert body["order"]["results"] == {"person_url": None, "clothing_url": None, "result_url": None}
    _, body, _ = await gateway.request("GET", f"/api/v1/orders/{catalog_order}", key=ftm_key)
    results = body["order"]["results"]
    assert results["product_url"] is None and results["catalog_images"] is None and results["quantity"] == 6

    assert await money(gateway, [fiv_account, ftm_account]) == before
    assert await verify_all(gateway.runtime) == []
    last = await retention.last_run(gateway.runtime)
    assert last is not None and last.error is None


async def test_concurrent_purges_neither_fail_nor_purge_a_job_twice(manual: RunningGateway) -> None:
    gateway = manual
    deadline = asyncio.get_running_loop().time() + 60
    while await retention.last_run(gateway.runtime) is None:  # the one scheduled run, done before we start
        assert asyncio.get_running_loop().time() < deadline, "the first sweep did not run"
        await asyncio.sleep(0.1)
    account_id, _ = await gateway.account_with_key(credits=1000)
    key_id = await key_id_of(gateway, account_id)
    jobs = [await inserted_job(gateway, account_id, key_id) for _ in range(7)]
    job_ids = [job_id for job_id, _ in jobs]
    for job_id in job_ids:
        assert await fail_job(gateway.runtime, job_id, code="internal_error", message="worker lost")
    # One object is already gone: deleting it again must be harmless.
    await gateway.runtime.store.delete(f"accounts/{account_id}/jobs/{jobs[0][1]}/person.png")
    await age(gateway, job_ids)
    before = await money(gateway, [account_id])

    reports = await asyncio.gather(*(retention.purge_expired(gateway.runtime) for _ in range(3)))

    assert sum(report.jobs_purged for report in reports) == len(job_ids)
    first = await purged_at(gateway, job_ids)
    assert all(first.values())
    again = await retention.purge_expired(gateway.runtime)
    assert again.jobs_purged == 0 and await purged_at(gateway, job_ids) == first
    for _, public_id in jobs:
        assert await objects_under(gateway, prefix(account_id, public_id)) == []
    assert await money(gateway, [account_id]) == before
    assert await verify_all(gateway.runtime) == []

"""``DELETE /admin/accounts/{id}``: erasure for a privacy request, over real HTTP and a real bucket."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import pytest

from engine.audit import verify_all
from tests.gateway.admin.conftest import AdminClient
from tests.support.gateway import RunningGateway, fixture_b64
from tests.support.image_host import ImageHost


@pytest.fixture(scope="module")
async def erasing(gateway_factory: Any) -> RunningGateway:
    """A gateway with a bucket of its own, so listing a prefix sees only this deployment's objects
    (account ids restart in each test database), and jobs that take a few seconds."""
    gateway: RunningGateway = await gateway_factory(
        s3_bucket="tryon-erasure-" + secrets.token_hex(4), local_backend_delay_seconds=3.0
    )
    return gateway


async def _submit(gateway: RunningGateway, key: str, image_host: ImageHost) -> dict[str, Any]:
    body = {
        "person_image_b64": fixture_b64("person-astronaut.png"),
        "garment_images_b64": [fixture_b64("garment-shirt-red-stripes.png")],
        "output_size": "1K",
        "prompt": "the customer's own words about their body",
        "negative_prompt": "no logos",
        "metadata": {"customer_email": "alice@example.com"},
        "webhook_url": image_host.url("/webhook-receiver-of-alice"),
    }
    status, job, _ = await gateway.request(
        "POST", "/api/v1/tryon", key=key, json=body, headers={"Idempotency-Key": "alice-order-1"}
    )
    assert status == 200 and job["status"] == "succeeded", job
    return dict(job)


async def test_erasure_deletes_objects_scrubs_words_and_keeps_the_money(
    erasing: RunningGateway, image_host: ImageHost
) -> None:
    admin = AdminClient(erasing, erasing.settings.admin_token)
    store, db = erasing.runtime.store, erasing.runtime.db
    account_id, key = await erasing.account_with_key(credits=100)
    other_id, other_key = await erasing.account_with_key(credits=100)
    await admin.ok("PATCH", f"/accounts/{account_id}", {"name": "Alice Smith", "email": "alice@example.com"})
    job = await _submit(erasing, key, image_host)
    await _submit(erasing, other_key, image_host)
    assert await store.list_prefix(f"accounts/{account_id}/")
    entries_before = await db.fetch(
        "SELECT id, kind, amount, balance_after FROM ledger_entries WHERE account = $1 ORDER BY id",
        account_id,
    )
    detail_before = await admin.ok("GET", f"/accounts/{account_id}")

    status, body, _ = await admin.call("DELETE", f"/accounts/{account_id}", {})
    assert status == 400 and "reason" in body["detail"]
    viewer = await admin.ok("POST", "/operators", {"name": "erasure-support", "role": "support"})
    status, _, _ = await AdminClient(erasing, viewer["token"]).call(
        "DELETE", f"/accounts/{account_id}", {"reason": "GDPR art. 17 request #88"}
    )
    assert status == 403
    report = await admin.ok("DELETE", f"/accounts/{account_id}", {"reason": "GDPR art. 17 request #88"})
    key_id = detail_before["keys"][0]["id"]
    assert report["keys_disabled"] == [key_id] and report["jobs_scrubbed"] == 1
    assert report["idempotency_keys_deleted"] == 1 and report["objects_deleted"] >= 3

    assert await store.list_prefix(f"accounts/{account_id}/") == []  # the bucket holds nothing of it
    assert await store.list_prefix(f"accounts/{other_id}/")  # and everything of the others
    row = await db.fetchrow(
        "SELECT params, metadata, webhook_url, purged_at, cost_credits FROM jobs WHERE public_id = $1",
        job["job_id"],
    )
    assert row is not None
    assert '"alice' not in str(row) and "customer's own words" not in str(row) and "no logos" not in str(row)
    assert row["metadata"] is None and row["webhook_url"] is None and row["purged_at"] is not None
    assert row["cost_credits"] == 8
    assert await db.fetch("SELECT 1 FROM idempotency_keys WHERE api_key = $1", key_id) == []
    events = await db.fetch(
        "SELECT e.url FROM webhook_events e JOIN jobs j ON j.id = e.job WHERE j.account = $1", account_id
    )
    assert all(event["url"] == "" for event in events)

    detail = await admin.ok("GET", f"/accounts/{account_id}")
    assert detail["name"] == f"erased account {account_id}" and detail["email"] is None
    assert detail["erased_at"] is not None and detail["keys"][0]["disabled_reason"] == "account erased"
    assert detail["credits_remaining"] == detail["ledger_sum"] == detail_before["credits_remaining"] == 92
    entries_after = await db.fetch(
        "SELECT id, kind, amount, balance_after FROM ledger_entries WHERE account = $1 ORDER BY id",
        account_id,
    )
    assert entries_after == entries_before
    status, body, _ = await erasing.request("GET", "/api/v1/account", key=key)
    assert (status, body) == (403, {"detail": "Key disabled"})
    status, body, _ = await erasing.request("GET", f"/api/v1/tryon/{job['job_id']}", key=other_key)
    assert status == 404
    assert await verify_all(erasing.runtime) == []

    again = await admin.ok(
        "DELETE", f"/accounts/{account_id}", {"reason": "GDPR art. 17 request #88, repeat"}
    )
    assert again["erased_at"] == report["erased_at"]
    assert (again["keys_disabled"], again["jobs_scrubbed"], again["objects_deleted"]) == ([], 0, 0)
    audit = (await admin.ok("GET", f"/audit?target=account:{account_id}&action=account.erase"))["entries"]
    assert [entry["reason"] for entry in audit] == [
        "GDPR art. 17 request #88, repeat",
        "GDPR art. 17 request #88",
    ]
    assert "alice" not in str(audit).lower()
    assert await verify_all(erasing.runtime) == []
    for method, path, payload in [
        ("PATCH", f"/accounts/{account_id}", {"name": "Back"}),
        ("POST", f"/keys/{key_id}/enable", {}),
        ("POST", f"/accounts/{account_id}/keys", {"mode": "live"}),
        ("POST", f"/keys/{key_id}/rotate", {"grace_seconds": 0}),
    ]:
        status, body, _ = await admin.call(method, path, payload)
        assert status == 409 and "erased" in body["detail"], (method, path, status, body)
    status, _, _ = await admin.call("DELETE", "/accounts/987654321", {"reason": "nobody"})
    assert status == 404


async def test_an_account_with_unfinished_jobs_is_not_erased_until_they_end(erasing: RunningGateway) -> None:
    admin = AdminClient(erasing, erasing.settings.admin_token)
    account_id, key = await erasing.account_with_key(credits=100)
    body = {
        "person_image_b64": fixture_b64("person-astronaut.png"),
        "garment_images_b64": [fixture_b64("garment-shirt-red-stripes.png")],
        "wait": False,
    }
    status, job, _ = await erasing.request("POST", "/api/v1/tryon", key=key, json=body)
    assert status in (200, 202) and job["status"] in ("queued", "running"), job
    reason = {"reason": "privacy request"}
    status, answer, _ = await admin.call("DELETE", f"/accounts/{account_id}", reason)
    assert status == 409 and "queued or running" in answer["detail"], answer
    assert (await admin.ok("GET", f"/accounts/{account_id}"))["erased_at"] is None  # nothing happened
    await admin.ok("PATCH", f"/accounts/{account_id}", {"suspended": True, "reason": "erasure pending"})
    deadline = asyncio.get_running_loop().time() + 60
    while True:  # the suspended account's job still finishes
        row = await erasing.runtime.db.fetchrow("SELECT status FROM jobs WHERE public_id = $1", job["job_id"])
        assert row is not None
        if row["status"] in ("succeeded", "failed"):
            break
        assert asyncio.get_running_loop().time() < deadline, row
        await asyncio.sleep(0.1)
    report = await admin.ok("DELETE", f"/accounts/{account_id}", reason)
    assert report["objects_deleted"] >= 3
    assert await erasing.runtime.store.list_prefix(f"accounts/{account_id}/") == []

"""Webhook deliveries across events for ops: the list with its filters, and the audited re-send."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.gateway.admin.conftest import AdminClient
from tests.support.gateway import RunningGateway
from tests.support.image_host import ImageHost
from tests.support.webhook_receiver import WebhookReceiver, serve_webhook_receiver


@pytest.fixture(scope="module")
async def receiver() -> AsyncIterator[WebhookReceiver]:
    async with serve_webhook_receiver(hang_seconds=1.0) as running:
        yield running


@pytest.fixture(scope="module")
async def hooks(gateway_factory: Any, receiver: WebhookReceiver, image_host: ImageHost) -> RunningGateway:
    gateway: RunningGateway = await gateway_factory(
        webhook_backoff_scale=0.01,
        webhook_timeout_seconds=2.0,
        outbound_allow_hosts=(receiver.host_port, image_host.host_port),
    )
    return gateway


async def clients(gateway: RunningGateway) -> dict[str, AdminClient]:
    root = AdminClient(gateway, gateway.settings.admin_token)
    made = {"root": root}
    for role in ("viewer", "support"):
        created = await root.ok("POST", "/operators", {"name": f"hooks-{role}", "role": role})
        made[role] = AdminClient(gateway, created["token"])
    return made


async def settled(client: AdminClient, account_id: int, count: int) -> list[dict[str, Any]]:
    """The account's events once there are ``count`` and none is pending."""
    for _ in range(600):
        page = await client.ok("GET", f"/webhooks?account={account_id}")
        events: list[dict[str, Any]] = page["events"]
        if len(events) == count and all(event["status"] != "pending" for event in events):
            return events
        await asyncio.sleep(0.05)
    raise AssertionError(f"account {account_id}'s events did not settle")


async def test_webhooks_list_filters_pages_and_resend_is_audited(
    hooks: RunningGateway, receiver: WebhookReceiver, image_host: ImageHost
) -> None:
    ops = await clients(hooks)
    accounts: list[int] = []
    scripts = {0: [[500], [200]], 1: [[200]]}
    endpoints = []
    for index in (0, 1):
        account_id = await hooks.new_account(credits=100)
        accounts.append(account_id)
        minted = await hooks.new_key(account_id, "test")
        for script in scripts[index]:
            endpoint = receiver.endpoint(str(minted["webhook_secret"]), list(script))
            endpoints.append(endpoint)
            body = {
                "person_url": image_host.url("/person.png"),
                "garment_urls": [image_host.url("/shirt.png")],
                "wait": False,
                "webhook_url": endpoint.url,
            }
            status, answer, _ = await hooks.request(
                "POST", "/api/v1/tryon", key=str(minted["key"]), json=body
            )
            assert status == 200, answer
    first, second = accounts
    viewer = ops["viewer"]

    events = await settled(viewer, first, 2)
    # Which of the two jobs finishes (and so creates its event) first is up to the worker.
    by_status = {event["status"]: event for event in events}
    assert sorted(by_status) == ["delivered", "failed"]
    assert all(event["id"].startswith("evt_") and event["job_id"].startswith("job_") for event in events)
    failed = by_status["failed"]
    assert (failed["attempts"], failed["last_status_code"], failed["last_error"]) == (4, 500, "HTTP 500")
    assert failed["account_id"] == first and failed["next_attempt_at"] is None
    only_failed = await viewer.ok("GET", f"/webhooks?status=failed&account={first}")
    assert [event["id"] for event in only_failed["events"]] == [failed["id"]]
    await settled(viewer, second, 1)
    delivered = await viewer.ok("GET", f"/webhooks?status=delivered&account={second}")
    assert [(e["account_id"], e["last_status_code"]) for e in delivered["events"]] == [(second, 200)]
    assert (await viewer.ok("GET", f"/webhooks?status=failed&account={second}"))["events"] == []

    page = await viewer.ok("GET", f"/webhooks?account={first}&limit=1")
    rest = await viewer.ok("GET", f"/webhooks?account={first}&limit=1&cursor={page['next_cursor']}")
    assert [e["id"] for e in page["events"] + rest["events"]] == [e["id"] for e in events]
    assert rest["next_cursor"] is None
    everyone = await viewer.ok("GET", "/webhooks?status=failed")
    assert failed["id"] in [event["id"] for event in everyone["events"]]

    status, body, _ = await viewer.call("POST", f"/webhooks/{failed['id']}/resend")
    assert status == 403 and "support" in body["detail"]
    status, body, _ = await ops["support"].call(
        "POST", f"/webhooks/{failed['id']}/resend", {"reason": "receiver fixed"}
    )
    assert (status, body) == (202, {"id": failed["id"], "status": "pending", "attempt": 5})
    await receiver.wait_for(endpoints[0], 5)
    audit = await viewer.ok("GET", f"/audit?target=webhook:{failed['id']}")
    [entry] = audit["entries"]
    assert (entry["action"], entry["operator"], entry["reason"], entry["account_id"]) == (
        "webhook.resend",
        "hooks-support",
        "receiver fixed",
        first,
    )
    assert entry["change"] == {
        "before": {"status": "failed", "attempts": 4},
        "after": {"status": "pending", "next_attempt": 5},
    }
    status, body, _ = await ops["support"].call("POST", "/webhooks/evt_00ff/resend")
    assert (status, body) == (404, {"detail": "Webhook event not found"})

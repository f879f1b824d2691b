"""Keys for operators: listing by prefix, rotation with a grace period, expiry, webhook-secret
rotation with dual signatures, and ``last_used_at`` kept without a write per request."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from engine import key_usage
from tests.gateway.admin.conftest import AdminClient, cli
from tests.support.gateway import RunningGateway, fixture_b64
from tests.support.image_host import ImageHost
from tests.support.webhook_receiver import WebhookReceiver, serve_webhook_receiver, verify_v2

FITINVIEW_401 = {"detail": "Missing or invalid API key"}


@pytest.fixture(scope="module")
async def receiver() -> AsyncIterator[WebhookReceiver]:
    async with serve_webhook_receiver() as running:
        yield running


@pytest.fixture(scope="module")
async def keys_gateway(
    gateway_factory: Any, receiver: WebhookReceiver, image_host: ImageHost
) -> RunningGateway:
    """Webhooks may reach the local receiver; the sweeper (hence the last-use flush) runs only at
    start, so a test decides when uses are written."""
    gateway: RunningGateway = await gateway_factory(
        outbound_allow_hosts=(receiver.host_port, image_host.host_port), sweep_interval_seconds=3600
    )
    return gateway


def _admin(gateway: RunningGateway) -> AdminClient:
    return AdminClient(gateway, gateway.settings.admin_token)


async def _wait_past(moment: str) -> None:
    """Sleep until the server-given ISO time has passed (plus a margin for clock rounding)."""
    until = datetime.fromisoformat(moment.replace("Z", "+00:00")) + timedelta(milliseconds=300)
    await asyncio.sleep(max(0.0, (until - datetime.now(UTC)).total_seconds()))


async def test_the_key_list_shows_prefixes_never_keys(
    gateway: RunningGateway, operators: dict[str, AdminClient]
) -> None:
    account_id = await gateway.new_account()
    live = await gateway.new_key(account_id, "live", name="Production")
    test = await gateway.new_key(account_id, "test", name="Staging")
    await operators["support"].ok("POST", f"/keys/{test['id']}/disable", {"reason": "leaked in a gist"})
    listed = await operators["viewer"].ok("GET", f"/accounts/{account_id}/keys")
    text = json.dumps(listed)
    for secret in (live["key"], test["key"], live["webhook_secret"], test["webhook_secret"]):
        assert secret not in text
    assert [(k["id"], k["prefix"], k["mode"], k["name"]) for k in listed["keys"]] == [
        (live["id"], live["key"][:12] + "…", "live", "Production"),
        (test["id"], test["key"][:12] + "…", "test", "Staging"),
    ]
    assert set(listed["keys"][0]) == {
        "id",
        "prefix",
        "dialect",
        "mode",
        "name",
        "created_at",
        "last_used_at",
        "expires_at",
        "disabled",
        "disabled_reason",
        "previous_key_valid_until",
        "previous_webhook_secret_valid_until",
    }
    assert (listed["keys"][1]["disabled"], listed["keys"][1]["disabled_reason"]) == (True, "leaked in a gist")
    status, _, _ = await operators["viewer"].call("GET", "/accounts/987654321/keys")
    assert status == 404


async def test_rotation_keeps_the_key_and_honours_the_grace_period(
    gateway: RunningGateway, operators: dict[str, AdminClient]
) -> None:
    account_id = await gateway.new_account()
    old = await gateway.new_key(account_id, "live", name="Production")
    tryon = {
        "person_image_b64": fixture_b64("person-astronaut.png"),
        "garment_images_b64": [fixture_b64("garment-shirt-red-stripes.png")],
        "output_size": "1K",
    }
    status, job, _ = await gateway.request("POST", "/api/v1/tryon", key=old["key"], json=tryon)
    assert status == 200, job
    await gateway.wait_for_status(job["job_id"], old["key"], {"succeeded"}, timeout=120)
    status, _, _ = await operators["support"].call("POST", f"/keys/{old['id']}/rotate", {"grace_seconds": 60})
    assert status == 403
    rotated = await operators["admin"].ok("POST", f"/keys/{old['id']}/rotate", {"grace_seconds": 60})
    assert rotated["id"] == old["id"] and rotated["name"] == "Production" and rotated["mode"] == "live"
    assert rotated["key"].startswith("fiv_live_") and rotated["key"] != old["key"]
    assert rotated["prefix"] == rotated["key"][:12] + "…" and rotated["previous_valid_until"]

    for key in (rotated["key"], old["key"]):  # the new key at once, the old one during the grace
        status, body, _ = await gateway.request("GET", "/api/v1/account", key=key)
        assert status == 200, body
    status, body, _ = await gateway.request("GET", f"/api/v1/tryon/{job['job_id']}", key=rotated["key"])
    assert status == 200 and body["status"] == "succeeded", body  # the key's history follows it
    listed = (await operators["viewer"].ok("GET", f"/accounts/{account_id}/keys"))["keys"]
    assert [(k["id"], k["name"], k["prefix"]) for k in listed] == [
        (old["id"], "Production", rotated["prefix"])
    ]
    assert listed[0]["previous_key_valid_until"] == rotated["previous_valid_until"]
    page = await operators["viewer"].ok("GET", f"/audit?target=key:{old['id']}&action=key.rotate")
    entry = page["entries"][0]
    assert entry["operator"] == "ops-admin" and entry["change"]["before"] == {"prefix": old["key"][:12] + "…"}
    assert old["key"] not in json.dumps(entry) and rotated["key"] not in json.dumps(entry)

    # rotating again: the first secret is dropped at once, the second lives out its short grace
    again = await operators["admin"].ok("POST", f"/keys/{old['id']}/rotate", {"grace_seconds": 1})
    status, body, _ = await gateway.request("GET", "/api/v1/account", key=old["key"])
    assert (status, body) == (401, FITINVIEW_401)
    await _wait_past(again["previous_valid_until"])
    status, body, _ = await gateway.request("GET", "/api/v1/account", key=rotated["key"])
    assert (status, body) == (401, FITINVIEW_401)
    status, _, _ = await gateway.request("GET", "/api/v1/account", key=again["key"])
    assert status == 200


async def test_rotation_without_grace_refuses_the_old_key_at_once_in_ftmvai_shape(
    gateway: RunningGateway, operators: dict[str, AdminClient]
) -> None:
    account_id, old = await gateway.account_with_key(dialect="ftmvai")
    key_id = (await operators["viewer"].ok("GET", f"/accounts/{account_id}/keys"))["keys"][0]["id"]
    rotated = await operators["admin"].ok("POST", f"/keys/{key_id}/rotate", {"grace_seconds": 0})
    assert rotated["previous_valid_until"] is None and len(rotated["key"]) == 64
    status, body, _ = await gateway.request("GET", "/api/v1/orders/1", key=old)
    assert status == 401 and body["error"]["code"] == "UNAUTHORIZED"
    status, body, _ = await gateway.request("GET", "/api/v1/account", key=rotated["key"])
    assert status == 200, body
    for grace in (-1, 30 * 86_400 + 1, "soon"):
        status, body, _ = await operators["admin"].call(
            "POST", f"/keys/{key_id}/rotate", {"grace_seconds": grace}
        )
        assert status == 400 and "grace_seconds" in body["detail"], body
    status, body, _ = await operators["admin"].call("POST", "/keys/987654321/rotate", {"grace_seconds": 0})
    assert status == 404


async def test_an_expired_key_is_refused(gateway: RunningGateway) -> None:
    account_id = await gateway.new_account()
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    expired = await gateway.admin(
        "POST", f"/accounts/{account_id}/keys", {"mode": "live", "expires_at": past}
    )
    valid = await gateway.admin(
        "POST", f"/accounts/{account_id}/keys", {"mode": "test", "expires_at": future}
    )
    status, body, _ = await gateway.request("GET", "/api/v1/account", key=expired["key"])
    assert (status, body) == (401, FITINVIEW_401)
    status, _, _ = await gateway.request("GET", "/api/v1/account", key=valid["key"])
    assert status == 200

    ftmvai_account = await gateway.new_account(dialect="ftmvai")
    gone = await gateway.admin(
        "POST", f"/accounts/{ftmvai_account}/keys", {"mode": "live", "expires_at": past}
    )
    status, body, _ = await gateway.request("GET", "/api/v1/orders/1", key=gone["key"])
    assert status == 401
    assert body["error"] == {"code": "UNAUTHORIZED", "message": "API key expired", "details": None}
    listed = await gateway.admin("GET", f"/accounts/{ftmvai_account}/keys")
    assert listed["keys"][0]["expires_at"] is not None


def _signed_v1(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


async def test_webhook_secret_rotation_signs_with_both_secrets_during_the_grace(
    keys_gateway: RunningGateway, receiver: WebhookReceiver, image_host: ImageHost
) -> None:
    admin = _admin(keys_gateway)
    account_id = await keys_gateway.new_account()
    minted = await keys_gateway.new_key(account_id, "test")
    old_secret = minted["webhook_secret"]
    rotated = await admin.ok("POST", f"/keys/{minted['id']}/webhook-secret/rotate", {"grace_seconds": 600})
    new_secret = rotated["webhook_secret"]
    assert new_secret.startswith("whsec_") and new_secret != old_secret and rotated["previous_valid_until"]

    async def deliver() -> Any:
        endpoint = receiver.endpoint(new_secret)
        body = {
            "person_url": image_host.url("/person.png"),
            "garment_urls": [image_host.url("/shirt.png")],
            "webhook_url": endpoint.url,
            "wait": True,
        }
        status, job, _ = await keys_gateway.request("POST", "/api/v1/tryon", key=minted["key"], json=body)
        assert status == 200 and job["status"] == "succeeded", job
        return (await receiver.wait_for(endpoint, 1))[0]

    during = await deliver()
    assert during.v1_ok and during.v2_ok  # the documented headers: the NEW secret
    assert hmac.compare_digest(
        during.headers["X-FitInView-Signature-Previous"], _signed_v1(old_secret, during.raw_body)
    )
    previous_v2 = {
        "X-FitInView-Signature-V2": during.headers["X-FitInView-Signature-V2-Previous"],
        "X-FitInView-Timestamp": during.headers["X-FitInView-Timestamp"],
    }
    assert verify_v2(old_secret, during.raw_body, previous_v2)
    assert not verify_v2(new_secret, during.raw_body, previous_v2)

    await admin.ok("POST", f"/keys/{minted['id']}/webhook-secret/rotate", {"grace_seconds": 0})
    newest = (await admin.ok("GET", f"/accounts/{account_id}/keys"))["keys"][0]
    assert newest["previous_webhook_secret_valid_until"] is None
    after = await deliver()
    assert not after.v1_ok  # signed with the newest secret only, no previous header
    assert "X-FitInView-Signature-Previous" not in after.headers
    entries = (await admin.ok("GET", f"/audit?target=key:{minted['id']}&action=key.webhook_secret.rotate"))[
        "entries"
    ]
    assert len(entries) == 2 and new_secret not in json.dumps(entries)

    ftmvai_account, _ = await keys_gateway.account_with_key(dialect="ftmvai")
    ftmvai_key = (await admin.ok("GET", f"/accounts/{ftmvai_account}/keys"))["keys"][0]["id"]
    status, body, _ = await admin.call(
        "POST", f"/keys/{ftmvai_key}/webhook-secret/rotate", {"grace_seconds": 5}
    )
    assert status == 409 and "FitInView" in body["detail"]


async def test_last_used_at_is_noted_in_redis_and_written_in_one_batch(keys_gateway: RunningGateway) -> None:
    account_id, key = await keys_gateway.account_with_key()
    key_id = (await _admin(keys_gateway).ok("GET", f"/accounts/{account_id}/keys"))["keys"][0]["id"]
    for _ in range(5):
        status, _, _ = await keys_gateway.request("GET", "/api/v1/account", key=key)
        assert status == 200
    row = await keys_gateway.runtime.db.fetchrow("SELECT last_used_at FROM api_keys WHERE id = $1", key_id)
    assert row is not None and row["last_used_at"] is None  # five requests, no row write
    noted = await key_usage.pending(keys_gateway.runtime)
    assert abs(noted[key_id] - datetime.now(UTC).timestamp()) < 600

    assert await key_usage.flush(keys_gateway.runtime) >= 1  # what the sweeper does each interval
    assert key_id not in await key_usage.pending(keys_gateway.runtime)
    listed = (await _admin(keys_gateway).ok("GET", f"/accounts/{account_id}/keys"))["keys"][0]
    assert datetime.fromisoformat(listed["last_used_at"]).timestamp() == noted[key_id]
    assert await key_usage.flush(keys_gateway.runtime) == 0  # nothing noted since


async def test_cli_keys_create_list_rotate_and_disable(keys_gateway: RunningGateway) -> None:
    account_id = await keys_gateway.new_account(dialect="ftmvai")
    run = await asyncio.to_thread(
        cli,
        keys_gateway,
        "--json",
        "keys",
        "create",
        str(account_id),
        "--name",
        "ci",
        "--expires-at",
        "2099-01-01T00:00:00Z",
    )
    assert run.returncode == 0, run.stderr
    created = json.loads(run.stdout)
    assert len(created["key"]) == 64 and created["expires_at"].startswith("2099-01-01")
    run = await asyncio.to_thread(
        cli, keys_gateway, "--json", "keys", "rotate", str(created["id"]), "--grace-seconds", "0"
    )
    assert run.returncode == 0, run.stderr
    rotated = json.loads(run.stdout)
    status, _, _ = await keys_gateway.request("GET", "/api/v1/account", key=rotated["key"])
    assert status == 200
    status, _, _ = await keys_gateway.request("GET", "/api/v1/account", key=created["key"])
    assert status == 401
    run = await asyncio.to_thread(
        cli, keys_gateway, "keys", "disable", str(created["id"]), "--reason", "rotated out"
    )
    assert run.returncode == 0, run.stderr
    run = await asyncio.to_thread(cli, keys_gateway, "keys", "list", str(account_id))
    assert run.returncode == 0, run.stderr
    header, row = run.stdout.splitlines()
    assert header.split()[:3] == ["ID", "PREFIX", "DIALECT"]
    assert rotated["prefix"] in row and rotated["key"] not in run.stdout and "rotated out" in row

"""No secret in any error body (issue 11): a sample of refused requests, each carrying a secret the
caller (or an attacker) put somewhere in it, must answer without echoing it, and no answer may hold
another job's presigned signature, a Stripe secret, the S3 secret or the admin token. Log lines are
checked for the whole session by ``tests/support/log_audit.py``, which also knows Stripe keys and
presigned signatures; this module's requests pass through it too."""

from __future__ import annotations

import json
import secrets
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.conftest import GatewayFactory
from tests.support.gateway import RunningGateway, fixture_b64

STRIPE_SECRET = "sk_test_" + secrets.token_hex(16)
STRIPE_WEBHOOK_SECRET = "whsec_" + secrets.token_hex(20)
TRYON = {
    "person_image_b64": fixture_b64("person-astronaut.png"),
    "garment_images_b64": [fixture_b64("garment-shirt-red-stripes.png")],
}


async def test_refusals_echo_no_secret(gateway_factory: GatewayFactory) -> None:
    gateway = await gateway_factory(
        stripe_api_key=STRIPE_SECRET,
        stripe_webhook_secret=STRIPE_WEBHOOK_SECRET,
        stripe_base_url="http://127.0.0.1:9",  # never reached by these requests
    )
    account_id = await gateway.new_account(credits=100)
    minted = await gateway.new_key(account_id, "live")
    key, webhook_secret = str(minted["key"]), str(minted.get("webhook_secret", ""))
    _, other_key = await gateway.account_with_key(mode="test")
    other_job = await _finished_job(gateway, other_key)
    other_signature = parse_qs(urlsplit(other_job["result_url"]).query)["X-Amz-Signature"][0]
    disabled = await gateway.new_key(account_id, "live", name="Old")
    await gateway.admin("POST", f"/keys/{disabled['id']}/disable", {"reason": "no longer used"})

    never_shown = {
        "the caller's key": key,
        "the disabled key": str(disabled["key"]),
        "the webhook secret": webhook_secret,
        "the Stripe secret": STRIPE_SECRET,
        "the Stripe webhook secret": STRIPE_WEBHOOK_SECRET,
        "the S3 secret key": gateway.settings.s3_secret_key,
        "the admin token": gateway.settings.admin_token,
        "another job's presigned signature": other_signature,
    }
    assert all(len(value) >= 16 for value in never_shown.values()), never_shown

    refused: list[tuple[str, int, Any]] = []

    async def call(label: str, method: str, path: str, **options: Any) -> None:
        status, body, _ = await gateway.request(method, path, **options)
        assert status >= 400, (label, status, body)
        refused.append((label, status, body))

    await call("a wrong key", "GET", "/api/v1/account", key=key[:-4] + "abcd")
    await call("a disabled key", "GET", "/api/v1/account", key=str(disabled["key"]))
    await call(
        "a key as the admin token", "GET", "/admin/accounts", headers={"Authorization": f"Bearer {key}"}
    )
    await call(
        "the key in a field", "POST", "/api/v1/tryon", key=key, json={**TRYON, "person_image_b64": key}
    )
    await call(
        "user info in a webhook URL",
        "POST",
        "/api/v1/tryon",
        key=key,
        json={**TRYON, "webhook_url": f"https://user:{webhook_secret}@example.com/hook"},
    )
    await call(
        "another job's presigned link as an input",
        "POST",
        "/api/v1/tryon",
        key=key,
        json={"person_url": other_job["result_url"], "garment_images_b64": TRYON["garment_images_b64"]},
    )
    await call(
        "a secret in a query string",
        "GET",
        f"/api/v1/tryon?cursor={other_signature}&limit={STRIPE_SECRET}",
        key=key,
    )
    await call("another job by id", "GET", f"/api/v1/tryon/{other_job['job_id']}", key=key)
    await call(
        "a Stripe event signed with a guess",
        "POST",
        "/api/v1/stripe/webhook",
        data=b'{"id": "evt_1", "type": "checkout.session.completed"}',
        headers={"Stripe-Signature": f"t=1,v1={secrets.token_hex(32)}", "Content-Type": "application/json"},
    )
    await call("an unknown order", "GET", "/api/v1/orders/12345678", key=key)

    leaks = [
        f"{label} (HTTP {status}) shows {name}: {text[:300]}"
        for label, status, body in refused
        for text in [body.decode(errors="replace") if isinstance(body, bytes) else json.dumps(body)]
        for name, value in never_shown.items()
        if value in text
    ]
    assert not leaks, "\n".join(leaks)


async def _finished_job(gateway: RunningGateway, key: str) -> dict[str, Any]:
    status, job, _ = await gateway.request("POST", "/api/v1/tryon", key=key, json={**TRYON, "wait": False})
    assert status == 200, job
    return await gateway.wait_for_status(job["job_id"], key, {"succeeded"})

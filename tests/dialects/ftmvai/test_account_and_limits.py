"""The shared account route per dialect, and FtmvAI's per-plan limits and headers."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from tests.dialects.ftmvai.test_orders import poll, tryon_body
from tests.support.gateway import RunningGateway


async def test_each_dialect_gets_its_own_account_shape(gateway: RunningGateway) -> None:
    ftm_account, ftm_key = await gateway.account_with_key(dialect="ftmvai", credits=87)
    _, fiv_key = await gateway.account_with_key(dialect="fitinview", credits=5)
    status, body, headers = await gateway.request("GET", "/api/v1/account", key=ftm_key)
    assert status == 200
    assert set(body) == {"success", "account", "rate_limit"}
    assert body["account"] == {
        "user_id": ftm_account,
        "credits_remaining": 87,
        "api_calls_today": 0,
        "api_calls_total": 0,
        "plan": "paid",
    }
    assert set(body["rate_limit"]) == {"limit", "remaining", "reset"}
    assert headers["X-RateLimit-Limit"] == str(body["rate_limit"]["limit"])
    status, fiv, headers = await gateway.request("GET", "/api/v1/account", key=fiv_key)
    assert status == 200
    assert set(fiv) == {
        "name",
        "credits_remaining",
        "rate_limit_per_min",
        "total_calls",
        "tryon_cost_credits",
    }
    assert "X-RateLimit-Limit" not in headers

    await gateway.request("POST", "/api/v1/generate", key=ftm_key, json=tryon_body())
    _, body, _ = await gateway.request("GET", "/api/v1/account", key=ftm_key)
    assert body["account"]["api_calls_today"] == 1 and body["account"]["api_calls_total"] == 1
    assert body["account"]["credits_remaining"] == 86


async def test_account_errors_follow_the_token(gateway: RunningGateway) -> None:
    status, body, _ = await gateway.request("GET", "/api/v1/account", key="f" * 64)
    assert status == 401 and body["success"] is False and body["error"]["code"] == "UNAUTHORIZED"
    status, body, _ = await gateway.request("GET", "/api/v1/account", key="fiv_test_" + "q" * 40)
    assert status == 401 and body == {"detail": "Missing or invalid API key"}
    status, body, _ = await gateway.request("GET", "/api/v1/account")
    assert status == 401 and body["error"]["code"] == "UNAUTHORIZED"


async def test_free_plan_allows_one_order_at_a_time(gateway_factory: Any) -> None:
    slow: RunningGateway = await gateway_factory(local_backend_delay_seconds=1.5)
    account_id = await slow.new_account(dialect="ftmvai", credits=10, plan="free")
    key = (await slow.new_key(account_id))["key"]
    status, first, headers = await slow.request("POST", "/api/v1/generate", key=key, json=tryon_body())
    assert status == 202
    assert headers["X-RateLimit-Limit"] == "10" and headers["X-RateLimit-Remaining"] == "9"
    status, refused, headers = await slow.request("POST", "/api/v1/generate", key=key, json=tryon_body())
    assert status == 429, refused
    assert refused["error"]["code"] == "RATE_LIMITED" and refused["error"]["details"]["limit"] == "concurrent"
    assert int(headers["Retry-After"]) >= 1
    # the refused order was not counted against the hour
    _, account, headers = await slow.request("GET", "/api/v1/account", key=key)
    assert account["rate_limit"]["remaining"] == 9 and headers["X-RateLimit-Remaining"] == "9"
    await poll(slow, key, first["order_id"])
    status, _, _ = await slow.request("POST", "/api/v1/generate", key=key, json=tryon_body())
    assert status == 202
    detail = await slow.admin("GET", f"/accounts/{account_id}")
    assert detail["credits_remaining"] == 8


async def test_free_plan_hourly_limit(gateway: RunningGateway) -> None:
    account_id = await gateway.new_account(dialect="ftmvai", credits=0, plan="free")
    key = (await gateway.new_key(account_id, "test"))["key"]
    for expected_remaining in range(9, -1, -1):
        status, created, headers = await gateway.request(
            "POST", "/api/v1/generate", key=key, json=tryon_body()
        )
        assert status == 202, created
        assert headers["X-RateLimit-Remaining"] == str(expected_remaining)
        await poll(gateway, key, created["order_id"])
    status, refused, headers = await gateway.request("POST", "/api/v1/generate", key=key, json=tryon_body())
    assert status == 429
    assert refused["error"]["details"]["limit"] == "hour"
    reset = int(headers["X-RateLimit-Reset"])
    assert reset % 3600 == 0 and 0 < reset - time.time() <= 3600
    assert 1 <= int(headers["Retry-After"]) <= 3600
    # polling keeps working on the free plan
    status, _, _ = await gateway.request("GET", f"/api/v1/orders/{created['order_id']}", key=key)
    assert status == 200


async def test_parallel_orders_respect_the_concurrency_limit(gateway_factory: Any) -> None:
    slow: RunningGateway = await gateway_factory(local_backend_delay_seconds=1.0)
    account_id = await slow.new_account(dialect="ftmvai", credits=100, plan="paid")
    key = (await slow.new_key(account_id))["key"]
    results = await asyncio.gather(
        *(slow.request("POST", "/api/v1/generate", key=key, json=tryon_body()) for _ in range(8))
    )
    statuses = sorted(status for status, _, _ in results)
    assert statuses == [202] * 5 + [429] * 3, statuses
    detail = await slow.admin("GET", f"/accounts/{account_id}")
    assert detail["credits_remaining"] == 95 == detail["ledger_sum"]

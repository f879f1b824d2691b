"""POST /api/v1/generate and GET /api/v1/orders/{id} end to end, in FtmvAI's own shapes."""

from __future__ import annotations

import asyncio
import io
import re
from typing import Any

import pytest
from PIL import Image

from tests.support.gateway import RunningGateway, fixture_b64

ISO = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\+00:00$")


def tryon_body(**extra: Any) -> dict[str, Any]:
    return {
        "style": "virtual_tryon",
        "person_image": fixture_b64("person-astronaut.png"),
        "clothing_image": fixture_b64("garment-shirt-red-stripes.png"),
        **extra,
    }


def catalog_body(quantity: Any, **extra: Any) -> dict[str, Any]:
    return {
        "style": "product_catalog",
        "product_image": fixture_b64("product-coffee-cup.png"),
        "quantity": quantity,
        **extra,
    }


async def poll(gateway: RunningGateway, key: str, order_id: int, timeout: float = 60) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        status, body, headers = await gateway.request("GET", f"/api/v1/orders/{order_id}", key=key)
        assert status == 200, body
        assert body["success"] is True
        assert {"X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"} <= set(headers)
        if body["order"]["status"] in ("completed", "failed"):
            return dict(body["order"])
        assert asyncio.get_running_loop().time() < deadline, body
        await asyncio.sleep(0.1)


async def fetch_image(gateway: RunningGateway, url: str) -> Image.Image:
    async with gateway.http.get(url) as response:
        assert response.status == 200
        image = Image.open(io.BytesIO(await response.read()))
        image.load()
        return image


async def test_virtual_tryon_defaults_to_high_quality_jpg(gateway: RunningGateway) -> None:
    account_id, key = await gateway.account_with_key(dialect="ftmvai", credits=10)
    status, created, headers = await gateway.request("POST", "/api/v1/generate", key=key, json=tryon_body())
    assert status == 202, created
    assert set(created) == {
        "success",
        "order_id",
        "status",
        "credits_used",
        "message",
        "estimated_time",
        "created_at",
    }
    assert created["success"] is True and created["status"] == "pending"
    assert isinstance(created["order_id"], int) and created["credits_used"] == 1
    assert ISO.match(created["created_at"])
    assert {"X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"} <= set(headers)

    order = await poll(gateway, key, created["order_id"])
    assert order["status"] == "completed", order
    assert order["id"] == created["order_id"] and order["credits_used"] == 1
    assert set(order["results"]) == {"person_url", "clothing_url", "result_url"}
    assert ISO.match(order["completed_at"]) and isinstance(order["processing_time"], int)
    result = await fetch_image(gateway, order["results"]["result_url"])
    assert result.format == "JPEG" and max(result.size) == 2048
    person = await fetch_image(gateway, order["results"]["person_url"])
    assert person.size == (512, 512)
    clothing = await fetch_image(gateway, order["results"]["clothing_url"])
    assert clothing.size == (800, 800)
    detail = await gateway.admin("GET", f"/accounts/{account_id}")
    assert detail["credits_remaining"] == 9 == detail["ledger_sum"]


async def test_standard_quality_png(gateway: RunningGateway) -> None:
    _, key = await gateway.account_with_key(dialect="ftmvai", credits=10)
    _, created, _ = await gateway.request(
        "POST", "/api/v1/generate", key=key, json=tryon_body(options={"quality": "standard", "format": "png"})
    )
    order = await poll(gateway, key, created["order_id"])
    result = await fetch_image(gateway, order["results"]["result_url"])
    assert result.format == "PNG" and max(result.size) == 1024


@pytest.mark.parametrize(("quantity", "price"), [(6, 24), (12, 36)])
async def test_product_catalog(gateway: RunningGateway, quantity: int, price: int) -> None:
    account_id, key = await gateway.account_with_key(dialect="ftmvai", credits=100)
    status, created, _ = await gateway.request(
        "POST", "/api/v1/generate", key=key, json=catalog_body(quantity, options={"quality": "standard"})
    )
    assert status == 202, created
    assert created["credits_used"] == price
    order = await poll(gateway, key, created["order_id"])
    assert order["status"] == "completed", order
    results = order["results"]
    assert set(results) == {"product_url", "catalog_images", "quantity", "product_description"}
    assert results["quantity"] == quantity == len(results["catalog_images"])
    assert len(set(results["catalog_images"])) == quantity
    images = [await fetch_image(gateway, url) for url in results["catalog_images"]]
    assert all(image.format == "JPEG" and max(image.size) == 1024 for image in images)
    detail = await gateway.admin("GET", f"/accounts/{account_id}")
    assert detail["credits_remaining"] == 100 - price == detail["ledger_sum"]


async def test_in_progress_order_shows_progress_and_an_estimate(gateway_factory: Any) -> None:
    slow: RunningGateway = await gateway_factory(local_backend_delay_seconds=2.0)
    _, key = await slow.account_with_key(dialect="ftmvai", credits=10)
    _, created, _ = await slow.request("POST", "/api/v1/generate", key=key, json=tryon_body())
    seen: dict[str, dict[str, Any]] = {}
    for _ in range(100):
        _, body, _ = await slow.request("GET", f"/api/v1/orders/{created['order_id']}", key=key)
        seen.setdefault(body["order"]["status"], body["order"])
        if body["order"]["status"] == "completed":
            break
        await asyncio.sleep(0.05)
    running = seen["in_progress"]
    assert set(running) == {"id", "status", "credits_used", "progress", "created_at", "estimated_completion"}
    assert 0 < running["progress"] < 100
    assert ISO.match(running["estimated_completion"])
    assert running["estimated_completion"] > running["created_at"]
    assert "completed" in seen


async def test_orders_of_other_accounts_unknown_and_malformed_ids_are_404(gateway: RunningGateway) -> None:
    _, key = await gateway.account_with_key(dialect="ftmvai", credits=10)
    _, other = await gateway.account_with_key(dialect="ftmvai", credits=10)
    _, created, _ = await gateway.request("POST", "/api/v1/generate", key=key, json=tryon_body())
    for path, caller in [
        (f"/api/v1/orders/{created['order_id']}", other),
        ("/api/v1/orders/99999999", key),
        ("/api/v1/orders/abc", key),
        ("/api/v1/orders/-1", key),
        ("/api/v1/orders/99999999999999999999999", key),
    ]:
        status, body, headers = await gateway.request("GET", path, key=caller)
        assert status == 404, (path, body)
        assert body["success"] is False and body["error"]["code"] == "ORDER_NOT_FOUND"
        assert "X-RateLimit-Remaining" in headers


BAD = [
    ({"style": "painting"}, "style"),
    ({"person_image": None}, "person_image"),
    ({"clothing_image": ""}, "clothing_image"),
    ({"person_image": "%%%"}, "person_image"),
    ({"options": {"quality": "ultra"}}, "options.quality"),
    ({"options": {"format": "gif"}}, "options.format"),
    ({"options": "high"}, "options"),
]


@pytest.mark.parametrize(("changes", "field"), BAD)
async def test_invalid_requests_are_400_and_free(
    gateway: RunningGateway, changes: dict[str, Any], field: str
) -> None:
    account_id, key = await gateway.account_with_key(dialect="ftmvai", credits=10)
    body = tryon_body() | changes
    status, answer, headers = await gateway.request("POST", "/api/v1/generate", key=key, json=body)
    assert status == 400, answer
    assert answer["success"] is False and answer["error"]["code"] == "INVALID_REQUEST"
    assert field in answer["error"]["message"]
    assert "X-RateLimit-Limit" in headers
    detail = await gateway.admin("GET", f"/accounts/{account_id}")
    assert detail["credits_remaining"] == 10


@pytest.mark.parametrize("quantity", [7, 0, "6", None, True])
async def test_catalog_quantity_must_be_6_or_12(gateway: RunningGateway, quantity: Any) -> None:
    _, key = await gateway.account_with_key(dialect="ftmvai", credits=100)
    status, answer, _ = await gateway.request(
        "POST", "/api/v1/generate", key=key, json=catalog_body(quantity)
    )
    assert status == 400 and answer["error"]["code"] == "INVALID_REQUEST"
    assert "quantity" in answer["error"]["message"]


async def test_malformed_json_is_400(gateway: RunningGateway) -> None:
    _, key = await gateway.account_with_key(dialect="ftmvai")
    status, answer, _ = await gateway.request(
        "POST", "/api/v1/generate", key=key, data=b"{nope", headers={"Content-Type": "application/json"}
    )
    assert status == 400 and answer["error"]["code"] == "INVALID_REQUEST"


async def test_insufficient_credits_is_402_with_details(gateway: RunningGateway) -> None:
    account_id, key = await gateway.account_with_key(dialect="ftmvai", credits=20)
    status, answer, _ = await gateway.request("POST", "/api/v1/generate", key=key, json=catalog_body(6))
    assert status == 402
    assert answer == {
        "success": False,
        "error": {
            "code": "INSUFFICIENT_CREDITS",
            "message": "Insufficient credits for this operation",
            "details": {"credits_required": 24, "credits_available": 20},
        },
    }
    detail = await gateway.admin("GET", f"/accounts/{account_id}")
    assert detail["credits_remaining"] == 20 == detail["ledger_sum"]


async def test_unauthorized_in_ftmvai_shape(gateway: RunningGateway) -> None:
    _, fitinview_key = await gateway.account_with_key(dialect="fitinview")
    for key in (None, "0" * 64, fitinview_key):
        status, answer, _ = await gateway.request("POST", "/api/v1/generate", key=key, json=tryon_body())
        assert status == 401, answer
        assert answer["success"] is False and answer["error"]["code"] == "UNAUTHORIZED"
        status, answer, _ = await gateway.request("GET", "/api/v1/orders/1", key=key)
        assert status == 401 and answer["error"]["code"] == "UNAUTHORIZED"


async def test_test_keys_answer_stock_images_and_cost_nothing(gateway: RunningGateway) -> None:
    account_id = await gateway.new_account(dialect="ftmvai", credits=3)
    key = (await gateway.new_key(account_id, "test"))["key"]
    assert re.fullmatch(r"[0-9a-f]{64}", key)
    _, created, _ = await gateway.request("POST", "/api/v1/generate", key=key, json=catalog_body(12))
    assert created["credits_used"] == 0
    order = await poll(gateway, key, created["order_id"])
    assert order["status"] == "completed" and len(order["results"]["catalog_images"]) == 12
    detail = await gateway.admin("GET", f"/accounts/{account_id}")
    assert detail["credits_remaining"] == 3 == detail["ledger_sum"]

"""POST /api/v1/tryon end to end: real gateway, worker, PostgreSQL, Redis, S3 and image host."""

from __future__ import annotations

import io
from typing import Any

from PIL import Image

from tests.support.gateway import RunningGateway, fixture_b64
from tests.support.image_host import ImageHost


async def download_image(gateway: RunningGateway, url: str) -> Image.Image:
    async with gateway.http.get(url) as response:
        assert response.status == 200, await response.text()
        data = await response.read()
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def body(image_host: ImageHost, **extra: Any) -> dict[str, Any]:
    return {
        "person_url": image_host.url("/person.png"),
        "garment_urls": [image_host.url("/shirt.png")],
        **extra,
    }


async def test_sync_submit_returns_the_result_inline(gateway: RunningGateway, image_host: ImageHost) -> None:
    account_id, key = await gateway.account_with_key(credits=150)
    status, answer, _ = await gateway.request(
        "POST",
        "/api/v1/tryon",
        key=key,
        json=body(image_host, metadata={"order": "42", "n": 3}, seed=1234),
    )
    assert status == 200, answer
    assert answer["status"] == "succeeded"
    assert answer["job_id"].startswith("job_")
    assert answer["cost_credits"] == 8
    assert answer["credits_remaining"] == 142
    assert answer["metadata"] == {"order": "42", "n": 3}
    assert answer["seed"] == 1234
    assert answer["error_code"] is None and answer["error_message"] is None
    assert answer["message"] is None
    image = await download_image(gateway, answer["result_url"])
    assert image.format == "PNG"
    assert max(image.size) == 1024

    detail = await gateway.admin("GET", f"/accounts/{account_id}")
    assert detail["credits_remaining"] == 142 == detail["ledger_sum"]


async def test_base64_inputs_mixed_garments_and_2k(gateway: RunningGateway, image_host: ImageHost) -> None:
    _, key = await gateway.account_with_key(credits=100)
    status, answer, _ = await gateway.request(
        "POST",
        "/api/v1/tryon",
        key=key,
        json={
            "person_image_b64": fixture_b64("person-astronaut.png"),
            "garment_urls": [image_host.url("/shirt.png")],
            "garment_images_b64": [fixture_b64("garment-trousers-blue.png")],
            "output_size": "2k",
        },
    )
    assert status == 200, answer
    assert answer["status"] == "succeeded"
    assert answer["cost_credits"] == 12
    assert answer["credits_remaining"] == 88
    image = await download_image(gateway, answer["result_url"])
    assert max(image.size) == 2048 and image.format == "PNG"


async def test_person_base64_wins_over_person_url(gateway: RunningGateway, image_host: ImageHost) -> None:
    _, key = await gateway.account_with_key()
    status, answer, _ = await gateway.request(
        "POST",
        "/api/v1/tryon",
        key=key,
        json={
            "person_url": image_host.url("/status/404"),
            "person_image_b64": fixture_b64("person-astronaut.png"),
            "garment_images_b64": [fixture_b64("garment-shirt-red-stripes.png")],
        },
    )
    assert status == 200, answer
    assert answer["status"] == "succeeded"


async def test_aliases_are_used_when_canonical_fields_are_empty(
    gateway: RunningGateway, image_host: ImageHost
) -> None:
    _, key = await gateway.account_with_key()
    status, answer, _ = await gateway.request(
        "POST",
        "/api/v1/tryon",
        key=key,
        json={
            "person_url": "",
            "model_url": image_host.url("/person.png"),
            "clothing": [image_host.url("/shirt.png")],
            "resolution": "4k",
            "mode": "async",
            "some_unknown_field": {"ignored": True},
        },
    )
    assert status == 200, answer
    assert answer["status"] == "running"
    assert answer["cost_credits"] == 20
    done = await gateway.wait_for_status(answer["job_id"], key, {"succeeded", "failed"})
    assert done["status"] == "succeeded"
    image = await download_image(gateway, done["result_url"])
    assert max(image.size) == 4096


async def test_wait_boolean_wins_over_mode(gateway: RunningGateway, image_host: ImageHost) -> None:
    _, key = await gateway.account_with_key()
    status, answer, _ = await gateway.request(
        "POST", "/api/v1/tryon", key=key, json=body(image_host, wait=True, mode="async")
    )
    assert status == 200
    assert answer["status"] == "succeeded"


async def test_async_submit_then_poll(gateway: RunningGateway, image_host: ImageHost) -> None:
    _, key = await gateway.account_with_key()
    status, answer, _ = await gateway.request(
        "POST", "/api/v1/tryon", key=key, json=body(image_host, wait=False, metadata={"user": "u1"}, seed=7)
    )
    assert status == 200
    assert answer["status"] == "running"
    assert answer["result_url"] is None
    done = await gateway.wait_for_status(answer["job_id"], key, {"succeeded", "failed"})
    assert done["status"] == "succeeded"
    assert done["metadata"] == {"user": "u1"} and done["seed"] == 7
    assert done["duration_ms"] >= 0
    assert done["created_at"].endswith("Z") and done["completed_at"].endswith("Z")
    assert len(done["created_at"]) == len("2026-04-29T16:44:52Z")
    expected_fields = {
        "job_id",
        "status",
        "result_url",
        "error_code",
        "error_message",
        "cost_credits",
        "duration_ms",
        "created_at",
        "completed_at",
    }
    assert expected_fields <= set(done)


async def test_test_key_answers_stock_image_and_moves_no_credits(
    gateway: RunningGateway, image_host: ImageHost
) -> None:
    account_id = await gateway.new_account(credits=5)
    key = (await gateway.new_key(account_id, "test"))["key"]
    assert key.startswith("fiv_test_")
    status, answer, _ = await gateway.request(
        "POST",
        "/api/v1/tryon",
        key=key,
        json=body(image_host, metadata={"ci": "yes"}, seed=99, output_size="4K"),
    )
    assert status == 200, answer
    assert answer["status"] == "succeeded"
    assert answer["cost_credits"] == 0
    assert answer["credits_remaining"] == 5
    assert answer["metadata"] == {"ci": "yes"} and answer["seed"] == 99
    image = await download_image(gateway, answer["result_url"])
    assert max(image.size) == 4096
    detail = await gateway.admin("GET", f"/accounts/{account_id}")
    assert detail["credits_remaining"] == 5 == detail["ledger_sum"]


async def test_second_test_key_is_refused(gateway: RunningGateway) -> None:
    account_id = await gateway.new_account()
    await gateway.new_key(account_id, "test")
    status, answer, _ = await gateway.request(
        "POST",
        f"/admin/accounts/{account_id}/keys",
        json={"mode": "test"},
        headers={"Authorization": f"Bearer {gateway.settings.admin_token}"},
    )
    assert status == 409, answer
    assert "detail" in answer

"""Idempotency-Key as DECISIONS.md settles it: same key and body → the same job, once charged."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.support.gateway import RunningGateway
from tests.support.image_host import ImageHost


def request(image_host: ImageHost, **extra: Any) -> dict[str, Any]:
    return {
        "person_url": image_host.url("/person.png"),
        "garment_urls": [image_host.url("/shirt.png")],
        **extra,
    }


async def test_retry_with_same_key_and_body_returns_the_same_job(
    gateway: RunningGateway, image_host: ImageHost
) -> None:
    account_id, key = await gateway.account_with_key(credits=100)
    headers = {"Idempotency-Key": "ord_42-attempt-1"}
    first_body = request(image_host, metadata={"a": "1", "b": "2"})
    status, first, _ = await gateway.request(
        "POST", "/api/v1/tryon", key=key, json=first_body, headers=headers
    )
    assert status == 200 and first["status"] == "succeeded"
    # the same JSON after parsing: keys in another order
    reordered = dict(reversed(list(first_body.items())))
    reordered["metadata"] = {"b": "2", "a": "1"}
    status, second, _ = await gateway.request(
        "POST", "/api/v1/tryon", key=key, json=reordered, headers=headers
    )
    assert status == 200
    assert second["job_id"] == first["job_id"]
    assert second["credits_remaining"] == 92
    detail = await gateway.admin("GET", f"/accounts/{account_id}")
    assert detail["credits_remaining"] == 92 == detail["ledger_sum"]


async def test_same_key_different_body_is_422(gateway: RunningGateway, image_host: ImageHost) -> None:
    _, key = await gateway.account_with_key()
    headers = {"Idempotency-Key": "k-1"}
    await gateway.request("POST", "/api/v1/tryon", key=key, json=request(image_host), headers=headers)
    status, answer, _ = await gateway.request(
        "POST", "/api/v1/tryon", key=key, json=request(image_host, seed=1), headers=headers
    )
    assert (status, answer) == (422, {"detail": "Idempotency-Key reused with a different request"})


async def test_keys_are_scoped_to_the_api_key(gateway: RunningGateway, image_host: ImageHost) -> None:
    _, key_a = await gateway.account_with_key()
    _, key_b = await gateway.account_with_key()
    headers = {"Idempotency-Key": "shared-name"}
    _, first, _ = await gateway.request(
        "POST", "/api/v1/tryon", key=key_a, json=request(image_host), headers=headers
    )
    _, second, _ = await gateway.request(
        "POST", "/api/v1/tryon", key=key_b, json=request(image_host), headers=headers
    )
    assert first["job_id"] != second["job_id"]


async def test_key_longer_than_200_is_400(gateway: RunningGateway, image_host: ImageHost) -> None:
    _, key = await gateway.account_with_key()
    status, answer, _ = await gateway.request(
        "POST", "/api/v1/tryon", key=key, json=request(image_host), headers={"Idempotency-Key": "x" * 201}
    )
    assert status == 400 and "Idempotency-Key" in answer["detail"]


async def test_rejections_are_not_remembered(gateway: RunningGateway, image_host: ImageHost) -> None:
    _, key = await gateway.account_with_key()
    headers = {"Idempotency-Key": "fix-and-retry"}
    bad = request(image_host, output_size="9K")
    status, _, _ = await gateway.request("POST", "/api/v1/tryon", key=key, json=bad, headers=headers)
    assert status == 400
    status, answer, _ = await gateway.request(
        "POST", "/api/v1/tryon", key=key, json=request(image_host), headers=headers
    )
    assert status == 200 and answer["status"] == "succeeded"


async def test_retry_while_the_first_is_being_accepted_is_409(
    gateway: RunningGateway, image_host: ImageHost
) -> None:
    account_id, key = await gateway.account_with_key(credits=100)
    headers = {"Idempotency-Key": "slow-one"}
    slow = {
        "person_url": image_host.url("/slow?seconds=1.5"),
        "garment_urls": [image_host.url("/shirt.png")],
        "wait": False,
    }
    first_task = asyncio.create_task(
        gateway.request("POST", "/api/v1/tryon", key=key, json=slow, headers=headers)
    )
    await asyncio.sleep(0.5)
    status, answer, _ = await gateway.request("POST", "/api/v1/tryon", key=key, json=slow, headers=headers)
    assert status == 409, answer
    first_status, first, _ = await first_task
    # /slow answers non-image bytes after its sleep: the first is rejected and nothing is remembered
    assert first_status == 400, first
    detail = await gateway.admin("GET", f"/accounts/{account_id}")
    assert detail["credits_remaining"] == 100


async def test_sync_retry_waits_on_the_same_job(gateway_factory: Any, image_host: ImageHost) -> None:
    slow = await gateway_factory(local_backend_delay_seconds=1.0)
    account_id, key = await slow.account_with_key(credits=100)
    headers = {"Idempotency-Key": "wait-twice"}
    first, second = await asyncio.gather(
        slow.request("POST", "/api/v1/tryon", key=key, json=request(image_host), headers=headers),
        _delayed(
            slow.request("POST", "/api/v1/tryon", key=key, json=request(image_host), headers=headers), 0.6
        ),
    )
    assert first[0] == 200 and second[0] == 200
    assert first[1]["job_id"] == second[1]["job_id"]
    assert first[1]["status"] == second[1]["status"] == "succeeded"
    detail = await slow.admin("GET", f"/accounts/{account_id}")
    assert detail["credits_remaining"] == 92


async def _delayed(coro: Any, seconds: float) -> Any:
    await asyncio.sleep(seconds)
    return await coro

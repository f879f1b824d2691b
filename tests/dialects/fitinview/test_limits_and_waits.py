"""Rate limits, the sync-wait limit and concurrent submits against a small balance."""

from __future__ import annotations

import asyncio
from typing import Any

from engine.audit import verify_all
from tests.support.gateway import RunningGateway
from tests.support.image_host import ImageHost


def request(image_host: ImageHost, **extra: Any) -> dict[str, Any]:
    return {
        "person_url": image_host.url("/person.png"),
        "garment_urls": [image_host.url("/shirt.png")],
        **extra,
    }


async def test_submits_are_rate_limited_per_key_and_reads_are_not(
    gateway_factory: Any, image_host: ImageHost
) -> None:
    limited = await gateway_factory(rate_limit_per_min=3, read_rate_limit_per_min=1000)
    _, key = await limited.account_with_key(mode="test")
    _, other = await limited.account_with_key(mode="test")
    for _ in range(3):
        status, _, _ = await limited.request(
            "POST", "/api/v1/tryon", key=key, json=request(image_host, wait=False)
        )
        assert status == 200
    status, answer, headers = await limited.request(
        "POST", "/api/v1/tryon", key=key, json=request(image_host)
    )
    assert (status, answer) == (429, {"detail": "Rate limit exceeded"})
    assert 1 <= int(headers["Retry-After"]) <= 60
    # polling still works, and another key is unaffected
    assert (await limited.request("GET", "/api/v1/tryon", key=key))[0] == 200
    assert (await limited.request("GET", "/api/v1/account", key=key))[0] == 200
    status, _, _ = await limited.request(
        "POST", "/api/v1/tryon", key=other, json=request(image_host, wait=False)
    )
    assert status == 200


async def test_reads_have_their_own_limit(gateway_factory: Any) -> None:
    limited = await gateway_factory(read_rate_limit_per_min=2)
    _, key = await limited.account_with_key(mode="test")
    assert (await limited.request("GET", "/api/v1/tryon", key=key))[0] == 200
    assert (await limited.request("GET", "/api/v1/account", key=key))[0] == 200
    status, answer, headers = await limited.request("GET", "/api/v1/tryon", key=key)
    assert status == 429 and answer == {"detail": "Rate limit exceeded"} and "Retry-After" in headers


async def test_sync_wait_limit_answers_running_with_the_message(
    gateway_factory: Any, image_host: ImageHost
) -> None:
    slow = await gateway_factory(local_backend_delay_seconds=2.0, sync_wait_seconds=0.5)
    _, key = await slow.account_with_key()
    loop = asyncio.get_running_loop()
    started = loop.time()
    status, answer, _ = await slow.request("POST", "/api/v1/tryon", key=key, json=request(image_host))
    elapsed = loop.time() - started
    assert status == 200
    assert answer["status"] == "running"
    assert answer["message"] == f"Job exceeded 0.5s sync limit; poll GET /api/v1/tryon/{answer['job_id']}"
    assert elapsed < 2.0
    done = await slow.wait_for_status(answer["job_id"], key, {"succeeded"})
    assert done["result_url"]


async def test_waiting_is_woken_by_the_completion_event(gateway_factory: Any, image_host: ImageHost) -> None:
    """A sync submit returns as soon as its job ends, well before the wait limit."""
    gateway = await gateway_factory(sync_wait_seconds=60)
    _, key = await gateway.account_with_key()
    loop = asyncio.get_running_loop()
    started = loop.time()
    status, answer, _ = await gateway.request("POST", "/api/v1/tryon", key=key, json=request(image_host))
    assert status == 200 and answer["status"] == "succeeded"
    assert loop.time() - started < 30
    assert gateway.runtime.hub.waiting == 0


async def test_parallel_submits_never_overdraw(gateway: RunningGateway, image_host: ImageHost) -> None:
    account_id, key = await gateway.account_with_key(credits=8 * 5)
    results = await asyncio.gather(
        *(
            gateway.request("POST", "/api/v1/tryon", key=key, json=request(image_host, wait=False))
            for _ in range(12)
        )
    )
    statuses = sorted(status for status, _, _ in results)
    assert statuses.count(200) == 5, statuses
    assert statuses.count(402) == 7, statuses
    for status, answer, _ in results:
        if status == 402:
            assert answer == {"detail": "Insufficient credits"}
    detail = await gateway.admin("GET", f"/accounts/{account_id}")
    assert detail["credits_remaining"] == 0 == detail["ledger_sum"]
    for status, answer, _ in results:
        if status == 200:
            await gateway.wait_for_status(answer["job_id"], key, {"succeeded"})
    assert await verify_all(gateway.runtime) == []

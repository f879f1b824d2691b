"""GET /api/v1/tryon, GET /api/v1/tryon/{job_id} and GET /api/v1/account."""

from __future__ import annotations

from typing import Any

from tests.support.gateway import RunningGateway
from tests.support.image_host import ImageHost


def request(image_host: ImageHost, **extra: Any) -> dict[str, Any]:
    return {
        "person_url": image_host.url("/person.png"),
        "garment_urls": [image_host.url("/shirt.png")],
        **extra,
    }


async def test_list_is_newest_first_paginated_and_only_mine(
    gateway: RunningGateway, image_host: ImageHost
) -> None:
    _, key = await gateway.account_with_key(mode="test")
    _, other_key = await gateway.account_with_key(mode="test")
    created = []
    for index in range(5):
        _, answer, _ = await gateway.request(
            "POST", "/api/v1/tryon", key=key, json=request(image_host, wait=False, metadata={"i": index})
        )
        created.append(answer["job_id"])
    await gateway.request("POST", "/api/v1/tryon", key=other_key, json=request(image_host, wait=False))

    status, page, _ = await gateway.request("GET", "/api/v1/tryon?limit=2", key=key)
    assert status == 200
    assert [job["job_id"] for job in page["jobs"]] == created[::-1][:2]
    assert page["next_cursor"] == created[3]
    _, page2, _ = await gateway.request("GET", f"/api/v1/tryon?limit=2&cursor={page['next_cursor']}", key=key)
    assert [job["job_id"] for job in page2["jobs"]] == created[::-1][2:4]
    _, page3, _ = await gateway.request(
        "GET", f"/api/v1/tryon?limit=2&cursor={page2['next_cursor']}", key=key
    )
    assert [job["job_id"] for job in page3["jobs"]] == created[:1]
    assert page3["next_cursor"] is None
    _, everything, _ = await gateway.request("GET", "/api/v1/tryon", key=key)
    assert len(everything["jobs"]) == 5 and everything["next_cursor"] is None
    assert everything["jobs"][0]["metadata"] == {"i": 4}


async def test_list_limit_is_clamped_and_checked(gateway: RunningGateway) -> None:
    _, key = await gateway.account_with_key(mode="test")
    status, page, _ = await gateway.request("GET", "/api/v1/tryon?limit=5000", key=key)
    assert status == 200 and page == {"jobs": [], "next_cursor": None}
    for bad in ("0", "-3", "ten"):
        status, answer, _ = await gateway.request("GET", f"/api/v1/tryon?limit={bad}", key=key)
        assert status == 400 and "limit" in answer["detail"]
    status, answer, _ = await gateway.request("GET", "/api/v1/tryon?cursor=job_unknown", key=key)
    assert status == 400 and "cursor" in answer["detail"]


async def test_another_keys_job_is_404(gateway: RunningGateway, image_host: ImageHost) -> None:
    _, key = await gateway.account_with_key(mode="test")
    _, other_key = await gateway.account_with_key(mode="test")
    _, answer, _ = await gateway.request(
        "POST", "/api/v1/tryon", key=key, json=request(image_host, wait=False)
    )
    status, body, _ = await gateway.request("GET", f"/api/v1/tryon/{answer['job_id']}", key=other_key)
    assert (status, body) == (404, {"detail": "Job not found"})
    status, body, _ = await gateway.request("GET", "/api/v1/tryon/job_doesnotexist", key=key)
    assert (status, body) == (404, {"detail": "Job not found"})


async def test_account_shape(gateway: RunningGateway, image_host: ImageHost) -> None:
    account_id = await gateway.new_account(credits=150)
    key = (await gateway.new_key(account_id, "live", name="Production"))["key"]
    status, account, _ = await gateway.request("GET", "/api/v1/account", key=key)
    assert status == 200
    assert account == {
        "name": "Production",
        "credits_remaining": 150,
        "rate_limit_per_min": gateway.settings.rate_limit_per_min,
        "total_calls": 0,
        "tryon_cost_credits": {"1K": 8, "2K": 12, "4K": 20},
    }
    await gateway.request("POST", "/api/v1/tryon", key=key, json=request(image_host))
    _, account, _ = await gateway.request("GET", "/api/v1/account", key=key)
    assert account["total_calls"] == 1
    assert account["credits_remaining"] == 142


async def test_openapi_document_is_served(gateway: RunningGateway) -> None:
    status, document, _ = await gateway.request("GET", "/openapi.json")
    assert status == 200
    assert "/api/v1/tryon" in document["paths"]


async def test_health_and_readiness(gateway: RunningGateway) -> None:
    assert (await gateway.request("GET", "/healthz"))[0] == 200
    status, body, _ = await gateway.request("GET", "/readyz")
    assert status == 200, body
    assert body == {"status": "ready", "database": "ok", "redis": "ok", "storage": "ok"}

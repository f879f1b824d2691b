"""Tenant isolation across both dialects (issue 11): another account's job ids and order numbers are
404 on every read route, answered exactly like ids that never existed (no oracle), lists and the
shared ``/api/v1/account`` show only the caller's own, and a presigned link edited to point at
another job's object is refused by S3 itself."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from tests.support.gateway import RunningGateway, fixture_b64

TRYON = {
    "person_image_b64": fixture_b64("person-astronaut.png"),
    "garment_images_b64": [fixture_b64("garment-shirt-red-stripes.png")],
}
GENERATE = {
    "style": "virtual_tryon",
    "person_image": fixture_b64("person-astronaut.png"),
    "clothing_image": fixture_b64("garment-shirt-red-stripes.png"),
}


async def _finished_fitinview_job(gateway: RunningGateway, key: str) -> dict[str, Any]:
    status, job, _ = await gateway.request("POST", "/api/v1/tryon", key=key, json={**TRYON, "wait": False})
    assert status == 200, job
    return await gateway.wait_for_status(job["job_id"], key, {"succeeded"})


async def _finished_order(gateway: RunningGateway, key: str) -> dict[str, Any]:
    status, created, _ = await gateway.request("POST", "/api/v1/generate", key=key, json=GENERATE)
    assert status == 202, created
    for _ in range(600):
        _, body, _ = await gateway.request("GET", f"/api/v1/orders/{created['order_id']}", key=key)
        if body["order"]["status"] in ("completed", "failed"):
            assert body["order"]["status"] == "completed", body
            return dict(body["order"])
        await asyncio.sleep(0.1)
    raise AssertionError(f"order {created['order_id']} never finished")


async def test_other_accounts_ids_are_unknown_on_every_read_route(gateway: RunningGateway) -> None:
    _, fiv_mine = await gateway.account_with_key(mode="test")
    _, fiv_theirs = await gateway.account_with_key(mode="test")
    _, ftm_mine = await gateway.account_with_key(dialect="ftmvai", mode="test")
    _, ftm_theirs = await gateway.account_with_key(dialect="ftmvai", mode="test")
    their_job = await _finished_fitinview_job(gateway, fiv_theirs)
    their_order = await _finished_order(gateway, ftm_theirs)
    # the internal ids behind each dialect's public one, so each can be tried on the other dialect
    job_row = await gateway.runtime.db.fetchrow(
        "SELECT id FROM jobs WHERE public_id = $1", their_job["job_id"]
    )
    order_row = await gateway.runtime.db.fetchrow(
        "SELECT public_id FROM jobs WHERE id = $1", their_order["id"]
    )
    assert job_row is not None and order_row is not None
    their_job_number, their_order_public = job_row["id"], order_row["public_id"]

    never = ("job_" + "0" * 24, "99999999")
    status, missing_job, _ = await gateway.request("GET", f"/api/v1/tryon/{never[0]}", key=fiv_mine)
    assert status == 404
    status, missing_order, _ = await gateway.request("GET", f"/api/v1/orders/{never[1]}", key=ftm_mine)
    assert status == 404

    for job_id in (their_job["job_id"], their_order_public, str(their_job_number)):
        status, body, _ = await gateway.request("GET", f"/api/v1/tryon/{job_id}", key=fiv_mine)
        assert (status, body) == (404, missing_job), (job_id, body)
    for order_id in (their_order["id"], their_job_number):
        status, body, _ = await gateway.request("GET", f"/api/v1/orders/{order_id}", key=ftm_mine)
        assert (status, body) == (404, missing_order), (order_id, body)
    # a key of one dialect on the other dialect's read route sees nothing either
    status, body, _ = await gateway.request("GET", f"/api/v1/tryon/{their_job['job_id']}", key=ftm_theirs)
    assert status in (401, 403, 404), body
    status, body, _ = await gateway.request("GET", f"/api/v1/orders/{their_order['id']}", key=fiv_theirs)
    assert status in (401, 403, 404), body

    # lists: theirs is neither listed nor usable as a cursor (answered like an unknown cursor)
    status, page, _ = await gateway.request("GET", "/api/v1/tryon", key=fiv_mine)
    assert (status, page) == (200, {"jobs": [], "next_cursor": None})
    status, unknown_cursor, _ = await gateway.request("GET", f"/api/v1/tryon?cursor={never[0]}", key=fiv_mine)
    status_theirs, their_cursor, _ = await gateway.request(
        "GET", f"/api/v1/tryon?cursor={their_job['job_id']}", key=fiv_mine
    )
    assert (status_theirs, their_cursor) == (status, unknown_cursor)

    # the shared account route answers for the caller's own account whatever the query says
    for key in (fiv_mine, ftm_mine):
        status, own, _ = await gateway.request("GET", "/api/v1/account", key=key)
        assert status == 200
        for query in (f"?account_id={their_job_number}", f"?id={their_order['id']}", "?account=1"):
            status, again, _ = await gateway.request("GET", "/api/v1/account" + query, key=key)
            assert (status, again) == (200, own), query
        assert own.get("total_calls", 0) == 0 or "credits_remaining" in own


async def test_an_edited_presigned_link_is_refused_by_s3(gateway: RunningGateway) -> None:
    # Live jobs: their results are each account's own (a test key's is the shared stock picture).
    _, key_a = await gateway.account_with_key(mode="live")
    _, key_b = await gateway.account_with_key(mode="live")
    mine = await _finished_fitinview_job(gateway, key_a)
    theirs = await _finished_fitinview_job(gateway, key_b)
    async with gateway.http.get(mine["result_url"]) as response:
        assert response.status == 200  # the link as given works

    my_link, their_link = urlsplit(mine["result_url"]), urlsplit(theirs["result_url"])
    assert my_link.path != their_link.path
    edited = urlunsplit(my_link._replace(path=their_link.path))
    async with gateway.http.get(edited) as response:
        body = await response.text()
        assert response.status == 403, body
        assert "SignatureDoesNotMatch" in body, body
    # nor can the signature be dropped, or the expiry stretched
    unsigned = urlunsplit(their_link._replace(query=""))
    async with gateway.http.get(unsigned) as response:
        assert response.status == 403, await response.text()
    stretched = mine["result_url"].replace("X-Amz-Expires=", "X-Amz-Expires=9")
    if stretched != mine["result_url"]:
        async with gateway.http.get(stretched) as response:
            assert response.status in (400, 403), await response.text()

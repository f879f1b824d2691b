"""``/admin/jobs``: search, lookup, the whole record, and the goodwill refund (once, whatever races)."""

from __future__ import annotations

import asyncio
import io
from typing import Any

from PIL import Image

from engine.audit import verify_all
from tests.dialects.ftmvai.test_orders import poll, tryon_body
from tests.gateway.admin.conftest import AdminClient
from tests.support.gateway import RunningGateway
from tests.support.image_host import ImageHost


def tryon(image_host: ImageHost, **extra: Any) -> dict[str, Any]:
    return {
        "person_url": image_host.url("/person.png"),
        "garment_urls": [image_host.url("/shirt.png")],
        "output_size": "2K",
        **extra,
    }


async def submit(
    gateway: RunningGateway, key: str, image_host: ImageHost, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    """A FitInView try-on, waited for (the shared gateway's local backend is quick)."""
    status, answer, _ = await gateway.request(
        "POST", "/api/v1/tryon", key=key, json=tryon(image_host), headers=headers
    )
    assert status == 200 and answer["status"] == "succeeded", answer
    return dict(answer)


async def load_image(gateway: RunningGateway, url: str) -> Image.Image:
    async with gateway.http.get(url) as response:
        assert response.status == 200, url
        image = Image.open(io.BytesIO(await response.read()))
        image.load()
        return image


async def audit_actions(viewer: AdminClient, job_id: str) -> list[str]:
    page = await viewer.ok("GET", f"/audit?target=job:{job_id}")
    return [entry["action"] for entry in page["entries"]]


async def test_search_filters_and_pages_newest_first(
    gateway: RunningGateway, operators: dict[str, AdminClient], image_host: ImageHost
) -> None:
    viewer = operators["viewer"]
    # test keys: the stock backend is quick, and search does not care about money
    account_id, key = await gateway.account_with_key(credits=0, mode="test")
    jobs = [(await submit(gateway, key, image_host))["job_id"] for _ in range(3)]
    other_account, other_key = await gateway.account_with_key(dialect="ftmvai", credits=0, mode="test")
    _, order, _ = await gateway.request("POST", "/api/v1/generate", key=other_key, json=tryon_body())
    await poll(gateway, other_key, order["order_id"])

    page = await viewer.ok("GET", f"/jobs?account={account_id}")
    assert [job["job_id"] for job in page["jobs"]] == jobs[::-1] and page["next_cursor"] is None
    first = page["jobs"][0]
    assert first["account_id"] == account_id and first["dialect"] == "fitinview" and first["mode"] == "test"
    assert first["status"] == "succeeded" and first["cost_credits"] == 0 and first["credits_refunded"] == 0
    assert first["rerun_of"] is None and first["purged"] is False and isinstance(first["order_id"], int)

    one = await viewer.ok("GET", f"/jobs?account={account_id}&limit=2")
    assert [job["job_id"] for job in one["jobs"]] == jobs[:0:-1] and one["next_cursor"]
    two = await viewer.ok("GET", f"/jobs?account={account_id}&limit=2&cursor={one['next_cursor']}")
    assert [job["job_id"] for job in two["jobs"]] == jobs[:1] and two["next_cursor"] is None

    key_id = first["key_id"]
    expectations = {
        f"account={account_id}&status=succeeded&backend=stock&kind=tryon&dialect=fitinview": 3,
        f"account={account_id}&backend=local": 0,
        f"key={key_id}": 3,
        f"account={account_id}&status=failed": 0,
        f"account={account_id}&kind=catalog": 0,
        f"account={account_id}&dialect=ftmvai": 0,
        f"account={account_id}&error_code=cancelled": 0,
        f"account={account_id}&since=2999-01-01T00:00:00Z": 0,
        f"account={account_id}&until=2000-01-01T00:00:00Z": 0,
        f"account={account_id}&since=2000-01-01T00:00:00Z&until=2999-01-01T00:00:00Z": 3,
        f"account={other_account}&dialect=ftmvai": 1,
    }
    for query, count in expectations.items():
        found = await viewer.ok("GET", f"/jobs?{query}")
        assert len(found["jobs"]) == count, query
    everything = await viewer.ok("GET", "/jobs?limit=200")
    ids = [job["order_id"] for job in everything["jobs"]]
    assert ids == sorted(ids, reverse=True) and order["order_id"] in ids


async def test_lookup_by_job_id_or_order_id_shows_the_whole_record(
    gateway: RunningGateway, operators: dict[str, AdminClient], image_host: ImageHost
) -> None:
    account_id, key = await gateway.account_with_key(credits=100)
    answer = await submit(gateway, key, image_host, headers={"Idempotency-Key": "order-77"})
    detail = await operators["viewer"].ok("GET", f"/jobs/{answer['job_id']}")
    by_order = await operators["viewer"].ok("GET", f"/jobs/{detail['order_id']}")

    def unsigned(record: dict[str, Any]) -> dict[str, Any]:
        """The record without its links' signatures, which change with the second they are made."""
        links = {side: [{**link, "url": None} for link in record[side]] for side in ("inputs", "results")}
        return record | links

    assert unsigned(detail) == unsigned(by_order)

    assert detail["job_id"] == answer["job_id"] and detail["account_id"] == account_id
    assert detail["params"]["longest_side"] == 2048 and detail["params"]["size_label"] == "2K"
    assert [image["role"] for image in detail["inputs"]] == ["person", "garment"]
    for link in detail["inputs"] + detail["results"]:
        image = await load_image(gateway, link["url"])
        assert image.size == (link["width"], link["height"])
    assert len(detail["results"]) == 1 and detail["results"][0]["role"] == "result"

    timings = detail["timings"]
    assert timings["queued_at"] and timings["started_at"] and timings["finished_at"]
    assert timings["queue_wait_ms"] >= 0 and timings["generation_ms"] >= 0 and timings["quality_gate_ms"] >= 0
    assert timings["total_ms"] >= timings["queue_wait_ms"] + timings["generation_ms"]
    assert detail["quality_gate"] == ["passed"]
    assert detail["report"]["generations"][0]["backend"] == "local"

    assert [(entry["kind"], entry["amount"]) for entry in detail["ledger"]] == [("debit", -12)]
    assert detail["ledger"][0]["balance_after"] == 88
    assert (
        detail["idempotency_key"]["key"] == "order-77" and len(detail["idempotency_key"]["fingerprint"]) == 64
    )
    assert detail["webhooks"] == [] and detail["original"] is None and detail["reruns"] == []


async def test_malformed_ids_and_filters_are_400_naming_the_field(operators: dict[str, AdminClient]) -> None:
    viewer = operators["viewer"]
    for bad in ("job_XYZ", "abc", "-1", "1" * 19, "job_", "job_" + "a" * 41, "%00", "1.5"):
        status, body, _ = await viewer.call("GET", f"/jobs/{bad}")
        assert status == 400 and "job_id" in body["detail"], (bad, status, body)
    for query, field in (
        ("status=bogus", "status"),
        ("kind=video", "kind"),
        ("dialect=x", "dialect"),
        ("backend=openai", "backend"),
        ("error_code=NOT-VALID", "error_code"),
        ("error_code=%00", "error_code"),
        ("account=0", "account"),
        ("account=x", "account"),
        ("key=-3", "key"),
        ("limit=-1", "limit"),
        ("limit=201", "limit"),
        ("cursor=abc", "cursor"),
        ("cursor=%00", "cursor"),
        ("since=yesterday", "since"),
        ("until=2026-13-45", "until"),
    ):
        status, body, _ = await viewer.call("GET", f"/jobs?{query}")
        assert status == 400 and field in body["detail"], (query, status, body)
    for unknown in ("job_ffffffffffffffffffffffff", "999999999999"):
        status, body, _ = await viewer.call("GET", f"/jobs/{unknown}")
        assert (status, body) == (404, {"detail": "Job not found"})
        for action in ("cancel", "refund", "rerun"):
            status, body, _ = await operators["support"].call(
                "POST", f"/jobs/{unknown}/{action}", {"reason": "x"}
            )
            assert (status, body) == (404, {"detail": "Job not found"}), action


async def test_goodwill_refund_once_and_shown_in_both_dialects(
    gateway: RunningGateway, operators: dict[str, AdminClient], image_host: ImageHost
) -> None:
    support = operators["support"]
    account_id, key = await gateway.account_with_key(credits=100)
    job_id = (await submit(gateway, key, image_host))["job_id"]
    status, body, _ = await operators["viewer"].call("POST", f"/jobs/{job_id}/refund", {"reason": "x"})
    assert status == 403
    for bad in ({}, {"reason": ""}, {"reason": "   "}, {"reason": "x" * 501}, {"reason": "ok", "extra": 1}):
        status, body, _ = await support.call("POST", f"/jobs/{job_id}/refund", bad)
        assert status == 400, (bad, body)

    refunded = await support.ok("POST", f"/jobs/{job_id}/refund", {"reason": "customer disliked the fit"})
    assert refunded["job_id"] == job_id and refunded["status"] == "succeeded"
    assert refunded["credits_refunded"] == 12
    status, body, _ = await support.call("POST", f"/jobs/{job_id}/refund", {"reason": "again"})
    assert status == 409 and "already refunded" in body["detail"]

    _, polled, _ = await gateway.request("GET", f"/api/v1/tryon/{job_id}", key=key)
    assert polled["status"] == "succeeded" and polled["credits_refunded"] == 12
    account = await gateway.admin("GET", f"/accounts/{account_id}")
    assert account["credits_remaining"] == 100 == account["ledger_sum"]
    detail = await operators["viewer"].ok("GET", f"/jobs/{job_id}")
    assert [(entry["kind"], entry["amount"], entry["reference"]) for entry in detail["ledger"]] == [
        ("debit", -12, None),
        ("refund", 12, f"goodwill:{job_id}"),
    ]
    page = await operators["viewer"].ok("GET", f"/audit?target=job:{job_id}")
    assert [entry["action"] for entry in page["entries"]] == ["job.refund"]
    entry = page["entries"][0]
    assert entry["operator"] == "ops-support" and entry["reason"] == "customer disliked the fit"
    assert entry["account_id"] == account_id
    assert entry["change"] == {"before": {"credits_refunded": 0}, "after": {"credits_refunded": 12}}

    # FtmvAI shows it too, on a completed order
    _, ftm_key = await gateway.account_with_key(dialect="ftmvai", credits=100)
    _, order, _ = await gateway.request("POST", "/api/v1/generate", key=ftm_key, json=tryon_body())
    done = await poll(gateway, ftm_key, order["order_id"])
    assert done["status"] == "completed" and "credits_refunded" not in done
    await support.ok("POST", f"/jobs/{order['order_id']}/refund", {"reason": "goodwill"})
    done = await poll(gateway, ftm_key, order["order_id"])
    assert done["status"] == "completed" and done["credits_refunded"] == done["credits_used"] > 0
    assert await verify_all(gateway.runtime) == []


async def test_refund_cancel_and_rerun_refuse_what_does_not_apply(
    gateway: RunningGateway, operators: dict[str, AdminClient], image_host: ImageHost
) -> None:
    support = operators["support"]
    _, key = await gateway.account_with_key(credits=100)
    job_id = (await submit(gateway, key, image_host))["job_id"]
    status, body, _ = await support.call("POST", f"/jobs/{job_id}/cancel", {"reason": "too late"})
    assert status == 409 and "already succeeded" in body["detail"]
    status, body, _ = await support.call("POST", f"/jobs/{job_id}/rerun", {"reason": "why not"})
    assert status == 409 and "only a failed job" in body["detail"]
    _, test_key = await gateway.account_with_key(credits=0, mode="test")
    test_job = (await submit(gateway, test_key, image_host))["job_id"]
    status, body, _ = await support.call("POST", f"/jobs/{test_job}/refund", {"reason": "test key"})
    assert status == 409 and "cost no credits" in body["detail"]
    assert await audit_actions(operators["viewer"], job_id) == []
    assert await verify_all(gateway.runtime) == []


async def test_twenty_concurrent_refunds_make_exactly_one_entry(
    gateway: RunningGateway, operators: dict[str, AdminClient], image_host: ImageHost
) -> None:
    account_id, key = await gateway.account_with_key(credits=100)
    job_id = (await submit(gateway, key, image_host))["job_id"]
    answers = await asyncio.gather(
        *(
            operators["support"].call("POST", f"/jobs/{job_id}/refund", {"reason": f"race {n}"})
            for n in range(20)
        )
    )
    statuses = sorted(status for status, _, _ in answers)
    assert statuses == [200] + [409] * 19, [(status, body) for status, body, _ in answers]
    job = await gateway.runtime.jobs.by_public_id(job_id)
    assert job is not None
    rows = await gateway.runtime.db.fetch(
        "SELECT kind, amount FROM ledger_entries WHERE job_id = $1 ORDER BY id", job.id
    )
    assert [(row["kind"], row["amount"]) for row in rows] == [("debit", -12), ("refund", 12)]
    account = await gateway.admin("GET", f"/accounts/{account_id}")
    assert account["credits_remaining"] == 100 == account["ledger_sum"]
    assert await audit_actions(operators["viewer"], job_id) == ["job.refund"]
    assert await verify_all(gateway.runtime) == []

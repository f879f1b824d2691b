"""Jobs on the Gemini backend end to end (real google-genai SDK against a local fake that speaks
Gemini's REST format): refund table, quality gate with its one retry, ops report, key suspension,
and a 12-shot catalog."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.dialects.ftmvai.test_orders import poll
from tests.support.fake_gemini import FakeGemini, serve_fake_gemini
from tests.support.gateway import RunningGateway, fixture_b64
from tests.support.image_host import ImageHost


@pytest.fixture(scope="module")
async def fake() -> AsyncIterator[FakeGemini]:
    async with serve_fake_gemini("fake-gemini-key") as server:
        yield server


@pytest.fixture(scope="module")
async def gemini_gateway(gateway_factory: Any, fake: FakeGemini) -> RunningGateway:
    gateway: RunningGateway = await gateway_factory(
        engine="gemini",
        gemini_api_key="fake-gemini-key",
        gemini_base_url=fake.base_url,
        gemini_retry_attempts=2,
        gemini_retry_initial_delay_seconds=0.05,
        gemini_retry_max_delay_seconds=0.1,
        content_blocked_suspend_after=3,
    )
    return gateway


@pytest.fixture(autouse=True)
def fresh(fake: FakeGemini) -> None:
    fake.reset()


def request(image_host: ImageHost, **extra: Any) -> dict[str, Any]:
    return {
        "person_url": image_host.url("/person.png"),
        "garment_urls": [image_host.url("/shirt.png")],
        **extra,
    }


async def submit(gateway: RunningGateway, key: str, body: dict[str, Any]) -> dict[str, Any]:
    status, answer, _ = await gateway.request("POST", "/api/v1/tryon", key=key, json=body)
    assert status == 200, answer
    return dict(answer)


async def test_a_try_on_through_gemini_records_what_ops_need(
    gemini_gateway: RunningGateway, fake: FakeGemini, image_host: ImageHost
) -> None:
    _, key = await gemini_gateway.account_with_key(credits=100)
    answer = await submit(
        gemini_gateway, key, request(image_host, output_size="2K", seed=42, prompt="smart casual")
    )
    assert answer["status"] == "succeeded", answer
    assert len(fake.requests) == 1
    sent = fake.requests[0]
    assert sent.image_config["imageSize"] == "2K" and sent.seed == 42
    assert "smart casual" in sent.texts()[-1]
    job = await gemini_gateway.runtime.jobs.by_public_id(answer["job_id"])
    assert job is not None
    (generation,) = job.report["generations"]
    assert generation["backend"] == "gemini" and generation["model_version"] == "fake-gemini-1"
    assert generation["total_token_count"] > 0 and generation["prompt_version"].startswith("tryon-")
    assert generation["quality"] == "passed"


@pytest.mark.parametrize(
    ("behaviours", "message", "refunded"),
    [
        (["blocked_prompt"], "content_blocked", False),
        (["finish_image_safety"], "content_blocked", False),
        (["no_image"], "no_image", True),
        (["status:503", "status:503"], "model_unavailable", True),
    ],
)
async def test_failures_follow_the_refund_table(
    gemini_gateway: RunningGateway,
    fake: FakeGemini,
    image_host: ImageHost,
    behaviours: list[str],
    message: str,
    refunded: bool,
) -> None:
    account_id, key = await gemini_gateway.account_with_key(credits=100)
    fake.script(behaviours)
    answer = await submit(gemini_gateway, key, request(image_host))
    assert (answer["status"], answer["error_code"], answer["error_message"]) == (
        "failed",
        "generation_failed",
        message,
    )
    assert answer["credits_refunded"] == (8 if refunded else 0)
    assert answer["credits_remaining"] == (100 if refunded else 92)
    detail = await gemini_gateway.admin("GET", f"/accounts/{account_id}")
    assert detail["credits_remaining"] == detail["ledger_sum"]


async def test_a_blank_result_is_retried_once_with_a_derived_seed(
    gemini_gateway: RunningGateway, fake: FakeGemini, image_host: ImageHost
) -> None:
    _, key = await gemini_gateway.account_with_key(credits=100)
    fake.script(["blank", "image"])
    answer = await submit(gemini_gateway, key, request(image_host, seed=7))
    assert answer["status"] == "succeeded", answer
    assert answer["seed"] == 7
    seeds = [sent.seed for sent in fake.requests]
    assert len(seeds) == 2 and seeds[0] == 7 and seeds[1] not in (None, 7)
    job = await gemini_gateway.runtime.jobs.by_public_id(answer["job_id"])
    assert job is not None
    assert [g["quality"] for g in job.report["generations"]] == ["blank or flat image", "passed"]


async def test_results_that_keep_failing_the_gate_are_refunded(
    gemini_gateway: RunningGateway, fake: FakeGemini, image_host: ImageHost
) -> None:
    _, key = await gemini_gateway.account_with_key(credits=100)
    fake.script(["blank", "blank"])
    answer = await submit(gemini_gateway, key, request(image_host))
    assert (answer["status"], answer["error_message"]) == ("failed", "quality_check_failed")
    assert answer["credits_refunded"] == 8 and answer["credits_remaining"] == 100
    job = await gemini_gateway.runtime.jobs.by_public_id(answer["job_id"])
    assert job is not None and len(job.report["generations"]) == 2


async def test_repeated_content_blocked_suspends_the_key_until_ops_enable_it(
    gemini_gateway: RunningGateway, fake: FakeGemini, image_host: ImageHost
) -> None:
    account_id = await gemini_gateway.new_account(credits=100)
    minted = await gemini_gateway.new_key(account_id)
    fake.script(["blocked_prompt"] * 3)
    for _ in range(3):
        answer = await submit(gemini_gateway, minted["key"], request(image_host))
        assert answer["error_message"] == "content_blocked"
    status, body, _ = await gemini_gateway.request(
        "POST", "/api/v1/tryon", key=minted["key"], json=request(image_host)
    )
    assert (status, body) == (403, {"detail": "Key disabled"})
    key = await gemini_gateway.runtime.ledger.repo.get_key(minted["id"])
    assert key is not None and key.disabled_reason is not None and "content_blocked" in key.disabled_reason
    await gemini_gateway.admin("POST", f"/keys/{minted['id']}/enable")
    answer = await submit(gemini_gateway, minted["key"], request(image_host))
    assert answer["status"] == "succeeded"


async def test_a_catalog_of_twelve_through_gemini(gemini_gateway: RunningGateway, fake: FakeGemini) -> None:
    account_id, key = await gemini_gateway.account_with_key(dialect="ftmvai", credits=100)
    status, created, _ = await gemini_gateway.request(
        "POST",
        "/api/v1/generate",
        key=key,
        json={
            "style": "product_catalog",
            "product_image": fixture_b64("product-coffee-cup.png"),
            "quantity": 12,
            "options": {"quality": "standard", "format": "png"},
        },
    )
    assert status == 202, created
    order = await poll(gemini_gateway, key, created["order_id"])
    assert order["status"] == "completed", order
    assert len(order["results"]["catalog_images"]) == 12
    assert len(fake.requests) == 12 and len({sent.texts()[-1] for sent in fake.requests}) == 12
    detail = await gemini_gateway.admin("GET", f"/accounts/{account_id}")
    assert detail["credits_remaining"] == 64

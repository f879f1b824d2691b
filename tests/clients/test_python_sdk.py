"""The Python SDK (clients/python) against a real gateway: both dialects, live and test keys,
failures, 402, 429 with Retry-After, an idempotent retry after a lost answer, webhooks.

The gateway runs on this test session's event loop, so the blocking client is driven from a
thread (``asyncio.to_thread``) and the async client directly.
"""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from tryon_client import (
    AsyncClient,
    AsyncFitInView,
    AsyncFtmvAI,
    AuthenticationError,
    BadRequestError,
    Client,
    DialectError,
    FitInView,
    FtmvAI,
    InvalidInputError,
    JobFailedError,
    NotFoundError,
    PaymentRequiredError,
    ProgressEvent,
    RateLimitError,
    RetryEvent,
    WebhookVerificationError,
    webhooks,
)

from tests.clients.conftest import CUP, PERSON, SHIRT, TROUSERS, fail_public_id
from tests.clients.proxy import drop_first_answer
from tests.support.gateway import RunningGateway
from tests.support.image_host import ImageHost
from tests.support.webhook_receiver import serve_webhook_receiver


def longest_side(data: bytes) -> int:
    with Image.open(io.BytesIO(data)) as image:
        return max(image.size)


# --- FitInView --------------------------------------------------------------------------------------


async def test_fitinview_live_tryon_async_mixes_paths_bytes_and_urls(
    gateway: RunningGateway, image_host: ImageHost, tmp_path: Path
) -> None:
    _, key = await gateway.account_with_key(credits=100)
    async with AsyncFitInView(key, base_url=gateway.base_url) as client:
        job = await client.tryon(
            person=PERSON,
            garments=[SHIRT.read_bytes(), image_host.url("/trousers.png")],
            output_size="1k",
            metadata={"order": "42"},
            seed=7,
        )
        assert job.succeeded and job.job_id.startswith("job_")
        assert (job.cost_credits, job.credits_remaining) == (8, 92)
        assert (job.metadata, job.seed) == ({"order": "42"}, 7)
        [saved] = await job.asave(tmp_path / "out.png")
        assert longest_side(saved.read_bytes()) == 1024
        polled = await client.get(job.job_id)
        assert polled.result_url and polled.status == "succeeded"
        account = await client.account()
        assert account.credits_remaining == 92 and account.total_calls == 1
        assert account.tryon_cost_credits == {"1K": 8, "2K": 12, "4K": 20}
        assert [listed.job_id async for listed in client.list()] == [job.job_id]


async def test_fitinview_test_key_sync_client_pages_and_waits(
    gateway: RunningGateway, tmp_path: Path
) -> None:
    _, key = await gateway.account_with_key(credits=5, mode="test")

    def scenario() -> tuple[list[str], list[str], Any, Any, list[ProgressEvent]]:
        events: list[ProgressEvent] = []
        with Client(key, base_url=gateway.base_url) as client:
            assert isinstance(client, FitInView)
            pil_person = Image.open(PERSON)
            submitted = [
                client.tryon(person=pil_person, garments=[SHIRT], wait=False, seed=n).job_id for n in range(3)
            ]
            waited = client.wait_for(submitted[-1], on_progress=events.append)
            listed = [job.job_id for job in client.list(page_size=1)]
            image = waited.image()
            return submitted, listed, waited, (image.size, client.account().credits_remaining), events

    submitted, listed, waited, (size, credits), events = await asyncio.to_thread(scenario)
    assert listed == submitted[::-1], "every page, newest first"
    assert waited.succeeded and waited.cost_credits == 0 and waited.seed == 2
    assert max(size) == 1024 and credits == 5, "test keys move no credits"
    assert events and events[-1].status == "succeeded"


async def test_purchase_with_test_key_is_fake_and_grants_nothing(gateway: RunningGateway) -> None:
    _, key = await gateway.account_with_key(credits=10, mode="test")
    async with AsyncFitInView(key, base_url=gateway.base_url) as client:
        purchase = await client.purchase_credits("starter", "spt_test_123")
        assert (purchase.status, purchase.credits_added, purchase.credits_remaining) == (
            "succeeded",
            1200,
            10,
        )


async def test_errors_carry_status_code_message(gateway: RunningGateway, image_host: ImageHost) -> None:
    _, broke = await gateway.account_with_key(credits=5)
    async with AsyncFitInView(broke, base_url=gateway.base_url) as client:
        with pytest.raises(PaymentRequiredError) as paid:
            await client.tryon(person=PERSON, garments=[SHIRT])
        assert (paid.value.status, paid.value.code, paid.value.message) == (402, None, "Insufficient credits")
        assert paid.value.request_id == paid.value.headers.get("x-request-id")
        with pytest.raises(NotFoundError) as missing:
            await client.get("job_doesnotexist")
        assert missing.value.status == 404
        with pytest.raises(InvalidInputError):
            await client.tryon(person=PERSON, garments=[SHIRT] * 4)
        with pytest.raises(InvalidInputError):
            await client.tryon(person=PERSON, garments=[SHIRT], output_size="8K")
        with pytest.raises(InvalidInputError, match="cannot read"):
            await client.tryon(person=PERSON.with_name("missing.png"), garments=[SHIRT])
        assert (await client.account()).credits_remaining == 5
    _, funded = await gateway.account_with_key(credits=100)
    async with AsyncFitInView(funded, base_url=gateway.base_url) as client:
        with pytest.raises(BadRequestError) as bad:
            await client.tryon(person=image_host.url("/text"), garments=[SHIRT], output_size="1K")
        assert bad.value.status == 400 and "person" in bad.value.message
        assert (await client.account()).credits_remaining == 100, "a 400 costs nothing"
    async with AsyncFitInView("fiv_live_" + "0" * 40, base_url=gateway.base_url) as unknown:
        with pytest.raises(AuthenticationError) as auth:
            await unknown.account()
        assert auth.value.status == 401
    with pytest.raises(DialectError):
        FtmvAI(broke, base_url=gateway.base_url)


async def test_failed_job_raises_with_its_code(slow_gateway: RunningGateway) -> None:
    _, key = await slow_gateway.account_with_key(credits=100)
    async with AsyncFitInView(key, base_url=slow_gateway.base_url) as client:
        # a sync wait that ends in failure
        waiting = asyncio.create_task(client.tryon(person=PERSON, garments=[SHIRT], idempotency_key="fail-1"))
        for _ in range(400):
            submitted = [job async for job in client.list()]
            if submitted:
                break
            await asyncio.sleep(0.05)
        [running] = submitted
        await fail_public_id(slow_gateway, running.job_id)
        with pytest.raises(JobFailedError) as failed:
            await waiting
        assert failed.value.code == "generation_failed"
        assert failed.value.job.id == running.job_id and failed.value.job.error_message == "content_blocked"
        # polling after an async submit
        job = await client.tryon(person=PERSON, garments=[SHIRT], wait=False)
        await fail_public_id(slow_gateway, job.job_id)
        with pytest.raises(JobFailedError):
            await client.wait_for(job)
        final = await client.wait_for(job, raise_on_failure=False)
        assert final.failed and final.cost_credits == 8 and final.credits_refunded == 0
        assert [job.job_id async for job in client.list(status="failed")] == [job.job_id, running.job_id]
        assert (await client.account()).credits_remaining == 84, "content_blocked is not refunded"


async def test_submit_429_is_waited_out_then_refused_past_the_budget(gateway_factory: Any) -> None:
    limited: RunningGateway = await gateway_factory(rate_limit_per_min=1, rate_limit_window_seconds=2)
    _, key = await limited.account_with_key(credits=100, mode="test")
    retries: list[RetryEvent] = []
    async with AsyncFitInView(key, base_url=limited.base_url, on_retry=retries.append) as client:
        # at once, so they meet in one window however slow the machine: two of them get 429s
        jobs = await asyncio.gather(
            *[client.tryon(person=PERSON, garments=[SHIRT], wait=False) for _ in range(3)]
        )
        assert len({job.job_id for job in jobs}) == 3
        rate_limited = [event for event in retries if event.reason == "HTTP 429"]
        assert rate_limited and all(1 <= event.delay <= 2 for event in rate_limited), retries
        assert (await client.account()).total_calls == 3, "a refused submit creates no job"
    async with AsyncFitInView(key, base_url=limited.base_url, max_rate_limit_wait=0) as impatient:
        refusals: list[RateLimitError] = []
        for _ in range(3):  # two submits at once share a window (unless it turns over between them)
            outcomes = await asyncio.gather(
                *[impatient.tryon(person=PERSON, garments=[SHIRT], wait=False) for _ in range(2)],
                return_exceptions=True,
            )
            refusals = [outcome for outcome in outcomes if isinstance(outcome, RateLimitError)]
            if refusals:
                break
        refused = refusals[0]
        assert refused.status == 429 and refused.retry_after is not None and refused.retry_after >= 1
        assert refused.message == "Rate limit exceeded"


async def test_lost_answer_is_retried_with_the_same_key_and_charged_once(gateway: RunningGateway) -> None:
    _, key = await gateway.account_with_key(credits=100)
    retries: list[RetryEvent] = []
    async with drop_first_answer("127.0.0.1", gateway.port) as proxy:
        async with AsyncFitInView(key, base_url=proxy.base_url, on_retry=retries.append) as client:
            job = await client.tryon(person=PERSON, garments=[SHIRT])
        assert len(proxy.dropped_answers) == 1 and proxy.dropped_answers[0].startswith(b"HTTP/1.1 200")
        assert job.job_id.encode() in proxy.dropped_answers[0], "the lost answer was this same job"
    assert len(retries) == 1 and retries[0].reason.startswith("transport: "), retries
    async with AsyncFitInView(key, base_url=gateway.base_url) as direct:
        assert [listed.job_id async for listed in direct.list()] == [job.job_id]
        assert (await direct.account()).credits_remaining == 92, "charged once"


async def test_sync_client_retries_a_lost_answer_too(gateway: RunningGateway) -> None:
    _, key = await gateway.account_with_key(credits=100, mode="test")
    async with drop_first_answer("127.0.0.1", gateway.port) as proxy:

        def submit() -> str:
            with FitInView(key, base_url=proxy.base_url) as client:
                return client.tryon(person=PERSON, garments=[SHIRT], wait=False).job_id

        job_id = await asyncio.to_thread(submit)
        assert len(proxy.dropped_answers) == 1
    status, account, _ = await gateway.request("GET", "/api/v1/account", key=key)
    assert status == 200 and account["total_calls"] == 1, "one job for two deliveries of the submit"
    assert job_id.startswith("job_")


async def test_a_409_while_the_first_is_being_accepted_is_waited_out(
    gateway: RunningGateway, image_host: ImageHost
) -> None:
    """Two submits with one Idempotency-Key: the gateway answers the later one 409 while the first
    still fetches its (slow, and finally refused) person URL; the client waits and sends it again."""
    _, key = await gateway.account_with_key(credits=100)
    retries: list[RetryEvent] = []
    async with AsyncFitInView(key, base_url=gateway.base_url, on_retry=retries.append) as client:
        submits = [
            client.tryon(
                person=image_host.url("/slow?seconds=2"), garments=[SHIRT], wait=False, idempotency_key="k1"
            )
            for _ in range(2)
        ]
        outcomes = await asyncio.gather(*submits, return_exceptions=True)
        assert all(isinstance(outcome, BadRequestError) for outcome in outcomes), outcomes
        assert "HTTP 409" in [event.reason for event in retries], retries
        assert (await client.account()).credits_remaining == 100


# --- webhooks ---------------------------------------------------------------------------------------


async def test_webhook_from_the_gateway_verifies_with_the_sdk(
    gateway_factory: Any, image_host: ImageHost
) -> None:
    async with serve_webhook_receiver() as receiver:
        hooked: RunningGateway = await gateway_factory(
            outbound_allow_hosts=(receiver.host_port, image_host.host_port)
        )
        account_id = await hooked.new_account(credits=10)
        minted = await hooked.new_key(account_id, "test")
        secret = str(minted["webhook_secret"])
        endpoint = receiver.endpoint(secret)
        async with AsyncFitInView(str(minted["key"]), base_url=hooked.base_url) as client:
            job = await client.tryon(person=PERSON, garments=[SHIRT], webhook_url=endpoint.url)
        [received] = await receiver.wait_for(endpoint, 1)

    event = webhooks.verify(received.raw_body, received.headers, secret)
    assert (event.event, event.job_id, event.status) == ("tryon.completed", job.job_id, "succeeded")
    assert webhooks.verify(received.raw_body, received.headers, secret, require_v2=True).job_id == job.job_id
    with pytest.raises(WebhookVerificationError, match="does not match"):
        webhooks.verify(received.raw_body.replace(b"succeeded", b"failed"), received.headers, secret)
    with pytest.raises(WebhookVerificationError, match="does not match"):
        webhooks.verify(received.raw_body, received.headers, "whsec_wrong")
    t = int(received.headers["X-FitInView-Timestamp"])
    with pytest.raises(WebhookVerificationError, match="off"):
        webhooks.verify(received.raw_body, received.headers, secret, now=t + 301)
    v1_only = {"X-FitInView-Signature": received.headers["X-FitInView-Signature"]}
    assert webhooks.verify(received.raw_body, v1_only, secret).job_id == job.job_id
    with pytest.raises(WebhookVerificationError, match="V2"):
        webhooks.verify(received.raw_body, v1_only, secret, require_v2=True)
    with pytest.raises(WebhookVerificationError):
        webhooks.verify(received.raw_body, {}, secret)


def test_sign_and_verify_agree_and_replays_are_refused() -> None:
    body = b'{"event":"tryon.completed","job_id":"job_x","status":"failed"}'
    headers = webhooks.sign(body, "whsec_abc", timestamp=1_700_000_000)
    assert webhooks.verify(body, headers, "whsec_abc", now=1_700_000_100).status == "failed"
    with pytest.raises(WebhookVerificationError):
        webhooks.verify(body, headers, "whsec_abc", now=1_700_000_000 + 3600)
    forged = dict(headers, **{"X-FitInView-Timestamp": "1700000999"})
    with pytest.raises(WebhookVerificationError, match="Timestamp"):
        webhooks.verify(body, forged, "whsec_abc", now=1_700_000_100)


# --- FtmvAI -----------------------------------------------------------------------------------------


async def test_ftmvai_tryon_and_catalog_live(
    gateway: RunningGateway, image_host: ImageHost, tmp_path: Path
) -> None:
    _, key = await gateway.account_with_key(credits=100, dialect="ftmvai")
    client = AsyncClient(key, base_url=gateway.base_url)
    assert isinstance(client, AsyncFtmvAI)
    async with client:
        percents: list[int | None] = []
        order = await client.generate(
            person=PERSON,
            clothing=image_host.url("/shirt.png"),
            quality="standard",
            format="png",
            on_progress=lambda event: percents.append(event.percent),
        )
        assert order.succeeded and order.credits_used == 1 and percents[-1] == 100
        [saved] = await order.asave(tmp_path)
        assert saved.suffix == ".png" and longest_side(saved.read_bytes()) == 1024
        assert client.rate_limit is not None and client.rate_limit.limit == 100
        remaining_before = client.rate_limit.remaining

        account = await client.account()
        assert account.credits_remaining == 99 and account.account.api_calls_total == 1
        assert client.rate_limit.remaining == remaining_before
        [polled_url] = (await client.order(order.order_id)).result_urls
        assert polled_url.split("?")[0] == order.result_urls[0].split("?")[0]
        with pytest.raises(NotFoundError) as missing:
            await client.order(999_999_999)
        assert (missing.value.status, missing.value.code) == (404, "ORDER_NOT_FOUND")
        with pytest.raises(InvalidInputError):
            await client.catalog(product=CUP, count=7)
    _, test_key = await gateway.account_with_key(credits=0, mode="test", dialect="ftmvai")
    async with AsyncFtmvAI(test_key, base_url=gateway.base_url) as tester:
        catalog = await tester.catalog(product=CUP, count=6, quality="standard")
        assert catalog.succeeded and catalog.credits_used == 0 and len(catalog.result_urls) == 6
        files = await catalog.asave(tmp_path / "shots")
        assert sorted(path.name for path in files) == [f"{catalog.id}_{n:02d}.jpg" for n in range(1, 7)]
        assert tester.rate_limit is not None and tester.rate_limit.remaining == tester.rate_limit.limit - 1


async def test_ftmvai_test_key_sync_and_402(gateway: RunningGateway) -> None:
    _, test_key = await gateway.account_with_key(credits=0, mode="test", dialect="ftmvai")
    _, broke = await gateway.account_with_key(credits=0, dialect="ftmvai")

    def scenario() -> tuple[Any, Any]:
        with FtmvAI(test_key, base_url=gateway.base_url) as client:
            order = client.generate(person=PERSON.read_bytes(), clothing=TROUSERS)
        with FtmvAI(broke, base_url=gateway.base_url) as client, pytest.raises(PaymentRequiredError) as paid:
            client.generate(person=PERSON, clothing=SHIRT)
        return order, paid.value

    order, paid = await asyncio.to_thread(scenario)
    assert order.succeeded and order.credits_used == 0
    assert (paid.status, paid.code, paid.message) == (
        402,
        "INSUFFICIENT_CREDITS",
        "Insufficient credits for this operation",
    )


async def test_ftmvai_waits_out_the_in_progress_429_and_reports_failures(
    slow_gateway: RunningGateway,
) -> None:
    account_id = await slow_gateway.new_account(dialect="ftmvai", credits=10, plan="free")
    key = str((await slow_gateway.new_key(account_id))["key"])
    retries: list[RetryEvent] = []
    async with AsyncFtmvAI(key, base_url=slow_gateway.base_url, on_retry=retries.append) as client:
        first = await client.generate(person=PERSON, clothing=SHIRT, wait=False)
        second = await client.generate(person=PERSON, clothing=SHIRT, wait=False)  # free plan: 1 at a time
        assert [event.reason for event in retries][:1] == ["HTTP 429"] and retries[0].delay == 1
        assert (await client.order(first.order_id)).status == "completed", "the second waited for the first"
        await fail_public_id(slow_gateway, second.id)
        with pytest.raises(JobFailedError) as failed:
            await client.wait_for_order(second)
        assert failed.value.code == "GENERATION_FAILED" and failed.value.job.id == second.id
        assert client.rate_limit is not None and client.rate_limit.limit in (1, 10, 50)

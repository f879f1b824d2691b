"""Fault 4: Gemini slower than the job deadline, answering 429/503 storms, or dropping the
connection mid-response, against ``serve`` and ``worker`` processes on the ``gemini`` backend.

Each ends with the issue's invariants: every job ends within its deadline (a failure the
contract refunds), one debit and at most one refund per job, balances equal their entries,
``ledger verify`` exits 0, no client saw a 500, and the next job after the fault succeeds on
the same single worker thread (the gateway recovers by itself).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest

from tests.faults.fixtures_b import Deployment, deployment
from tests.support import services
from tests.support.fake_gemini import FakeGemini, serve_fake_gemini
from tests.support.gateway import ADMIN_TOKEN
from tests.support.image_host import ImageHost

pytestmark = pytest.mark.faults

API_KEY = "fault-gemini-key"
DEADLINE = 15
"""``TRYON_JOB_DEADLINE_SECONDS``: short, and far below the model's own per-attempt timeout."""
PRICE = 8


@pytest.fixture(scope="module")
async def fake() -> AsyncIterator[FakeGemini]:
    async with serve_fake_gemini(API_KEY) as server:
        yield server


@pytest.fixture(scope="module")
async def gemini(
    fake: FakeGemini,
    http: aiohttp.ClientSession,
    redis_url: str,
    s3: services.S3Endpoint,
    image_host: ImageHost,
) -> AsyncIterator[Deployment]:
    async with deployment(
        http,
        redis_url,
        s3,
        image_host,
        worker_threads=1,  # one thread: a job stuck on the model would starve every later one
        TRYON_ENGINE="gemini",
        TRYON_GEMINI_API_KEY=API_KEY,
        TRYON_GEMINI_BASE_URL=fake.base_url,
        TRYON_GEMINI_TIMEOUT_SECONDS="60",
        TRYON_GEMINI_RETRY_ATTEMPTS="3",
        TRYON_GEMINI_RETRY_INITIAL_DELAY_SECONDS="0.05",
        TRYON_GEMINI_RETRY_MAX_DELAY_SECONDS="0.2",
        TRYON_JOB_DEADLINE_SECONDS=str(DEADLINE),
        TRYON_SYNC_WAIT_SECONDS="30",
    ) as group:
        yield group
        await group.check_invariants()  # and `ledger verify` exits 0, once for the module


@pytest.fixture(autouse=True)
def fresh(fake: FakeGemini) -> None:
    fake.reset()


async def submit(gemini: Deployment, key: str, *, wait: bool) -> dict[str, object]:
    status, body, _ = await gemini.call("POST", "/api/v1/tryon", key, gemini.tryon_request(wait=wait))
    assert status == 200, body
    return dict(body)


async def next_job_succeeds(gemini: Deployment, key: str) -> None:
    """The model answers again: a sync try-on on the same (single) worker thread succeeds."""
    answer = await submit(gemini, key, wait=True)
    assert answer["status"] == "succeeded", (answer["error_code"], answer["error_message"])


async def test_a_model_slower_than_the_deadline_fails_the_job_in_time_and_frees_the_worker(
    gemini: Deployment, fake: FakeGemini
) -> None:
    account, key, _ = await gemini.account(credits=100)
    fake.script(["hang"])
    started = time.monotonic()
    job = await submit(gemini, key, wait=False)
    done = await gemini.wait_terminal(str(job["job_id"]), key, timeout=DEADLINE + 10)
    assert done["status"] == "failed", done
    assert done["credits_refunded"] == PRICE, done
    # the model never answered: the model was unavailable (the worker gave up before the sweeper)
    assert (done["error_code"], done["error_message"]) == ("generation_failed", "model_unavailable"), done
    assert time.monotonic() - started < DEADLINE + 10

    # the only worker thread is free again (the hung request was abandoned, not left to its own
    # 60 s timeout), and a model that is slow but within the deadline is still waited for
    fake.script(["slow:1"])
    await next_job_succeeds(gemini, key)
    await gemini.check_money()
    _, detail, _ = await gemini.call("GET", f"/admin/accounts/{account}", ADMIN_TOKEN)
    assert detail["credits_remaining"] == 100 - 2 * PRICE + PRICE == detail["ledger_sum"]


async def test_a_short_storm_is_ridden_out_and_a_long_one_fails_refunded(
    gemini: Deployment, fake: FakeGemini
) -> None:
    _, key, _ = await gemini.account(credits=100)
    # shorter than the SDK's retries: the job succeeds
    fake.script(["status:429", "status:503"])
    answer = await submit(gemini, key, wait=True)
    assert answer["status"] == "succeeded", answer
    assert [request.behaviour for request in fake.requests] == ["status:429", "status:503", "image"]

    # longer: concurrent jobs all fail, refunded, and the model is asked a bounded number of times
    fake.reset()
    fake.script(["status:429", "status:503"] * 30)
    answers = await asyncio.gather(*(submit(gemini, key, wait=True) for _ in range(3)))
    for answer in answers:
        assert answer["status"] == "failed", answer
        assert (answer["error_code"], answer["error_message"]) == ("generation_failed", "model_unavailable")
        assert answer["credits_refunded"] == PRICE
    assert len(fake.requests) == 3 * 3  # TRYON_GEMINI_RETRY_ATTEMPTS per job, no more

    fake.reset()
    await next_job_succeeds(gemini, key)
    await gemini.check_money()


async def test_a_connection_dropped_mid_response(gemini: Deployment, fake: FakeGemini) -> None:
    _, key, _ = await gemini.account(credits=100)
    # once: retried like any lost connection, and the job succeeds
    fake.script(["drop"])
    answer = await submit(gemini, key, wait=True)
    assert answer["status"] == "succeeded", answer
    assert [request.behaviour for request in fake.requests] == ["drop", "image"]

    # every time: the job fails as the model being unavailable, refunded, not as a crash
    fake.reset()
    fake.script(["drop"] * 10)
    answer = await submit(gemini, key, wait=True)
    assert answer["status"] == "failed", answer
    assert (answer["error_code"], answer["error_message"]) == ("generation_failed", "model_unavailable")
    assert answer["credits_refunded"] == PRICE

    fake.reset()
    await next_job_succeeds(gemini, key)
    await gemini.check_money()

"""The failure table of DECISIONS.md: words, and which outcomes are refunded (exactly once)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from engine.audit import verify_all
from engine.execution import fail_job
from gateway.embedded import start_seaweed_s3
from tests.support.gateway import RunningGateway
from tests.support.image_host import ImageHost

TABLE = [
    ("generation_failed", "content_blocked", False),
    ("generation_failed", "no_image", True),
    ("generation_failed", "quality_check_failed", True),
    ("generation_failed", "model_unavailable", True),
    ("storage_failed", "writing the result failed", True),
    ("internal_error", "worker lost or deadline exceeded", True),
]


@pytest.fixture(scope="module")
async def slow_gateway(gateway_factory: Any) -> RunningGateway:
    gateway: RunningGateway = await gateway_factory(local_backend_delay_seconds=3.0)
    return gateway


def request(image_host: ImageHost) -> dict[str, Any]:
    return {
        "person_url": image_host.url("/person.png"),
        "garment_urls": [image_host.url("/shirt.png")],
        "output_size": "2K",
        "wait": False,
    }


@pytest.mark.parametrize(("code", "message", "refunded"), TABLE)
async def test_failure_words_and_refund_rule(
    slow_gateway: RunningGateway, image_host: ImageHost, code: str, message: str, refunded: bool
) -> None:
    account_id, key = await slow_gateway.account_with_key(credits=100)
    _, answer, _ = await slow_gateway.request("POST", "/api/v1/tryon", key=key, json=request(image_host))
    job = await slow_gateway.runtime.jobs.by_public_id(answer["job_id"])
    assert job is not None

    failed = await fail_job(slow_gateway.runtime, job.id, code=code, message=message)
    assert failed is not None
    again = await fail_job(slow_gateway.runtime, job.id, code=code, message=message)
    assert again is None, "a finished job can't fail twice"

    status, polled, _ = await slow_gateway.request("GET", f"/api/v1/tryon/{answer['job_id']}", key=key)
    assert status == 200
    assert polled["status"] == "failed"
    assert polled["error_code"] == code and polled["error_message"] == message
    assert polled["cost_credits"] == 12
    assert polled["credits_refunded"] == (12 if refunded else 0)
    detail = await slow_gateway.admin("GET", f"/accounts/{account_id}")
    assert detail["credits_remaining"] == (100 if refunded else 88) == detail["ledger_sum"]


async def test_the_worker_cannot_revive_a_failed_job(
    slow_gateway: RunningGateway, image_host: ImageHost
) -> None:
    _, key = await slow_gateway.account_with_key(credits=100)
    _, answer, _ = await slow_gateway.request("POST", "/api/v1/tryon", key=key, json=request(image_host))
    running = await slow_gateway.wait_for_status(answer["job_id"], key, {"running"})
    job = await slow_gateway.runtime.jobs.by_public_id(running["job_id"])
    assert job is not None
    # wait until a worker has claimed it, then fail it under the worker's feet
    for _ in range(200):
        job = await slow_gateway.runtime.jobs.by_public_id(running["job_id"])
        assert job is not None
        if job.status == "running":
            break
        await asyncio.sleep(0.05)
    await fail_job(slow_gateway.runtime, job.id, code="internal_error", message="ops cancelled")
    await asyncio.sleep(3.5)  # the worker's backend call ends and tries to store and succeed
    final = await slow_gateway.runtime.jobs.by_public_id(running["job_id"])
    assert final is not None and final.status == "failed" and final.error_message == "ops cancelled"
    assert await verify_all(slow_gateway.runtime) == []


async def test_storage_failure_is_recorded_and_refunded(
    gateway_factory: Any, image_host: ImageHost, tmp_path: Path
) -> None:
    """The S3 server dies while the model works: storing the result fails, the job says so and
    is refunded."""
    weed = start_seaweed_s3(
        tmp_path, access_key="doomed", secret_key="doomed-secret", log_path=tmp_path / "log"
    )
    try:
        gateway: RunningGateway = await gateway_factory(
            local_backend_delay_seconds=1.5,
            s3_endpoint=weed.endpoint,
            s3_access_key="doomed",
            s3_secret_key="doomed-secret",
        )
        account_id, key = await gateway.account_with_key(credits=50)
        _, answer, _ = await gateway.request("POST", "/api/v1/tryon", key=key, json=request(image_host))
        for _ in range(200):
            job = await gateway.runtime.jobs.by_public_id(answer["job_id"])
            assert job is not None
            if job.stage == "model_called":
                break
            await asyncio.sleep(0.02)
        else:
            raise AssertionError("the worker never called the model")
    finally:
        weed.stop(timeout=0)

    done = await gateway.wait_for_status(answer["job_id"], key, {"succeeded", "failed"}, timeout=120)
    assert done["status"] == "failed"
    assert done["error_code"] == "storage_failed"
    assert done["error_message"] == "storing the result failed"  # the client library's words stay inside
    assert done["credits_refunded"] == 12
    ops_view = await gateway.admin("GET", f"/jobs/{answer['job_id']}")
    assert ops_view["report"]["failure_detail"].startswith("storing the result failed: ")
    assert len(ops_view["report"]["failure_detail"]) > len("storing the result failed: ")
    detail = await gateway.admin("GET", f"/accounts/{account_id}")
    assert detail["credits_remaining"] == 50 == detail["ledger_sum"]

"""Job lifecycle guarantees: forward-only status, and the sweeper healing a lost message."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest

from engine.models import StoredImage
from engine.service import new_public_id
from tests.support.gateway import RunningGateway, fixture_bytes


async def _queued_job_without_a_message(gateway: RunningGateway, key_id: int, account_id: int) -> str:
    """The state a crash between the creating commit and the send leaves behind."""
    runtime = gateway.runtime
    public_id = new_public_id()
    prefix = f"accounts/{account_id}/jobs/{public_id}"
    await runtime.store.put(f"{prefix}/person.png", fixture_bytes("person-astronaut.png"), "image/png")
    await runtime.store.put(
        f"{prefix}/garment-1.png", fixture_bytes("garment-shirt-red-stripes.png"), "image/png"
    )
    async with runtime.db.transaction():
        job = await runtime.jobs.insert(
            public_id=public_id,
            account_id=account_id,
            api_key_id=key_id,
            dialect="fitinview",
            kind="tryon",
            mode="live",
            backend="local",
            params={"size_label": "1K", "longest_side": 1024, "output_format": "png"},
            inputs=[
                StoredImage(
                    key=f"{prefix}/person.png", role="person", content_type="image/png", width=512, height=512
                ),
                StoredImage(
                    key=f"{prefix}/garment-1.png", role="garment", content_type="image/png", width=1, height=1
                ),
            ],
            cost_credits=8,
            metadata=None,
            seed=None,
            webhook_url=None,
        )
        await runtime.ledger.debit_for_job(account_id, job.id, 8)
    return public_id


async def test_sweeper_sends_a_job_whose_message_was_lost(gateway_factory: Any) -> None:
    gateway: RunningGateway = await gateway_factory(requeue_after_seconds=0.5, sweep_interval_seconds=0.2)
    account_id = await gateway.new_account(credits=50)
    minted = await gateway.new_key(account_id)
    public_id = await _queued_job_without_a_message(gateway, minted["id"], account_id)
    done = await gateway.wait_for_status(public_id, minted["key"], {"succeeded", "failed"})
    assert done["status"] == "succeeded"
    assert done["cost_credits"] == 8


async def test_sweeper_fails_and_refunds_a_job_stuck_past_its_deadline(gateway_factory: Any) -> None:
    """A job claimed by a worker that was then lost (no message left, nothing running it).

    A model slower than the deadline is the worker's own business: it gives up first and fails
    the job ``model_unavailable`` (tests/faults/test_gemini_faults.py)."""
    gateway: RunningGateway = await gateway_factory(job_deadline_seconds=1, sweep_interval_seconds=0.2)
    account_id = await gateway.new_account(credits=50)
    minted = await gateway.new_key(account_id)
    public_id = await _queued_job_without_a_message(gateway, minted["id"], account_id)
    job = await gateway.runtime.jobs.by_public_id(public_id)
    assert job is not None
    claimed = await gateway.runtime.jobs.claim(job.id, deadline_seconds=1)
    assert claimed is not None and claimed.status == "running"
    done = await gateway.wait_for_status(public_id, minted["key"], {"succeeded", "failed"}, timeout=30)
    assert (done["status"], done["error_code"]) == ("failed", "internal_error")
    assert done["credits_refunded"] == 8
    detail = await gateway.admin("GET", f"/accounts/{account_id}")
    assert detail["credits_remaining"] == 50 == detail["ledger_sum"]


async def test_a_finished_job_cannot_move_again(gateway: RunningGateway) -> None:
    account_id = await gateway.new_account(credits=50)
    minted = await gateway.new_key(account_id)
    public_id = await _queued_job_without_a_message(gateway, minted["id"], account_id)
    job = await gateway.runtime.jobs.by_public_id(public_id)
    assert job is not None
    gateway.runtime.enqueue_job(job.id)
    await gateway.wait_for_status(public_id, minted["key"], {"succeeded"})
    # a redelivered message finds nothing to claim
    assert await gateway.runtime.jobs.claim(job.id, deadline_seconds=60) is None
    assert await gateway.runtime.jobs.fail(job.id, code="internal_error", message="late") is None
    with pytest.raises(asyncpg.RaiseError, match="is finished"):
        await gateway.runtime.db.fetch("UPDATE jobs SET status = 'queued' WHERE id = $1", job.id)
    await asyncio.sleep(0)

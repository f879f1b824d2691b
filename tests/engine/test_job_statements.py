"""What a test-key (stock) job and a test-key submit cost in database statements (issue 10).

Counted on a running gateway's own :class:`~ledger.database.Database` (``StatementCounter``: every
``fetch`` and every transaction). A stock job is two conditional UPDATEs and no transaction: the
claim, and the success, which also writes the generation report and returns the balance the
completion event carries (the stock answer is in memory, so no poll could see ``model_called`` or
``result_stored``); its result references the shared stock picture, uploaded once, not a copy per
job. A job with a webhook still records its event in the transaction that makes it succeed. A
FitInView test-key submit without an Idempotency-Key creates its job with one INSERT (no
BEGIN/COMMIT) and reads no balance beyond authentication's. The sweeper is slowed so its reads
stay out of the counts.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from engine.backends.stock import shared_key, stock_result
from engine.execution import _run_claimed, fail_job, run_job
from engine.models import StoredImage
from engine.service import new_public_id
from tests.conftest import GatewayFactory
from tests.dialects.test_poll_reads import StatementCounter
from tests.support.gateway import RunningGateway, fixture_b64, fixture_bytes


@pytest.fixture(scope="module")
async def quiet(gateway_factory: GatewayFactory) -> AsyncIterator[tuple[RunningGateway, StatementCounter]]:
    gateway = await gateway_factory(sweep_interval_seconds=3600.0)
    yield gateway, StatementCounter(gateway)


async def _queued_test_job(gateway: RunningGateway, *, webhook_url: str | None = None) -> int:
    """A queued test-key job with stored inputs and no message (the test runs it itself)."""
    account_id = await gateway.new_account(credits=50)
    minted = await gateway.new_key(account_id, mode="test")
    runtime = gateway.runtime
    public_id = new_public_id()
    prefix = f"accounts/{account_id}/jobs/{public_id}"
    await runtime.store.put(f"{prefix}/person.png", fixture_bytes("person-astronaut.png"), "image/png")
    await runtime.store.put(
        f"{prefix}/garment-1.png", fixture_bytes("garment-shirt-red-stripes.png"), "image/png"
    )
    job = await runtime.jobs.insert(
        public_id=public_id,
        account_id=account_id,
        api_key_id=minted["id"],
        dialect="fitinview",
        kind="tryon",
        mode="test",
        backend="stock",
        params={"size_label": "1K", "longest_side": 1024, "output_format": "png"},
        inputs=[
            StoredImage(
                key=f"{prefix}/person.png", role="person", content_type="image/png", width=512, height=512
            ),
            StoredImage(
                key=f"{prefix}/garment-1.png", role="garment", content_type="image/png", width=1, height=1
            ),
        ],
        cost_credits=0,
        metadata=None,
        seed=None,
        webhook_url=webhook_url,
    )
    return job.id


CLAIM = "UPDATE jobs SET status = 'running'"
SUCCEED = "UPDATE jobs SET status = 'succeeded'"


def _matches(statements: list[str], prefixes: list[str]) -> bool:
    return len(statements) == len(prefixes) and all(
        sql.startswith(prefix) for sql, prefix in zip(statements, prefixes, strict=True)
    )


async def test_a_stock_job_is_two_updates_and_no_transaction(
    quiet: tuple[RunningGateway, StatementCounter],
) -> None:
    gateway, counter = quiet
    job_id = await _queued_test_job(gateway)

    statements = await counter.during(1, lambda: run_job(gateway.runtime, job_id))

    assert _matches(statements, [CLAIM, SUCCEED]), statements
    job = await gateway.runtime.jobs.get(job_id)
    assert job is not None
    assert (job.status, job.stage, job.progress, len(job.results)) == ("succeeded", "done", 100, 1)
    (generation,) = job.report["generations"]
    assert generation["backend"] == "stock" and generation["quality"] == "passed", job.report
    assert "gate_seconds" in generation
    stored = await gateway.runtime.store.get(job.results[0].key)
    assert stored.startswith(b"\x89PNG")
    assert job.results[0].key.startswith("stock/"), job.results

    # the next stock job of that size and format references the same picture
    second_id = await _queued_test_job(gateway)
    await run_job(gateway.runtime, second_id)
    second = await gateway.runtime.jobs.get(second_id)
    assert second is not None and second.results == job.results


async def test_a_test_key_submit_creates_its_job_with_one_insert(
    quiet: tuple[RunningGateway, StatementCounter],
) -> None:
    gateway, counter = quiet
    _, key = await gateway.account_with_key(mode="test", credits=70)
    body = {
        "person_image_b64": fixture_b64("person-astronaut.png"),
        "garment_images_b64": [fixture_b64("garment-shirt-red-stripes.png")],
        "wait": False,
    }
    answers: list[Any] = []

    async def submit() -> None:
        answers.append(await gateway.request("POST", "/api/v1/tryon", key=key, json=body))

    statements = await counter.during(1, submit)

    ((status, job, _),) = answers
    assert status == 200, job
    assert job["credits_remaining"] == 70, job
    # the worker may already run the job meanwhile: only the submit's own statements are looked at
    submit_statements = [sql for sql in statements if not sql.startswith("UPDATE jobs")]
    assert "BEGIN" not in submit_statements, submit_statements
    assert [sql for sql in submit_statements if sql.startswith("INSERT")] == [
        sql for sql in submit_statements if sql.startswith("INSERT INTO jobs")
    ]
    assert len([sql for sql in submit_statements if sql.startswith("INSERT INTO jobs")]) == 1, (
        submit_statements
    )
    assert not any(sql.startswith("SELECT balance") for sql in submit_statements), submit_statements
    done = await gateway.wait_for_status(job["job_id"], key, {"succeeded", "failed"})
    assert done["status"] == "succeeded", done


async def test_a_stock_job_with_a_webhook_records_its_event_in_the_succeeding_transaction(
    quiet: tuple[RunningGateway, StatementCounter],
) -> None:
    gateway, counter = quiet
    # a loopback URL: the delivery that follows is refused by the outbound guard, nothing is sent
    job_id = await _queued_test_job(gateway, webhook_url="https://127.0.0.1:9/tryon")

    statements = await counter.during(1, lambda: run_job(gateway.runtime, job_id))

    assert _matches(statements, [CLAIM, "BEGIN", SUCCEED, "INSERT INTO webhook_events"]), statements
    events = await gateway.runtime.db.fetch("SELECT job, status FROM webhook_events WHERE job = $1", job_id)
    assert [event["job"] for event in events] == [job_id]


async def test_a_stock_job_that_loses_to_a_cancel_leaves_the_shared_picture(
    quiet: tuple[RunningGateway, StatementCounter],
) -> None:
    """The worker finishes a stock job an operator cancelled meanwhile: ``succeed`` refuses, the
    report is still written, and the shared stock picture (other jobs' result too) is not deleted."""
    gateway, _ = quiet
    runtime = gateway.runtime
    job_id = await _queued_test_job(gateway)
    claimed = await runtime.jobs.claim(job_id, deadline_seconds=60)
    assert claimed is not None
    assert await fail_job(runtime, job_id, code="cancelled", message="cancelled", always_refund=True)

    await _run_claimed(runtime, claimed)

    job = await runtime.jobs.get(job_id)
    assert job is not None
    assert (job.status, job.error_code, job.results) == ("failed", "cancelled", [])
    (generation,) = job.report["generations"]
    assert generation["backend"] == "stock" and generation["quality"] == "passed", job.report
    stored = await runtime.store.get(shared_key(stock_result(1024, "png")))
    assert stored.startswith(b"\x89PNG")

"""Cancel and re-run against jobs that are really queued or running: a gateway whose local backend
takes a few seconds, four worker threads, and operators acting over HTTP meanwhile."""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

import pytest

from engine.audit import verify_all
from engine.execution import fail_job
from engine.models import JobRecord
from storage.errors import StorageError
from tests.gateway.admin.conftest import AdminClient, cli
from tests.gateway.admin.test_jobs import load_image
from tests.support.gateway import RunningGateway
from tests.support.image_host import ImageHost

DELAY = 3.0
"""Seconds the local backend sleeps before generating: long enough to act while a job runs."""


@pytest.fixture(scope="module")
async def slow(gateway_factory: Any) -> RunningGateway:
    gateway: RunningGateway = await gateway_factory(local_backend_delay_seconds=DELAY)
    return gateway


@pytest.fixture(scope="module")
def ops(slow: RunningGateway) -> AdminClient:
    return AdminClient(slow, slow.settings.admin_token)


def tryon(image_host: ImageHost, **extra: Any) -> dict[str, Any]:
    return {
        "person_url": image_host.url("/person.png"),
        "garment_urls": [image_host.url("/shirt.png")],
    } | extra


async def submit(gateway: RunningGateway, key: str, image_host: ImageHost, **extra: Any) -> str:
    status, answer, _ = await gateway.request(
        "POST", "/api/v1/tryon", key=key, json=tryon(image_host, wait=False, **extra)
    )
    assert status == 200, answer
    return str(answer["job_id"])


async def job(gateway: RunningGateway, public_id: str) -> JobRecord:
    record = await gateway.runtime.jobs.by_public_id(public_id)
    assert record is not None
    return record


async def until(gateway: RunningGateway, public_id: str, check: Any, timeout: float = 120) -> JobRecord:
    """Poll the job's row until ``check(job)`` holds (tests only)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        record = await job(gateway, public_id)
        if check(record):
            return record
        assert asyncio.get_running_loop().time() < deadline, f"{public_id}: {record.status} {record.stage}"
        await asyncio.sleep(0.01)


def generated(record: JobRecord) -> bool:
    """The worker's generation and quality gate are done (what follows: store, then succeed)."""
    generations = record.report.get("generations") or []
    return bool(generations) and "gate_seconds" in generations[-1]


async def stored(gateway: RunningGateway, record: JobRecord) -> bool:
    prefix = f"accounts/{record.account}/jobs/{record.public_id}"
    for name in ("result.png", "result.jpg", "result.webp"):
        try:
            await gateway.runtime.store.get(f"{prefix}/{name}")
        except StorageError:
            continue
        return True
    return False


async def entries(gateway: RunningGateway, record: JobRecord) -> list[tuple[str, int]]:
    rows = await gateway.runtime.db.fetch(
        "SELECT kind, amount FROM ledger_entries WHERE job_id = $1 ORDER BY id", record.id
    )
    return [(row["kind"], row["amount"]) for row in rows]


async def test_cancel_queued_and_running_jobs(
    slow: RunningGateway, ops: AdminClient, image_host: ImageHost
) -> None:
    account_id, key = await slow.account_with_key(credits=100)
    # A sync caller waits on the first job; three more fill the other worker threads.
    waiter = asyncio.create_task(
        slow.request("POST", "/api/v1/tryon", key=key, json=tryon(image_host, wait=True))
    )
    for _ in range(3000):
        page = await ops.ok("GET", f"/jobs?account={account_id}")
        if page["jobs"]:
            break
        await asyncio.sleep(0.02)
    waited = page["jobs"][0]["job_id"]
    blockers = [await submit(slow, key, image_host) for _ in range(3)]
    queued = await submit(slow, key, image_host, webhook_url=image_host.url("/hook"))

    cancelled = await ops.ok("POST", f"/jobs/{queued}/cancel", {"reason": "customer asked"})
    assert cancelled["status"] == "failed" and cancelled["error_code"] == "cancelled"
    assert cancelled["error_message"] == "cancelled by an operator" and cancelled["credits_refunded"] == 8
    record = await job(slow, queued)
    assert record.started_at is None, "it was cancelled while queued, and never claimed after"
    status, body, _ = await ops.call("POST", f"/jobs/{queued}/cancel", {"reason": "again"})
    assert status == 409 and "already failed" in body["detail"]

    await until(slow, waited, lambda row: row.status == "running")
    await ops.ok("POST", f"/jobs/{waited}/cancel", {"reason": "stuck"})
    status, answer, _ = await waiter  # woken by the cancel, not by its 30 s timeout
    assert status == 200 and answer["status"] == "failed" and answer["error_code"] == "cancelled"
    assert answer["credits_refunded"] == 8
    for blocker in blockers:
        await ops.ok("POST", f"/jobs/{blocker}/cancel", {"reason": "clearing the queue"})

    # The workers still generating the cancelled jobs finish, find out, and discard their results.
    for public_id in [waited, *blockers]:
        record = await until(slow, public_id, generated)
    await asyncio.sleep(1.0)
    for public_id in [waited, *blockers, queued]:
        record = await job(slow, public_id)
        assert (record.status, record.error_code, record.results) == ("failed", "cancelled", [])
        assert not await stored(slow, record)
        assert await entries(slow, record) == [("debit", -8), ("refund", 8)]
        _, polled, _ = await slow.request("GET", f"/api/v1/tryon/{public_id}", key=key)
        assert polled["status"] == "failed" and polled["result_url"] is None
    account = await slow.admin("GET", f"/accounts/{account_id}")
    assert account["credits_remaining"] == 100 == account["ledger_sum"]

    detail = await ops.ok("GET", f"/jobs/{queued}")
    (event,) = detail["webhooks"]
    view = await slow.admin("GET", f"/webhooks/{event['id']}")
    assert '"status":"failed"' in view["body"] and '"error_code":"cancelled"' in view["body"]
    audit = await ops.ok("GET", f"/audit?action=job.cancel&account={account_id}")
    assert len(audit["entries"]) == 5
    newest = next(entry for entry in audit["entries"] if entry["target"] == f"job:{queued}")
    assert newest["reason"] == "customer asked" and newest["operator"] == "root"
    assert newest["change"]["before"] == {"status": "queued"}
    assert newest["change"]["after"]["status"] == "failed" and newest["change"]["after"]["refunded"] == 8
    assert await verify_all(slow.runtime) == []


async def _race(slow: RunningGateway, ops: AdminClient, key: str, image_host: ImageHost, mode: str) -> str:
    """One job, and three cancels fired at once near its end. Returns which side won."""
    public_id = await submit(slow, key, image_host)
    if mode == "after_gate":  # the result is being stored; the succeed UPDATE comes next
        await until(slow, public_id, generated)
    elif mode == "after_store":  # the result is stored; the succeed UPDATE is moments away
        await until(slow, public_id, lambda row: row.stage in ("result_stored", "done"))
    else:
        await until(slow, public_id, lambda row: row.stage == "model_called")
        await asyncio.sleep(random.uniform(DELAY - 0.5, DELAY + 1.0))
    answers = await asyncio.gather(
        *(ops.call("POST", f"/jobs/{public_id}/cancel", {"reason": f"race {n}"}) for n in range(3))
    )
    statuses = sorted(status for status, _, _ in answers)
    assert statuses in ([200, 409, 409], [409, 409, 409]), answers
    final = await until(slow, public_id, lambda row: row.status in ("succeeded", "failed"))
    if statuses[0] == 200:
        await until(slow, public_id, generated)
        await asyncio.sleep(1.0)
        final = await job(slow, public_id)
        assert (final.status, final.error_code, final.results, final.credits_refunded) == (
            "failed",
            "cancelled",
            [],
            8,
        )
        assert not await stored(slow, final)
        assert await entries(slow, final) == [("debit", -8), ("refund", 8)]
        return "cancel"
    assert (final.status, final.credits_refunded) == ("succeeded", 0)
    assert await stored(slow, final)
    assert await entries(slow, final) == [("debit", -8)]
    return "success"


async def test_cancel_racing_the_jobs_own_completion(
    slow: RunningGateway, ops: AdminClient, image_host: ImageHost
) -> None:
    account_id, key = await slow.account_with_key(credits=100)
    modes = ["after_gate", "after_store", "near_end", "after_store"]
    winners = await asyncio.gather(*(_race(slow, ops, key, image_host, mode) for mode in modes))
    print("cancel race winners:", list(zip(modes, winners, strict=True)))
    cancels = winners.count("cancel")
    account = await slow.admin("GET", f"/accounts/{account_id}")
    assert account["credits_remaining"] == 100 - 8 * (4 - cancels) == account["ledger_sum"]
    audit = await ops.ok("GET", f"/audit?action=job.cancel&account={account_id}")
    assert len(audit["entries"]) == cancels
    assert await verify_all(slow.runtime) == []


async def test_rerun_of_a_failed_job_is_free_and_linked(
    slow: RunningGateway, ops: AdminClient, image_host: ImageHost
) -> None:
    account_id, key = await slow.account_with_key(credits=100)
    original = await submit(slow, key, image_host, seed=7)
    record = await job(slow, original)
    assert await fail_job(slow.runtime, record.id, code="generation_failed", message="no_image") is not None
    await until(slow, original, lambda row: row.status == "failed")

    created = await ops.ok("POST", f"/jobs/{record.id}/rerun", {"reason": "model hiccup"})
    assert created["rerun_of"] == record.id and created["cost_credits"] == 0
    assert created["status"] in ("queued", "running") and created["job_id"] != original
    status, body, _ = await ops.call("POST", f"/jobs/{original}/rerun", {"reason": "twice"})
    assert status == 409 and created["job_id"] in body["detail"]

    rerun = await until(slow, created["job_id"], lambda row: row.status in ("succeeded", "failed"))
    assert rerun.status == "succeeded" and rerun.seed == 7 and rerun.params == record.params
    prefix = f"accounts/{account_id}/jobs/{rerun.public_id}/"
    assert [image.key.startswith(prefix) for image in rerun.inputs] == [True, True]
    assert [image.role for image in rerun.inputs] == [image.role for image in record.inputs]
    detail = await ops.ok("GET", f"/jobs/{rerun.public_id}")
    assert detail["original"] == {"job_id": original, "order_id": record.id, "status": "failed"}
    assert detail["ledger"] == [] and detail["credits_refunded"] == 0
    await load_image(slow, detail["results"][0]["url"])
    before = await ops.ok("GET", f"/jobs/{original}")
    assert before["reruns"] == [{"job_id": rerun.public_id, "order_id": rerun.id, "status": "succeeded"}]
    _, polled, _ = await slow.request("GET", f"/api/v1/tryon/{rerun.public_id}", key=key)
    assert polled["status"] == "succeeded" and polled["cost_credits"] == 0

    status, body, _ = await ops.call("POST", f"/jobs/{original}/rerun", {"reason": "thrice"})
    assert status == 409 and "already has a re-run" in body["detail"]
    status, body, _ = await ops.call("POST", f"/jobs/{rerun.public_id}/refund", {"reason": "free job"})
    assert status == 409 and "cost no credits" in body["detail"]
    account = await slow.admin("GET", f"/accounts/{account_id}")
    assert account["credits_remaining"] == 100 == account["ledger_sum"]  # refunded failure, free re-run
    audit = await ops.ok("GET", f"/audit?target=job:{original}")
    assert [(entry["action"], entry["reason"]) for entry in audit["entries"]] == [
        ("job.rerun", "model hiccup")
    ]
    assert audit["entries"][0]["change"]["after"]["rerun"] == rerun.public_id
    assert await verify_all(slow.runtime) == []


async def test_cli_reruns_shows_and_refuses(
    slow: RunningGateway, ops: AdminClient, image_host: ImageHost
) -> None:
    """The CLI's job commands (a CLI process starts slower than a job runs, so the cancel it
    tries is the refused one; the HTTP tests cancel for real through the same function)."""
    account_id, key = await slow.account_with_key(credits=100)
    public_id = await submit(slow, key, image_host)
    record = await job(slow, public_id)
    assert await fail_job(slow.runtime, record.id, code="generation_failed", message="no_image") is not None
    run = await asyncio.to_thread(
        cli, slow, "--operator", "alice", "jobs", "cancel", str(record.id), "--reason", "from a shell"
    )
    assert run.returncode == 1 and run.stdout == ""
    assert run.stderr.strip() == (
        f"tryon-gateway admin: Job {public_id} already failed; only a queued or running job is cancelled"
    )

    run = await asyncio.to_thread(
        cli, slow, "--json", "--operator", "alice", "jobs", "rerun", public_id, "--reason", "try again"
    )
    assert run.returncode == 0, run.stderr
    rerun = json.loads(run.stdout)
    assert rerun["rerun_of"] == record.id and rerun["cost_credits"] == 0
    await until(slow, rerun["job_id"], lambda row: row.status in ("succeeded", "failed"))

    run = await asyncio.to_thread(cli, slow, "jobs", "show", rerun["job_id"])
    assert run.returncode == 0, run.stderr
    assert rerun["job_id"] in run.stdout and "succeeded" in run.stdout and "quality_gate" in run.stdout
    run = await asyncio.to_thread(cli, slow, "jobs", "list", "--account", str(account_id))
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].split()[:3] == ["JOB_ID", "ORDER", "ACCOUNT"]
    assert [line.split()[0] for line in lines[1:]] == [rerun["job_id"], public_id]

    run = await asyncio.to_thread(cli, slow, "jobs", "refund", public_id, "--reason", "twice?")
    assert run.returncode == 1 and run.stdout == ""
    assert run.stderr.strip() == f"tryon-gateway admin: Job {public_id} was already refunded (8 credits)"

    audit = await ops.ok("GET", f"/audit?target=job:{public_id}")
    assert [(entry["action"], entry["operator"]) for entry in audit["entries"]] == [("job.rerun", "alice")]
    assert all(entry["request_id"].startswith("cli-") for entry in audit["entries"])
    account = await slow.admin("GET", f"/accounts/{account_id}")
    assert account["credits_remaining"] == 100 == account["ledger_sum"]
    assert await verify_all(slow.runtime) == []

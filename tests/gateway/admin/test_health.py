"""``GET /admin/health`` and the scheduled ledger check: a violation is loud there, while
``/readyz`` stays green so the API keeps serving."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from engine import health
from tests.gateway.admin.conftest import AdminClient, cli
from tests.support.gateway import RunningGateway


async def until(gateway: RunningGateway, admin: AdminClient, predicate: Any, timeout: float = 60) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        body = await admin.ok("GET", "/health")
        if predicate(body):
            return body
        assert asyncio.get_running_loop().time() < deadline, body
        await asyncio.sleep(0.2)


async def test_health_reports_services_queue_and_retention(
    gateway: RunningGateway, operators: dict[str, AdminClient]
) -> None:
    body = await until(gateway, operators["viewer"], lambda body: body["ledger"]["status"] != "unchecked")
    assert body["services"] == {"database": "ok", "redis": "ok", "storage": "ok"}
    assert body["ledger"]["interval_seconds"] == 86_400
    assert set(body["queue"]) == {"queued", "running", "oldest_queued_at", "oldest_queued_seconds"}
    assert body["retention"]["days"] == 7
    assert body["retention"]["last_run"]["error"] is None


async def test_a_broken_balance_is_reported_loudly_while_readyz_stays_green(gateway_factory: Any) -> None:
    checked: RunningGateway = await gateway_factory(ledger_verify_interval_seconds=0.3)
    root = AdminClient(checked, checked.settings.admin_token)
    account_id = await checked.new_account(credits=10)
    body = await until(checked, root, lambda body: body["ledger"]["status"] == "ok")
    assert body["status"] == "ok"

    await checked.runtime.db.fetch("UPDATE accounts SET balance = balance + 1 WHERE id = $1", account_id)

    body = await until(checked, root, lambda body: body["ledger"]["status"] == "violation")
    assert body["status"] == "degraded"
    assert body["ledger"]["problems"] == [f"account {account_id}: balance 11 != sum of entries 10"]
    assert body["ledger"]["problem_count"] == 1 and body["ledger"]["checked_at"]
    rows = await checked.runtime.db.fetch("SELECT ok, problems FROM ledger_checks ORDER BY id DESC LIMIT 1")
    assert rows[0]["ok"] is False
    status, ready, _ = await checked.request("GET", "/readyz")
    assert status == 200 and ready["status"] == "ready"

    run = await asyncio.to_thread(cli, checked, "health")
    assert run.returncode == 0, run.stderr
    lines = dict(line.split(None, 1) for line in run.stdout.splitlines() if line.strip())
    assert lines["status"] == "degraded" and lines["ledger"] == "violation", run.stdout
    assert json.loads(lines["ledger_problems"]) == [f"account {account_id}: balance 11 != sum of entries 10"]


async def test_the_scheduled_check_runs_once_per_interval_across_workers(gateway_factory: Any) -> None:
    daily: RunningGateway = await gateway_factory()
    root = AdminClient(daily, daily.settings.admin_token)
    await until(daily, root, lambda body: body["ledger"]["status"] == "ok")
    # Three workers' sweeps at once, twice: the one recorded check holds for the whole interval.
    for _ in range(2):
        results = await asyncio.gather(*(health.check_ledger_if_due(daily.runtime) for _ in range(3)))
        assert results == [None, None, None]
    rows = await daily.runtime.db.fetch("SELECT count(*) AS n FROM ledger_checks")
    assert rows[0]["n"] == 1
    # When it is due again, exactly one of the concurrent callers (or the sweeper) runs it.
    await daily.runtime.db.fetch("UPDATE ledger_checks SET checked_at = checked_at - interval '2 days'")
    results = await asyncio.gather(*(health.check_ledger_if_due(daily.runtime) for _ in range(3)))
    assert sum(result is not None for result in results) <= 1
    rows = await daily.runtime.db.fetch("SELECT count(*) AS n FROM ledger_checks")
    assert rows[0]["n"] == 2

"""Usage over real HTTP after real jobs in both dialects, cross-checked against jobs and the ledger."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from tests.dialects.ftmvai.test_orders import poll, tryon_body
from tests.gateway.admin.conftest import AdminClient
from tests.support.gateway import RunningGateway
from tests.support.image_host import ImageHost

COUNTERS = (
    "jobs_submitted",
    "jobs_succeeded",
    "jobs_failed",
    "credits_debited",
    "credits_refunded",
    "credits_granted",
    "credits_purchased",
    "credits_adjusted",
    "credits_reversed",
)


def fitinview_job(image_host: ImageHost, person: str = "/person.png") -> dict[str, Any]:
    return {
        "person_url": image_host.url(person),
        "garment_urls": [image_host.url("/shirt.png")],
        "output_size": "1K",
        "wait": False,
    }


async def submit(gateway: RunningGateway, key: str, body: dict[str, Any]) -> str:
    status, answer, _ = await gateway.request("POST", "/api/v1/tryon", key=key, json=body)
    assert status == 200, answer
    return str(answer["job_id"])


async def expected(gateway: RunningGateway, account_id: int, group: str) -> dict[Any, dict[str, Any]]:
    """What usage must say, computed the slow way: straight from ``jobs`` and ``ledger_entries``."""
    key_sql = {"account": "j.account", "dialect": "j.dialect", "backend": "j.backend"}[group]
    jobs = await gateway.runtime.db.fetch(
        f"""SELECT {key_sql} AS key, count(*) AS jobs_submitted,
                   count(*) FILTER (WHERE status = 'succeeded') AS jobs_succeeded,
                   count(*) FILTER (WHERE status = 'failed') AS jobs_failed,
                   COALESCE(SUM(EXTRACT(EPOCH FROM completed_at - started_at)), 0) AS generation_seconds
            FROM jobs j WHERE j.account = $1 GROUP BY 1""",
        account_id,
    )
    entry_key = {"account": "e.account", "dialect": "a.dialect", "backend": "COALESCE(j.backend, '')"}[group]
    if group == "dialect":
        entry_key = "COALESCE(j.dialect, a.dialect)"
    money = await gateway.runtime.db.fetch(
        f"""SELECT {entry_key} AS key,
                   COALESCE(-SUM(e.amount) FILTER (WHERE e.kind = 'debit'), 0) AS credits_debited,
                   COALESCE(SUM(e.amount) FILTER (WHERE e.kind = 'refund'), 0) AS credits_refunded,
                   COALESCE(SUM(e.amount) FILTER (WHERE e.kind = 'grant'), 0) AS credits_granted,
                   COALESCE(SUM(e.amount) FILTER (WHERE e.kind = 'purchase'), 0) AS credits_purchased,
                   COALESCE(SUM(e.amount) FILTER (WHERE e.kind = 'adjust'), 0) AS credits_adjusted,
                   COALESCE(-SUM(e.amount) FILTER (WHERE e.kind = 'reversal'), 0) AS credits_reversed
            FROM ledger_entries e JOIN accounts a ON a.id = e.account LEFT JOIN jobs j ON j.id = e.job_id
            WHERE e.account = $1 GROUP BY 1""",
        account_id,
    )
    rows: dict[Any, dict[str, Any]] = {}
    for record in [*jobs, *money]:
        key = None if record["key"] == "" else record["key"]
        row = rows.setdefault(key, dict.fromkeys(COUNTERS, 0) | {"generation_seconds": 0.0})
        for name, value in record.items():
            if name != "key":
                row[name] = float(value) if name == "generation_seconds" else int(value)
    return rows


def as_rows(report: dict[str, Any]) -> dict[Any, dict[str, Any]]:
    return {
        row["key"]: {name: row[name] for name in (*COUNTERS, "generation_seconds")} for row in report["rows"]
    }


def assert_same(actual: dict[Any, dict[str, Any]], wanted: dict[Any, dict[str, Any]]) -> None:
    assert set(actual) == set(wanted), (actual, wanted)
    for key, row in wanted.items():
        assert {name: actual[key][name] for name in COUNTERS} == {name: row[name] for name in COUNTERS}, key
        assert actual[key]["generation_seconds"] == pytest.approx(row["generation_seconds"], abs=0.01), key


@pytest.fixture(scope="module")
async def traffic(
    gateway: RunningGateway, operators: dict[str, AdminClient], image_host: ImageHost
) -> dict[str, Any]:
    """Two accounts with real jobs: FitInView live (1 ok, 1 failed and refunded) and test (1 ok),
    FtmvAI live (1 ok), plus a grant and a negative adjustment through the admin API."""
    fiv_account, fiv_live = await gateway.account_with_key(credits=100)
    fiv_test = (await gateway.new_key(fiv_account, "test", name="Sandbox"))["key"]
    ftm_account, ftm_live = await gateway.account_with_key(dialect="ftmvai", credits=10)
    fitinview = [
        await submit(gateway, fiv_live, fitinview_job(image_host)),
        await submit(gateway, fiv_live, fitinview_job(image_host, person="/trousers.png")),
    ]
    tested = await submit(gateway, str(fiv_test), fitinview_job(image_host))
    status, created, _ = await gateway.request("POST", "/api/v1/generate", key=ftm_live, json=tryon_body())
    assert status == 202, created
    ends = [await gateway.wait_for_status(job, fiv_live, {"succeeded", "failed"}, 60) for job in fitinview]
    ends.append(await gateway.wait_for_status(tested, str(fiv_test), {"succeeded", "failed"}, 60))
    order = await poll(gateway, ftm_live, created["order_id"])
    assert [end["status"] for end in ends] == ["succeeded", "failed", "succeeded"], ends
    assert ends[1]["credits_refunded"] == ends[1]["cost_credits"] > 0, "the failure is refunded"
    assert order["status"] == "completed"
    support = operators["support"]
    await support.ok("POST", f"/accounts/{fiv_account}/credits", {"amount": -5, "reason": "correction"})
    await support.ok("POST", f"/accounts/{ftm_account}/credits", {"amount": 3, "reason": "goodwill"})
    await asyncio.sleep(0)  # every write above was committed before its answer
    return {"fitinview": fiv_account, "ftmvai": ftm_account}


def window() -> str:
    today = datetime.now(UTC).date()
    return f"from={today - timedelta(days=1)}&to={today + timedelta(days=1)}"


async def test_usage_by_backend_and_dialect_equals_jobs_and_ledger(
    gateway: RunningGateway, operators: dict[str, AdminClient], traffic: dict[str, Any]
) -> None:
    viewer = operators["viewer"]
    fiv, ftm = traffic["fitinview"], traffic["ftmvai"]
    by_backend = await viewer.ok("GET", f"/usage?account={fiv}&group=backend&{window()}")
    assert by_backend["group"] == "backend" and by_backend["account_id"] == fiv
    rows = as_rows(by_backend)
    assert_same(rows, await expected(gateway, fiv, "backend"))
    assert set(rows) == {"local", "stock", None}, "live keys ran locally, the test key on stock"
    assert (
        rows["local"]["jobs_submitted"],
        rows["local"]["jobs_succeeded"],
        rows["local"]["jobs_failed"],
    ) == (
        2,
        1,
        1,
    )
    assert rows["local"]["credits_refunded"] > 0 and rows["local"]["credits_debited"] > 0
    assert rows[None]["credits_granted"] == 100 and rows[None]["credits_adjusted"] == -5
    assert rows[None]["jobs_submitted"] == 0
    totals = by_backend["totals"]
    balance = (await viewer.ok("GET", f"/accounts/{fiv}"))["credits_remaining"]
    assert (
        totals["credits_granted"]
        + totals["credits_purchased"]
        + totals["credits_adjusted"]
        + totals["credits_refunded"]
        - totals["credits_debited"]
        - totals["credits_reversed"]
    ) == balance

    by_dialect = await viewer.ok("GET", f"/usage?account={ftm}&group=dialect&{window()}")
    assert_same(as_rows(by_dialect), await expected(gateway, ftm, "dialect"))
    assert list(as_rows(by_dialect)) == ["ftmvai"]
    assert as_rows(by_dialect)["ftmvai"]["credits_granted"] == 10


async def test_usage_by_account_and_by_day(
    gateway: RunningGateway, operators: dict[str, AdminClient], traffic: dict[str, Any]
) -> None:
    viewer = operators["viewer"]
    fiv, ftm = traffic["fitinview"], traffic["ftmvai"]
    everyone = as_rows(await viewer.ok("GET", f"/usage?group=account&{window()}"))
    for account_id in (fiv, ftm):
        assert_same({account_id: everyone[account_id]}, await expected(gateway, account_id, "account"))

    by_day = await viewer.ok("GET", f"/usage?account={fiv}&{window()}")
    assert by_day["group"] == "day"
    today = datetime.now(UTC).date()
    assert {date.fromisoformat(row["key"]) for row in by_day["rows"]} <= {today - timedelta(days=1), today}
    summed = {name: sum(row[name] for row in by_day["rows"]) for name in COUNTERS}
    assert summed == {name: by_day["totals"][name] for name in COUNTERS}
    assert summed == {name: everyone[fiv][name] for name in COUNTERS}

    default = await viewer.ok("GET", f"/usage?account={fiv}")
    assert (default["first_day"], default["last_day"]) == (str(today - timedelta(days=29)), str(today))
    assert default["totals"]["jobs_submitted"] == 3
    past = await viewer.ok("GET", f"/usage?account={fiv}&from=2020-01-01&to=2020-01-31")
    assert past["rows"] == [] and past["totals"]["jobs_submitted"] == 0


async def test_usage_reads_only_the_rollup(gateway: RunningGateway, traffic: dict[str, Any]) -> None:
    """The rollup, not the jobs table, is the source: a row written straight into it shows up."""
    far = date(2001, 2, 3)
    await gateway.runtime.db.fetch(
        "INSERT INTO usage_daily (day, account, dialect, backend, jobs_submitted)"
        " VALUES ($1, $2, 'fitinview', 'x', 7)",
        far,
        traffic["fitinview"],
    )
    status, body, _ = await gateway.request(
        "GET",
        f"/admin/usage?account={traffic['fitinview']}&from={far}&to={far}&group=backend",
        headers={"Authorization": f"Bearer {gateway.settings.admin_token}"},
    )
    assert status == 200 and [(row["key"], row["jobs_submitted"]) for row in body["rows"]] == [("x", 7)]

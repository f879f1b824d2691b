"""Money over real HTTP: an account's statement (pages and CSV), adjustments, purchases, bad filters."""

from __future__ import annotations

import csv
import io
import itertools
from collections.abc import AsyncIterator
from typing import Any

import pytest

from ledger.statements import statement_csv
from tests.engine.test_payments import API_KEY, SECRET, as_succeeded, buy, deliver, processed, token
from tests.gateway.admin.conftest import AdminClient
from tests.support.fake_stripe import FakeStripe, event, intent_id, refunded_charge, serve_fake_stripe
from tests.support.gateway import RunningGateway

STARTER = 1200


async def adjust(client: AdminClient, account_id: int, amount: int, reason: str) -> tuple[int, Any]:
    status, body, _ = await client.call(
        "POST", f"/accounts/{account_id}/credits", {"amount": amount, "reason": reason}
    )
    return status, body


async def all_pages(client: AdminClient, path: str, limit: int) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    cursor = None
    separator = "&" if "?" in path else "?"
    while True:
        query = f"{separator}limit={limit}" + (f"&cursor={cursor}" if cursor else "")
        page = await client.ok("GET", path + query)
        assert len(page["entries"]) <= limit
        entries.extend(page["entries"])
        cursor = page["next_cursor"]
        if cursor is None:
            return entries


async def test_ledger_pages_show_the_balance_after_each_entry(
    gateway: RunningGateway, operators: dict[str, AdminClient]
) -> None:
    account_id = await gateway.new_account(credits=100)
    for amount, reason in ((5, "goodwill"), (-30, "double grant"), (7, "bonus"), (-2, "fix")):
        assert (await adjust(operators["support"], account_id, amount, reason))[0] == 200

    viewer = operators["viewer"]
    first = await viewer.ok("GET", f"/accounts/{account_id}/ledger?limit=2")
    assert first["account_id"] == account_id
    assert [entry["reason"] for entry in first["entries"]] == ["fix", "bonus"]
    assert first["next_cursor"] == str(first["entries"][-1]["id"])

    entries = await all_pages(viewer, f"/accounts/{account_id}/ledger", limit=2)
    assert [(entry["kind"], entry["amount"]) for entry in entries] == [
        ("adjust", -2),
        ("adjust", 7),
        ("adjust", -30),
        ("adjust", 5),
        ("grant", 100),
    ]
    assert [entry["balance_after"] for entry in entries] == [80, 82, 75, 105, 100]
    for newer, older in itertools.pairwise(entries):
        assert newer["id"] > older["id"]
        assert newer["balance_after"] == older["balance_after"] + newer["amount"]
    assert (
        entries[0]["balance_after"]
        == (await viewer.ok("GET", f"/accounts/{account_id}"))["credits_remaining"]
    )
    rows = await gateway.runtime.db.fetch(
        "SELECT id, amount, balance_after FROM ledger_entries WHERE account = $1 ORDER BY id DESC", account_id
    )
    assert [(e["id"], e["amount"], e["balance_after"]) for e in entries] == [
        (r["id"], r["amount"], r["balance_after"]) for r in rows
    ]

    grants = await viewer.ok("GET", f"/accounts/{account_id}/ledger?kind=grant")
    assert [entry["amount"] for entry in grants["entries"]] == [100] and grants["next_cursor"] is None
    status, body, _ = await viewer.call("GET", "/accounts/999999999/ledger")
    assert (status, body) == (404, {"detail": "Account not found"})


async def test_the_csv_is_streamed_parseable_and_the_same_rows_as_the_pages(
    gateway: RunningGateway, operators: dict[str, AdminClient]
) -> None:
    account_id = await gateway.new_account(credits=50)
    await adjust(operators["support"], account_id, -10, '=HYPERLINK("http://x","click"), with "quotes"')
    await adjust(operators["support"], account_id, 3, "line one\nline two")
    viewer = operators["viewer"]
    pages = await all_pages(viewer, f"/accounts/{account_id}/ledger", limit=1)

    status, raw, headers = await viewer.call("GET", f"/accounts/{account_id}/ledger.csv")
    assert status == 200
    assert headers["Content-Type"].startswith("text/csv")
    assert headers["Content-Disposition"] == f'attachment; filename="account-{account_id}-ledger.csv"'
    assert "Content-Length" not in headers  # streamed, not buffered
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    assert list(rows[0]) == [
        "id",
        "created_at",
        "kind",
        "amount",
        "balance_after",
        "job_id",
        "reason",
        "reference",
    ]
    assert [
        {key: row[key] for key in ("id", "created_at", "kind", "amount", "balance_after", "reason")}
        for row in rows
    ] == [
        {
            "id": str(entry["id"]),
            "created_at": entry["created_at"],
            "kind": entry["kind"],
            "amount": str(entry["amount"]),
            "balance_after": str(entry["balance_after"]),
            "reason": entry["reason"] if not entry["reason"].startswith("=") else "'" + entry["reason"],
        }
        for entry in pages
    ]
    assert rows[1]["reason"].startswith("'=HYPERLINK"), "a formula never reaches a spreadsheet as one"
    assert rows[0]["reason"] == "line one\nline two"

    status, raw, _ = await viewer.call("GET", f"/accounts/{account_id}/ledger.csv?kind=grant")
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    assert [row["amount"] for row in csv.DictReader(io.StringIO(text, newline=""))] == ["50"]
    status, body, _ = await viewer.call("GET", "/accounts/999999999/ledger.csv")
    assert (status, body) == (404, {"detail": "Account not found"})


async def test_the_csv_export_reads_page_by_page(gateway: RunningGateway) -> None:
    account_id = await gateway.new_account(credits=1)
    for amount in range(2, 9):
        async with gateway.runtime.db.transaction():
            await gateway.runtime.ledger.grant(account_id, amount, reason=f"grant {amount}")
    chunks: list[str] = []
    lines: AsyncIterator[str] = await statement_csv(gateway.runtime.ledger, account_id, page_size=3)
    async for chunk in lines:
        chunks.append(chunk)
    assert len(chunks) == 1 + 3, "a header, then one chunk per page of 3 (8 entries)"
    rows = list(csv.reader(io.StringIO("".join(chunks), newline="")))
    assert [row[3] for row in rows[1:]] == ["8", "7", "6", "5", "4", "3", "2", "1"]


async def test_adjustments_never_go_below_zero_and_each_is_audited(
    gateway: RunningGateway, operators: dict[str, AdminClient]
) -> None:
    account_id = await gateway.new_account(credits=20)
    support = operators["support"]
    status, body = await adjust(support, account_id, -21, "too much")
    assert (status, body) == (409, {"detail": "balance 20 does not cover 21"})
    assert (await adjust(support, account_id, -20, "charged back by hand")) == (200, {"credits_remaining": 0})
    status, body = await adjust(support, account_id, -1, "below zero")
    assert status == 409 and "does not cover" in body["detail"]
    assert (await adjust(support, account_id, 4, "goodwill")) == (200, {"credits_remaining": 4})
    status, body = await adjust(support, account_id, -1, "")
    assert status == 400 and "reason" in body["detail"]
    status, body, _ = await support.call("POST", f"/accounts/{account_id}/credits", {"amount": -1})
    assert status == 400 and "reason" in body["detail"]

    audit = await operators["viewer"].ok("GET", f"/audit?account={account_id}")
    moves = [
        (e["action"], e["reason"], e["change"]) for e in audit["entries"] if e["action"].startswith("credits")
    ]
    assert moves == [
        ("credits.grant", "goodwill", {"before": {"balance": 0}, "after": {"balance": 4, "amount": 4}}),
        (
            "credits.adjust",
            "charged back by hand",
            {"before": {"balance": 20}, "after": {"balance": 0, "amount": -20}},
        ),
    ], "refused adjustments change nothing and leave no entry"
    assert all(e["operator"] == "ops-support" for e in audit["entries"] if e["action"].startswith("credits"))
    entries = await operators["viewer"].ok("GET", f"/accounts/{account_id}/ledger")
    assert [(e["amount"], e["balance_after"]) for e in entries["entries"]] == [(4, 4), (-20, 0), (20, 20)]
    assert await gateway.runtime.ledger.verify() == []


# purchases ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def fake() -> AsyncIterator[FakeStripe]:
    async with serve_fake_stripe(API_KEY) as server:
        yield server


@pytest.fixture(scope="module")
async def pay(gateway_factory: Any, fake: FakeStripe) -> RunningGateway:
    gateway: RunningGateway = await gateway_factory(
        stripe_api_key=API_KEY, stripe_webhook_secret=SECRET, stripe_base_url=fake.base_url
    )
    return gateway


async def test_payments_list_purchases_with_their_reversals(pay: RunningGateway, fake: FakeStripe) -> None:
    root = AdminClient(pay, pay.settings.admin_token)
    viewer = AdminClient(
        pay, (await root.ok("POST", "/operators", {"name": "pv", "role": "viewer"}))["token"]
    )
    account_id, key = await pay.account_with_key(credits=0)
    other_account, other_key = await pay.account_with_key(credits=0)
    paid, refunded, declined = token("ok"), token("ok"), token("declined")
    assert (await buy(pay, key, paid))[0] == 200
    assert (await buy(pay, key, refunded))[0] == 200
    assert (await buy(pay, key, declined))[0] == 402
    assert (await buy(pay, other_key, token("action")))[0] == 200
    refund = event("charge.refunded", refunded_charge(as_succeeded(fake, refunded), amount_refunded=600))
    assert (await deliver(pay, refund))[0] == 200
    await processed(pay, refund["id"])

    listed = await viewer.ok("GET", f"/payments?account={account_id}")
    by_intent = {item["payment_intent_id"]: item for item in listed["payments"]}
    assert [item["account_id"] for item in listed["payments"]] == [account_id] * 3
    assert listed["payments"][0]["id"] > listed["payments"][1]["id"] > listed["payments"][2]["id"]
    assert by_intent[intent_id(paid)] | {"id": 0, "created_at": "", "updated_at": ""} == {
        "id": 0,
        "account_id": account_id,
        "key_id": by_intent[intent_id(paid)]["key_id"],
        "pack_slug": "starter",
        "payment_intent_id": intent_id(paid),
        "status": "succeeded",
        "credits": STARTER,
        "credits_granted": STARTER,
        "credits_reversed": 0,
        "reversals": 0,
        "created_at": "",
        "updated_at": "",
    }
    assert (
        by_intent[intent_id(refunded)]["credits_reversed"],
        by_intent[intent_id(refunded)]["reversals"],
    ) == (
        STARTER // 2,
        1,
    )
    declined_rows = [item for item in listed["payments"] if item["status"] == "declined"]
    assert [(item["credits_granted"], item["payment_intent_id"]) for item in declined_rows] == [(0, None)]

    only_declined = await viewer.ok("GET", f"/payments?account={account_id}&status=declined")
    assert [item["id"] for item in only_declined["payments"]] == [declined_rows[0]["id"]]
    first = await viewer.ok("GET", f"/payments?account={account_id}&limit=2")
    second = await viewer.ok("GET", f"/payments?account={account_id}&limit=2&cursor={first['next_cursor']}")
    assert [i["id"] for i in first["payments"] + second["payments"]] == [i["id"] for i in listed["payments"]]
    assert second["next_cursor"] is None
    others = await viewer.ok("GET", f"/payments?account={other_account}&status=requires_action")
    assert [item["status"] for item in others["payments"]] == ["requires_action"]
    statement = await viewer.ok("GET", f"/accounts/{account_id}/ledger")
    assert [(e["kind"], e["amount"], e["balance_after"]) for e in statement["entries"]] == [
        ("reversal", -600, 1800),
        ("purchase", STARTER, 2400),
        ("purchase", STARTER, STARTER),
    ]


# bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/accounts/1/ledger?kind=bonus", "kind"),
        ("/accounts/1/ledger?cursor=%00%C2%A7", "cursor"),
        ("/accounts/1/ledger?limit=-1", "limit"),
        ("/accounts/1/ledger?limit=201", "limit"),
        ("/accounts/0/ledger", "account_id"),
        ("/accounts/x/ledger.csv", "account_id"),
        ("/accounts/1/ledger.csv?kind=%00", "kind"),
        ("/usage?group=week", "group"),
        ("/usage?from=yesterday", "from"),
        ("/usage?to=2026-02-30", "to"),
        ("/usage?from=2026-03-01&to=2026-02-01", "from"),
        ("/usage?from=2020-01-01&to=2026-01-01", "to"),
        ("/usage?account=-3", "account"),
        ("/payments?status=paid", "status"),
        ("/payments?account=abc", "account"),
        ("/payments?cursor=1e3", "cursor"),
        ("/webhooks?status=lost", "status"),
        ("/webhooks?account=99999999999999999999", "account"),
        ("/webhooks?limit=0", "limit"),
    ],
)
async def test_bad_filters_are_400_naming_the_field(
    operators: dict[str, AdminClient], path: str, field: str
) -> None:
    status, body, _ = await operators["viewer"].call("GET", path)
    assert status == 400 and field in body["detail"], (path, status, body)

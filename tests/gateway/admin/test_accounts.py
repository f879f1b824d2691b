"""Accounts for operators: search, detail, PATCH with its audit, and suspension in both dialects."""

from __future__ import annotations

import asyncio
import json
import re
import secrets
from typing import Any

from tests.gateway.admin.conftest import AdminClient, cli
from tests.support.gateway import RunningGateway, fixture_b64


async def _named_account(
    admin: AdminClient, name: str, *, dialect: str = "fitinview", plan: str = "paid", credits: int = 10
) -> int:
    body = {"name": name, "dialect": dialect, "plan": plan, "credits": credits}
    return int((await admin.ok("POST", "/accounts", body))["id"])


async def _ids(viewer: AdminClient, query: str) -> list[int]:
    page = await viewer.ok("GET", f"/accounts?{query}")
    return [item["id"] for item in page["accounts"]]


async def test_search_by_id_name_email_and_key_prefix(
    gateway: RunningGateway, operators: dict[str, AdminClient]
) -> None:
    admin, viewer = operators["admin"], operators["viewer"]
    tag = "Zq" + secrets.token_hex(4)
    first = await _named_account(admin, f"{tag} Apparel")
    second = await _named_account(admin, f"{tag} Boutique", dialect="ftmvai", plan="free")
    third = await _named_account(admin, "Unrelated " + tag)
    await admin.ok("PATCH", f"/accounts/{third}", {"email": f"ops.{tag.lower()}@example.com"})
    key = await gateway.new_key(second, "live")

    assert await _ids(viewer, f"q={tag.upper()}") == [second, first]  # name prefix, any case
    assert await _ids(viewer, f"q={tag}%20b") == [second]
    assert await _ids(viewer, f"q=OPS.{tag}%40") == [third]  # email prefix
    assert second in await _ids(viewer, f"q={second}&limit=200")  # the id itself
    assert await _ids(viewer, f"q={key['key'][:10]}") == [second]  # key prefix
    assert await _ids(viewer, f"q={key['key']}") == [second]  # a whole pasted key
    assert await _ids(viewer, f"q={tag}&dialect=ftmvai") == [second]
    assert await _ids(viewer, f"q={tag}&plan=paid") == [first]

    page = await viewer.ok("GET", f"/accounts?q={tag}&limit=1")
    assert [item["id"] for item in page["accounts"]] == [second] and page["next_cursor"] == str(second)
    page = await viewer.ok("GET", f"/accounts?q={tag}&limit=1&cursor={page['next_cursor']}")
    assert [item["id"] for item in page["accounts"]] == [first] and page["next_cursor"] is None
    item = page["accounts"][0]
    assert set(item) == {
        "id",
        "name",
        "dialect",
        "plan",
        "email",
        "credits_remaining",
        "suspended",
        "erased_at",
        "created_at",
    }
    assert await _ids(viewer, "q=" + secrets.token_hex(8)) == []
    for query in ("dialect=klingon", "plan=gold", "limit=0", "limit=-3", "cursor=%00x", "q=%00"):
        status, body, _ = await viewer.call("GET", f"/accounts?{query}")
        assert status == 400 and query.split("=")[0] in body["detail"], (query, status, body)


async def test_search_by_exact_id(operators: dict[str, AdminClient]) -> None:
    account = await _named_account(operators["admin"], "Exact " + secrets.token_hex(3))
    assert account in await _ids(operators["viewer"], f"q={account}&limit=200")
    page = await operators["viewer"].ok("GET", f"/accounts?q={account}&limit=200")
    assert next(item for item in page["accounts"] if item["id"] == account)["name"].startswith("Exact ")


async def test_detail_shows_balance_keys_and_usage_from_the_rollup(
    gateway: RunningGateway, operators: dict[str, AdminClient]
) -> None:
    account_id, key = await gateway.account_with_key(credits=40)
    status, job, _ = await gateway.request(
        "POST",
        "/api/v1/tryon",
        key=key,
        json={
            "person_image_b64": fixture_b64("person-astronaut.png"),
            "garment_images_b64": [fixture_b64("garment-shirt-red-stripes.png")],
            "output_size": "1K",
        },
    )
    assert status == 200 and job["status"] == "succeeded", job
    detail = await operators["viewer"].ok("GET", f"/accounts/{account_id}")
    assert detail["credits_remaining"] == detail["ledger_sum"] == 32
    assert detail["suspended"] is False and detail["erased_at"] is None and detail["prices"] == {}
    assert [k["mode"] for k in detail["keys"]] == ["live"]
    assert "key" not in detail["keys"][0] and key not in json.dumps(detail)
    usage = detail["usage"]
    assert usage["jobs_submitted"] == 1 and usage["jobs_succeeded"] == 1 and usage["credits_debited"] == 8
    assert sum(day["credits_granted"] for day in usage["days"]) == 40
    status, body, _ = await operators["viewer"].call("GET", "/accounts/987654321")
    assert status == 404 and body == {"detail": "Account not found"}


async def test_patch_changes_fields_each_audited_before_and_after(
    gateway: RunningGateway, operators: dict[str, AdminClient]
) -> None:
    admin = operators["admin"]
    account = await _named_account(admin, "Patchable", dialect="ftmvai", plan="free")
    changed = await admin.ok(
        "PATCH",
        f"/accounts/{account}",
        {
            "name": "Patched Ltd",
            "email": "billing@patched.example",
            "plan": "paid",
            "prices": {"ftmvai.tryon.standard": 3},
        },
    )
    assert (changed["name"], changed["email"], changed["plan"]) == (
        "Patched Ltd",
        "billing@patched.example",
        "paid",
    )
    assert changed["prices"] == {"ftmvai.tryon.standard": 3}
    entries = (await operators["viewer"].ok("GET", f"/audit?target=account:{account}"))["entries"]
    assert [entry["action"] for entry in entries] == ["account.update", "account.create"]
    assert entries[0]["operator"] == "ops-admin"
    assert entries[0]["change"] == {
        "before": {"name": "Patchable", "email": None, "plan": "free", "prices": {}},
        "after": {
            "name": "Patched Ltd",
            "email": "b***@patched.example",
            "plan": "paid",
            "prices": {"ftmvai.tryon.standard": 3},
        },
    }
    # the price applies to the account's next order
    key = (await gateway.new_key(account, "live"))["key"]
    status, _, _ = await gateway.request(
        "POST",
        "/api/v1/generate",
        key=key,
        json={
            "style": "virtual_tryon",
            "person_image": fixture_b64("person-astronaut.png"),
            "clothing_image": fixture_b64("garment-shirt-red-stripes.png"),
        },
    )
    assert status == 202
    assert (await admin.ok("GET", f"/accounts/{account}"))["credits_remaining"] == 7

    # nothing changed: no new entry; bad input: 400 naming the field; roles
    await admin.ok("PATCH", f"/accounts/{account}", {"name": "Patched Ltd"})
    assert len((await operators["viewer"].ok("GET", f"/audit?target=account:{account}"))["entries"]) == 2
    for body, field in [
        ({"prices": {"fitinview.tryon.1K": 3}}, "prices"),
        ({"prices": {"ftmvai.nope": 3}}, "prices"),
        ({"prices": {"ftmvai.tryon.standard": -1}}, "prices"),
        ({"email": "not-an-email"}, "email"),
        ({"name": "   "}, "name"),
        ({"plan": "gold"}, "plan"),
        ({"suspended": True}, "reason"),
        ({"color": "red"}, "color"),
    ]:
        status, answer, _ = await admin.call("PATCH", f"/accounts/{account}", body)
        assert status == 400 and field in answer["detail"], (body, status, answer)
    fitinview = await _named_account(admin, "No plans here")
    status, answer, _ = await admin.call("PATCH", f"/accounts/{fitinview}", {"plan": "free"})
    assert status == 400 and "plan" in answer["detail"]
    status, _, _ = await operators["support"].call("PATCH", f"/accounts/{account}", {"name": "x"})
    assert status == 403
    status, _, _ = await admin.call("PATCH", "/accounts/987654321", {"name": "x"})
    assert status == 404


async def _job_status(gateway: RunningGateway, order_id: int, wanted: set[str], timeout: float = 60) -> str:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        row = await gateway.runtime.db.fetchrow("SELECT status FROM jobs WHERE id = $1", order_id)
        assert row is not None
        if row["status"] in wanted:
            return str(row["status"])
        assert asyncio.get_running_loop().time() < deadline, row
        await asyncio.sleep(0.05)


async def test_a_suspended_account_is_403_in_both_dialects_and_its_queued_job_finishes(
    gateway_factory: Any,
) -> None:
    slow: RunningGateway = await gateway_factory(local_backend_delay_seconds=1.5)
    admin = AdminClient(slow, slow.settings.admin_token)
    ftmvai_account, ftmvai_key = await slow.account_with_key(dialect="ftmvai", credits=10)
    fitinview_account, fitinview_key = await slow.account_with_key(credits=10)
    status, created, _ = await slow.request(
        "POST",
        "/api/v1/generate",
        key=ftmvai_key,
        json={
            "style": "virtual_tryon",
            "person_image": fixture_b64("person-astronaut.png"),
            "clothing_image": fixture_b64("garment-shirt-red-stripes.png"),
        },
    )
    assert status == 202, created
    for account in (ftmvai_account, fitinview_account):
        body = await admin.ok(
            "PATCH", f"/accounts/{account}", {"suspended": True, "reason": "chargeback review"}
        )
        assert body["suspended"] is True and body["suspended_reason"] == "chargeback review"
    # its queued (or already running) order was accepted before: it still finishes
    assert await _job_status(slow, created["order_id"], {"succeeded", "failed"}) == "succeeded"

    status, body, _ = await slow.request("GET", f"/api/v1/orders/{created['order_id']}", key=ftmvai_key)
    assert status == 403
    assert body == {
        "success": False,
        "error": {"code": "KEY_DISABLED", "message": "Account suspended", "details": None},
    }
    status, body, _ = await slow.request("GET", "/api/v1/tryon", key=fitinview_key)
    assert (status, body) == (403, {"detail": "Account suspended"})
    status, body, _ = await slow.request("GET", "/api/v1/account", key=fitinview_key)
    assert (status, body) == (403, {"detail": "Account suspended"})

    status, body, _ = await admin.call("PATCH", f"/accounts/{ftmvai_account}", {"suspended": False})
    assert status == 400 and "reason" in body["detail"]
    await admin.ok("PATCH", f"/accounts/{ftmvai_account}", {"suspended": False, "reason": "review cleared"})
    status, body, _ = await slow.request("GET", f"/api/v1/orders/{created['order_id']}", key=ftmvai_key)
    assert status == 200 and body["order"]["status"] == "completed"
    entries = (await admin.ok("GET", f"/audit?target=account:{ftmvai_account}"))["entries"]
    assert [entry["action"] for entry in entries[:2]] == ["account.unsuspend", "account.suspend"]
    assert entries[1]["reason"] == "chargeback review" and entries[0]["reason"] == "review cleared"
    assert entries[1]["change"]["after"] == {"suspended": True, "suspended_reason": "chargeback review"}


async def test_cli_accounts_list_show_create_and_suspend(
    gateway: RunningGateway, operators: dict[str, AdminClient]
) -> None:
    tag = "Cli" + secrets.token_hex(4)
    run = await asyncio.to_thread(
        cli, gateway, "--json", "accounts", "create", f"{tag} Shop", "--dialect", "ftmvai", "--credits", "5"
    )
    assert run.returncode == 0, run.stderr
    account = json.loads(run.stdout)["id"]
    run = await asyncio.to_thread(cli, gateway, "accounts", "list", tag)
    assert run.returncode == 0, run.stderr
    header, row = run.stdout.splitlines()
    assert header.split()[:4] == ["ID", "NAME", "DIALECT", "PLAN"] and row.split()[0] == str(account)
    run = await asyncio.to_thread(cli, gateway, "--json", "accounts", "show", str(account))
    assert run.returncode == 0, run.stderr
    shown = json.loads(run.stdout)
    assert shown["credits_remaining"] == 5 == shown["ledger_sum"] and shown["usage"]["days"]

    run = await asyncio.to_thread(
        cli,
        gateway,
        "--operator",
        "ops-admin",
        "accounts",
        "suspend",
        str(account),
        "--reason",
        "fraud check",
    )
    assert run.returncode == 0, run.stderr
    assert re.search(r"^suspended_reason +fraud check$", run.stdout, re.MULTILINE), run.stdout
    assert (await operators["viewer"].ok("GET", f"/accounts/{account}"))["suspended"] is True
    run = await asyncio.to_thread(cli, gateway, "accounts", "unsuspend", str(account), "--reason", "cleared")
    assert run.returncode == 0, run.stderr
    entries = (await operators["viewer"].ok("GET", f"/audit?target=account:{account}"))["entries"]
    assert [(e["action"], e["operator"]) for e in entries] == [
        ("account.unsuspend", "root"),
        ("account.suspend", "ops-admin"),
        ("account.create", "root"),
    ]
    assert entries[0]["request_id"].startswith("cli-")

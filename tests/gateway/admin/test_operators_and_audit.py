"""Named operators, their roles, and the audit trail of every admin write."""

from __future__ import annotations

from tests.gateway.admin.conftest import AdminClient
from tests.support.gateway import RunningGateway


async def test_an_operator_token_is_shown_once_and_stored_hashed(
    gateway: RunningGateway, operators: dict[str, AdminClient]
) -> None:
    created = await operators["admin"].ok("POST", "/operators", {"name": "carol", "role": "viewer"})
    assert created["token"].startswith("adm_") and created["role"] == "viewer"
    listed = await operators["admin"].ok("GET", "/operators")
    carol = next(item for item in listed["operators"] if item["name"] == "carol")
    assert "token" not in carol and carol["token_hint"] == created["token"][:10] + "…"
    rows = await gateway.runtime.db.fetch("SELECT token_hash FROM operators WHERE name = 'carol'")
    assert rows[0]["token_hash"] != created["token"] and len(rows[0]["token_hash"]) == 64
    assert any(item["name"] == "root" and item["role"] == "admin" for item in listed["operators"])


async def test_roles_are_ordered_and_unknown_tokens_are_401(
    gateway: RunningGateway, operators: dict[str, AdminClient]
) -> None:
    account_id = await gateway.new_account(credits=10)
    grant = {"amount": 5, "reason": "goodwill"}
    status, body, _ = await operators["viewer"].call("POST", f"/accounts/{account_id}/credits", grant)
    assert status == 403 and "support" in body["detail"]
    assert (await operators["support"].ok("POST", f"/accounts/{account_id}/credits", grant)) == {
        "credits_remaining": 15
    }
    status, body, _ = await operators["support"].call("POST", "/operators", {"name": "x", "role": "admin"})
    assert status == 403
    for token in (None, "adm_nope", "fiv_live_" + "a" * 40, "x" * 500):
        status, body, _ = await AdminClient(gateway, token).call("GET", "/operators")
        assert (status, body) == (401, {"detail": "Missing or invalid admin token"})


async def test_a_disabled_operator_is_refused_and_the_change_is_audited(
    gateway: RunningGateway, operators: dict[str, AdminClient]
) -> None:
    created = await operators["admin"].ok("POST", "/operators", {"name": "dave", "role": "support"})
    dave = AdminClient(gateway, created["token"])
    assert (await dave.call("GET", "/audit"))[0] == 200
    status, body, _ = await operators["admin"].call("POST", "/operators/dave/disable", {})
    assert status == 400 and "reason" in body["detail"]
    await operators["admin"].ok("POST", "/operators/dave/disable", {"reason": "left the team"})
    assert (await dave.call("GET", "/audit"))[0] == 401
    page = await operators["viewer"].ok("GET", "/audit?target=operator:dave")
    actions = [entry["action"] for entry in page["entries"]]
    assert actions == ["operator.disable", "operator.create"]
    newest = page["entries"][0]
    assert newest["operator"] == "ops-admin" and newest["reason"] == "left the team"
    assert newest["change"] == {"before": {"disabled": False}, "after": {"disabled": True}}
    assert newest["request_id"]


async def test_audit_entries_cannot_be_changed(
    gateway: RunningGateway, operators: dict[str, AdminClient]
) -> None:
    account_id = await gateway.new_account(credits=1)
    await operators["support"].ok("POST", f"/accounts/{account_id}/credits", {"amount": 1, "reason": "test"})
    for statement in ("UPDATE audit_log SET reason = 'x'", "DELETE FROM audit_log"):
        try:
            await gateway.runtime.db.fetch(statement)
        except Exception as exc:
            assert "append-only" in str(exc)
        else:
            raise AssertionError(f"{statement} was allowed")


async def test_audit_filters_and_paging(gateway: RunningGateway, operators: dict[str, AdminClient]) -> None:
    account_id = await gateway.new_account(credits=0)
    for amount in (1, 2, 3):
        await operators["support"].ok(
            "POST", f"/accounts/{account_id}/credits", {"amount": amount, "reason": f"step {amount}"}
        )
    first = await operators["viewer"].ok("GET", f"/audit?account={account_id}&action=credits.grant&limit=2")
    assert [entry["reason"] for entry in first["entries"]] == ["step 3", "step 2"]
    second = await operators["viewer"].ok(
        "GET", f"/audit?account={account_id}&action=credits.grant&limit=2&cursor={first['next_cursor']}"
    )
    assert [entry["reason"] for entry in second["entries"]] == ["step 1"] and second["next_cursor"] is None
    for query in (
        "cursor=%00%C2%A7u2",
        "limit=-1",
        "limit=0",
        "since=yesterday",
        "account=99999999999999999999",
        "target=job%00",
        "operator=%00",
    ):
        status, body, _ = await operators["viewer"].call("GET", f"/audit?{query}")
        field = query.split("=")[0]
        assert status == 400 and field in body["detail"], (query, status, body)

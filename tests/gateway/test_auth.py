"""Key dispatch across dialects, and host names pinned to one dialect."""

from __future__ import annotations

from typing import Any

from tests.support.gateway import RunningGateway


async def test_a_host_pinned_to_ftmvai_does_not_serve_fitinview_routes(gateway_factory: Any) -> None:
    gateway: RunningGateway = await gateway_factory(host_dialects=("orders.example=ftmvai",))
    _, key = await gateway.account_with_key(mode="test")
    status, answer, _ = await gateway.request(
        "GET", "/api/v1/tryon", key=key, headers={"Host": "orders.example"}
    )
    assert status == 404 and "detail" in answer
    status, _, _ = await gateway.request("GET", "/api/v1/tryon", key=key, headers={"Host": "api.example"})
    assert status == 200


async def test_account_errors_take_the_shape_of_the_token(gateway: RunningGateway) -> None:
    status, answer, _ = await gateway.request("GET", "/api/v1/account", key="fiv_live_" + "z" * 40)
    assert (status, answer) == (401, {"detail": "Missing or invalid API key"})
    status, answer, _ = await gateway.request("GET", "/api/v1/account")
    assert status == 401


async def test_admin_routes_need_the_admin_token(gateway: RunningGateway) -> None:
    for token in (None, "wrong", "fiv_live_" + "a" * 40):
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        status, answer, _ = await gateway.request(
            "POST", "/admin/accounts", json={"name": "x", "dialect": "fitinview"}, headers=headers
        )
        assert (status, answer) == (401, {"detail": "Missing or invalid admin token"})


async def test_admin_validation_errors_are_400(gateway: RunningGateway) -> None:
    token = {"Authorization": f"Bearer {gateway.settings.admin_token}"}
    for body in (
        {"name": "x", "dialect": "klingon"},
        {"dialect": "fitinview"},
        {"name": "", "dialect": "ftmvai"},
    ):
        status, answer, _ = await gateway.request("POST", "/admin/accounts", json=body, headers=token)
        assert status == 400 and "detail" in answer, (body, answer)
    status, answer, _ = await gateway.request("GET", "/admin/accounts/999999", headers=token)
    assert status == 404
    account_id = await gateway.new_account(credits=5)
    status, answer, _ = await gateway.request(
        "POST", f"/admin/accounts/{account_id}/credits", json={"amount": -6, "reason": "oops"}, headers=token
    )
    assert status == 409 and "does not cover" in answer["detail"]
    body = await gateway.admin(
        "POST", f"/accounts/{account_id}/credits", {"amount": -5, "reason": "correction"}
    )
    assert body == {"credits_remaining": 0}

"""Odd text and structure a fuzzer (or a hostile client) sends: a 400 or the dialect's 404, never a 500.

PostgreSQL refuses NUL characters, msgspec raises RecursionError on very deep JSON and
``"²".isdigit()`` is true; each of these once answered 500 (issue 11).
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.gateway import RunningGateway, fitinview_tryon_body

NESTED = b"[" * 50_000 + b"]" * 50_000
NESTED_OBJECT = b'{"a":' * 50_000 + b"1" + b"}" * 50_000


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"prompt": "a\x00b"}, "prompt"),
        ({"negative_prompt": "\x00"}, "negative_prompt"),
        ({"style_hint": "casual\x00"}, "style_hint"),
        ({"metadata": {"order\x00": "1"}}, "metadata"),
        ({"metadata": {"order": "x\x00y"}}, "metadata"),
    ],
)
async def test_fitinview_unstorable_text_is_a_400_naming_the_field(
    gateway: RunningGateway, extra: dict[str, Any], field: str
) -> None:
    account_id, key = await gateway.account_with_key(credits=10)
    status, body, _ = await gateway.request(
        "POST", "/api/v1/tryon", key=key, json=fitinview_tryon_body(**extra)
    )
    assert status == 400, body
    assert set(body) == {"detail"} and field in body["detail"], body
    account = await gateway.admin("GET", f"/accounts/{account_id}")
    assert account["credits_remaining"] == 10, account  # refused before any charge


async def test_fitinview_nul_in_cursor_and_job_id(gateway: RunningGateway) -> None:
    _, key = await gateway.account_with_key(credits=10)
    status, body, _ = await gateway.request("GET", "/api/v1/tryon?cursor=%00%C2%A7u2", key=key)
    assert status == 400, body
    assert set(body) == {"detail"} and "cursor" in body["detail"], body
    status, body, _ = await gateway.request("GET", "/api/v1/tryon/job_%00", key=key)
    assert (status, body) == (404, {"detail": "Job not found"})


@pytest.mark.parametrize("path", ["/api/v1/tryon", "/api/v1/credits/purchase"])
@pytest.mark.parametrize("raw", [NESTED, NESTED_OBJECT], ids=["array", "object"])
async def test_fitinview_deeply_nested_json_is_a_400(gateway: RunningGateway, path: str, raw: bytes) -> None:
    _, key = await gateway.account_with_key(credits=10)
    headers = {"Content-Type": "application/json"}
    status, body, _ = await gateway.request("POST", path, key=key, data=raw, headers=headers)
    assert status == 400, body
    assert body == {"detail": "Request body must be valid JSON: nested too deeply"}


@pytest.mark.parametrize("raw", [NESTED, NESTED_OBJECT], ids=["array", "object"])
async def test_ftmvai_deeply_nested_json_is_a_400_envelope(gateway: RunningGateway, raw: bytes) -> None:
    _, key = await gateway.account_with_key(dialect="ftmvai", credits=10)
    headers = {"Content-Type": "application/json"}
    status, body, _ = await gateway.request("POST", "/api/v1/generate", key=key, data=raw, headers=headers)
    assert status == 400, body
    assert body["success"] is False and body["error"]["code"] == "INVALID_REQUEST", body
    assert "nested too deeply" in body["error"]["message"]


@pytest.mark.parametrize("order", ["%C2%B2", "%00", "1%00", "%D9%A3"])
async def test_ftmvai_non_ascii_digit_order_ids_are_404(gateway: RunningGateway, order: str) -> None:
    _, key = await gateway.account_with_key(dialect="ftmvai", credits=10)
    status, body, _ = await gateway.request("GET", f"/api/v1/orders/{order}", key=key)
    assert status == 404, body
    assert body["success"] is False and body["error"]["code"] == "ORDER_NOT_FOUND", body

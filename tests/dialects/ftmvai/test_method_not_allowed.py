"""Other methods on FtmvAI's paths answer 405 in FtmvAI's envelope, with ``Allow`` (not ``{"detail"}``)."""

from __future__ import annotations

import pytest

from tests.support.gateway import RunningGateway


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("PUT", "/api/v1/generate", "POST"),
        ("DELETE", "/api/v1/generate", "POST"),
        ("PATCH", "/api/v1/generate", "POST"),
        ("GET", "/api/v1/generate", "POST"),
        ("PUT", "/api/v1/orders/1", "GET"),
        ("DELETE", "/api/v1/orders/1", "GET"),
        ("PATCH", "/api/v1/orders/1", "GET"),
        ("POST", "/api/v1/orders/1", "GET"),
    ],
)
async def test_other_methods_answer_405_in_the_envelope(
    gateway: RunningGateway, method: str, path: str, allow: str
) -> None:
    _, key = await gateway.account_with_key(dialect="ftmvai", credits=10)
    status, body, headers = await gateway.request(method, path, key=key, json={})
    assert status == 405, body
    assert body["success"] is False and body["error"]["code"] == "METHOD_NOT_ALLOWED", body
    assert headers["Allow"] == allow
    assert "X-RateLimit-Limit" in headers


async def test_without_a_key_the_refusal_is_still_the_envelope(gateway: RunningGateway) -> None:
    status, body, _ = await gateway.request("DELETE", "/api/v1/orders/1")
    assert status == 401, body
    assert body["success"] is False and body["error"]["code"] == "UNAUTHORIZED", body

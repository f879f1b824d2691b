"""Operators of every role on the shared gateway, and a small admin client over real HTTP."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.gateway import RunningGateway

ROLES = ("viewer", "support", "admin")


class AdminClient:
    """Calls ``/admin`` as one operator (token) and returns (status, body, headers)."""

    def __init__(self, gateway: RunningGateway, token: str | None) -> None:
        self.gateway = gateway
        self.token = token

    async def call(
        self, method: str, path: str, json: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any, dict[str, str]]:
        all_headers = dict(headers or {})
        if self.token is not None:
            all_headers["Authorization"] = f"Bearer {self.token}"
        return await self.gateway.request(method, "/admin" + path, json=json, headers=all_headers)

    async def ok(self, method: str, path: str, json: Any = None) -> Any:
        status, body, _ = await self.call(method, path, json)
        assert status in (200, 201, 202), (method, path, status, body)
        return body


@pytest.fixture(scope="session")
async def operators(gateway: RunningGateway) -> dict[str, AdminClient]:
    """``root`` plus one operator per role, created through the API as root would."""
    root = AdminClient(gateway, gateway.settings.admin_token)
    clients = {"root": root}
    for role in ROLES:
        created = await root.ok("POST", "/operators", {"name": f"ops-{role}", "role": role})
        clients[role] = AdminClient(gateway, created["token"])
    return clients

"""Operators of every role on the shared gateway, a small admin client over real HTTP, and the
``tryon-gateway admin`` CLI run against a test gateway's services."""

from __future__ import annotations

import os
import subprocess
import sys
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


def cli(gateway: RunningGateway, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m gateway.cli admin …`` against the test gateway's database, Redis and S3."""
    settings = gateway.settings
    env = os.environ | {
        "TRYON_DATABASE_URL": settings.database_url,
        "TRYON_REDIS_URL": settings.redis_url,
        "TRYON_REDIS_NAMESPACE": settings.redis_namespace,
        "TRYON_S3_ENDPOINT": settings.s3_endpoint,
        "TRYON_S3_ACCESS_KEY": settings.s3_access_key,
        "TRYON_S3_SECRET_KEY": settings.s3_secret_key,
        "TRYON_S3_BUCKET": settings.s3_bucket,
        "TRYON_ADMIN_TOKEN": settings.admin_token,
    }
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", "admin", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )

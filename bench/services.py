"""PostgreSQL, Redis and S3 for a bench run: embedded children (like ``dev``) or the machine's.

``embedded`` (the default) needs only what ``tryon-gateway dev`` needs: the three servers run
from the ``embedded`` extra's wheels under a temporary directory and are stopped at the end.
``machine`` uses PostgreSQL and Redis at ``TRYON_TEST_PG_ADMIN_URL``/``TRYON_TEST_REDIS_URL``
(as the tests do: a database of its own, created and dropped, and a Redis namespace of its own)
and a SeaweedFS it starts itself unless ``TRYON_TEST_S3_ENDPOINT`` names one.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import tempfile
from pathlib import Path

import asyncpg
import msgspec

from gateway.embedded import EmbeddedServices, SeaweedProcess, start_seaweed_s3
from gateway.migrations import ALL_MIGRATIONS
from ledger.database import apply_migrations
from storage.objects import ObjectStore, StorageConfig

PG_ADMIN_URL = os.environ.get("TRYON_TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("TRYON_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
BUCKET = "tryon-bench"


class Endpoints(msgspec.Struct, frozen=True, kw_only=True):
    """Where the services answer; ``admin_url`` is a maintenance database to create others from."""

    admin_url: str
    redis_url: str
    s3_endpoint: str
    s3_access_key: str
    s3_secret_key: str


class BenchServices:
    """Starts the services, creates migrated databases on them, and takes everything down again."""

    def __init__(self, kind: str, root: Path | None = None) -> None:
        if kind not in ("embedded", "machine"):
            raise ValueError(f"services must be 'embedded' or 'machine', not {kind!r}")
        self.kind = kind
        self.root = root or Path(tempfile.mkdtemp(prefix="tryon-bench-"))
        self._embedded: EmbeddedServices | None = None
        self._seaweed: SeaweedProcess | None = None
        self._databases: list[str] = []
        self.endpoints: Endpoints | None = None

    def start(self) -> Endpoints:
        if self.kind == "embedded":
            self._embedded = EmbeddedServices(self.root / "services")
            found = self._embedded.start()
            base, _, _ = found.database_url.rpartition("/")
            self.endpoints = Endpoints(
                admin_url=f"{base}/postgres",
                redis_url=found.redis_url,
                s3_endpoint=found.s3_endpoint,
                s3_access_key=found.s3_access_key,
                s3_secret_key=found.s3_secret_key,
            )
            return self.endpoints
        s3 = os.environ.get("TRYON_TEST_S3_ENDPOINT")
        access = os.environ.get("TRYON_TEST_S3_ACCESS_KEY", "tryon")
        secret = os.environ.get("TRYON_TEST_S3_SECRET_KEY", "tryon-secret")
        if not s3:
            self._seaweed = start_seaweed_s3(
                self.root / "s3",
                access_key=access,
                secret_key=secret,
                log_path=self.root / "seaweedfs.log",
            )
            s3 = self._seaweed.endpoint
        self.endpoints = Endpoints(
            admin_url=PG_ADMIN_URL,
            redis_url=REDIS_URL,
            s3_endpoint=s3,
            s3_access_key=access,
            s3_secret_key=secret,
        )
        return self.endpoints

    async def create_database(self, prefix: str = "tryon_bench_") -> str:
        """A new database with the gateway's migrations applied (and the bucket): its URL."""
        assert self.endpoints is not None
        name = prefix + secrets.token_hex(4)
        connection = await asyncpg.connect(self.endpoints.admin_url)
        try:
            await connection.execute(f'CREATE DATABASE "{name}"')
        finally:
            await connection.close()
        self._databases.append(name)
        url = self.endpoints.admin_url.rpartition("/")[0] + "/" + name
        await apply_migrations(url, ALL_MIGRATIONS)
        await ObjectStore(self.storage_config()).ensure_bucket()
        return url

    def storage_config(self) -> StorageConfig:
        assert self.endpoints is not None
        return StorageConfig(
            endpoint=self.endpoints.s3_endpoint,
            access_key=self.endpoints.s3_access_key,
            secret_key=self.endpoints.s3_secret_key,
            bucket=BUCKET,
        )

    async def drop_databases(self) -> None:
        assert self.endpoints is not None
        connection = await asyncpg.connect(self.endpoints.admin_url)
        try:
            for name in self._databases:
                await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await connection.close()
        self._databases.clear()

    def stop(self) -> None:
        if self.endpoints is not None and self.kind == "machine":
            asyncio.run(self.drop_databases())
        if self._embedded is not None:
            self._embedded.stop()
        if self._seaweed is not None:
            self._seaweed.stop()
        shutil.rmtree(self.root, ignore_errors=True)

"""The PostgreSQL connection every package shares, and the schema it needs.

One :class:`Database` wraps one Piccolo :class:`~piccolo.engine.postgres.PostgresEngine`
(its asyncpg pool and its transaction context) built from the ``TRYON_DATABASE_URL``
DSN. Repositories run their SQL through :meth:`Database.fetch`, on their own
engine, never through a process-wide table binding, so several runtimes can
share a process (the test suite runs many gateways at once) without crossing.
Queries issued inside ``async with database.transaction():`` run on that
transaction's connection (Piccolo tracks it in a context variable), which is how
the request or the actor owns the transaction while services only issue queries.
The Piccolo ``Table`` classes describe the schema the migrations create; a test
keeps them in step.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg
from piccolo.engine.postgres import PostgresEngine, PostgresTransaction


class Database:
    def __init__(self, dsn: str, *, min_pool: int = 1, max_pool: int = 10) -> None:
        self.dsn = dsn
        self.engine = PostgresEngine(config={"dsn": dsn})
        self._pool_size = (min_pool, max_pool)

    async def start(self) -> None:
        if self.engine.pool is None:
            low, high = self._pool_size
            await self.engine.start_connection_pool(min_size=low, max_size=high)

    async def close(self) -> None:
        if self.engine.pool is not None:
            await self.engine.close_connection_pool()

    def transaction(self) -> PostgresTransaction:
        """A transaction (or a savepoint, when nested) owned by the caller."""
        return self.engine.transaction()

    async def fetch(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        """Run raw SQL (``$1`` placeholders) inside the current transaction if there is one."""
        transaction = self.engine.current_transaction.get()
        if transaction is not None:
            rows = await transaction.connection.fetch(sql, *args)
        else:
            assert self.engine.pool is not None, "Database.start() was not awaited"
            async with self.engine.pool.acquire() as connection:
                rows = await connection.fetch(sql, *args)
        return [dict(row) for row in rows]

    async def fetchrow(self, sql: str, *args: Any) -> dict[str, Any] | None:
        rows = await self.fetch(sql, *args)
        return rows[0] if rows else None

    async def ping(self) -> None:
        await self.fetch("SELECT 1")


async def apply_migrations(dsn: str, migrations: Sequence[tuple[str, Sequence[str]]]) -> list[str]:
    """Apply named, ordered SQL migrations once each; returns the names applied now.

    A session-level advisory lock serialises concurrent ``migrate`` runs (several
    containers starting at once); the ``schema_migrations`` table remembers what
    ran. Each migration runs in its own transaction.
    """
    connection = await asyncpg.connect(dsn)
    applied: list[str] = []
    try:
        await connection.execute("SELECT pg_advisory_lock(72710001)")
        await connection.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {row["name"] for row in await connection.fetch("SELECT name FROM schema_migrations")}
        for name, statements in migrations:
            if name in done:
                continue
            async with connection.transaction():
                for statement in statements:
                    await connection.execute(statement)
                await connection.execute("INSERT INTO schema_migrations (name) VALUES ($1)", name)
            applied.append(name)
    finally:
        await connection.execute("SELECT pg_advisory_unlock(72710001)")
        await connection.close()
    return applied

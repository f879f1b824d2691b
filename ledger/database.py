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

Every wait on PostgreSQL is bounded when the runtime gives bounds (``TRYON_DATABASE_*_TIMEOUT_SECONDS``):
taking a connection from the pool (or opening one) and each statement. A stalled server (hung, or a
network that drops packets) then fails the request with a timeout, which the APIs answer 503, instead of
holding it, and every request after it, forever.

A connection going back to the pool is not reset beyond what asyncpg always does (roll back an open
transaction, drop listener callbacks): asyncpg's default reset sends ``pg_advisory_unlock_all(); CLOSE
ALL; UNLISTEN *; RESET ALL`` on every release, a second round trip for every one-statement read (a
poll, issue 10). Nothing here leaves session state on a pooled connection: advisory locks are
transaction-scoped (``pg_advisory_xact_lock``), ``SET`` is ``SET TRANSACTION``, there is no ``LISTEN``
and no ``WITH HOLD`` cursor; code that needs such state takes its own connection (as
:func:`apply_migrations` does).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import asyncpg
from piccolo.engine.postgres import PostgresEngine, PostgresTransaction


class _Transaction(PostgresTransaction):
    """Piccolo's transaction, with a bounded wait for its connection, and giving the connection back
    when BEGIN, COMMIT or ROLLBACK fails. Piccolo keeps a connection whose BEGIN (or COMMIT) raised
    out of the pool for good; after a database outage those lost connections would starve the pool,
    so the gateway would not recover by itself."""

    acquire_timeout: float | None = None

    async def get_connection(self) -> Any:
        assert self.engine.pool is not None, "Database.start() was not awaited"
        return await self.engine.pool.acquire(timeout=self.acquire_timeout)

    async def __aenter__(self) -> PostgresTransaction:
        if self._parent is not None:
            return self._parent
        self.connection = await self.get_connection()
        try:
            self.transaction = self.connection.transaction()
            await self.begin()  # type: ignore[no-untyped-call]
        except BaseException:
            await self._give_back()
            raise
        self.context = self.engine.current_transaction.set(self)
        return self

    async def __aexit__(self, exception_type: Any, exception: Any, traceback: Any) -> bool:
        if self._parent is not None:
            return exception is None
        try:
            if exception is not None:
                if not self._rolled_back:
                    await self.rollback()  # type: ignore[no-untyped-call]
            elif not self._committed and not self._rolled_back:
                await self.commit()  # type: ignore[no-untyped-call]
        finally:
            self.engine.current_transaction.reset(self.context)
            await self._give_back()
        return exception is None

    async def _give_back(self) -> None:
        """Return the connection; one that is broken (or mid-statement) is closed, not reused."""
        pool = self.engine.pool
        assert pool is not None
        try:
            await pool.release(self.connection, timeout=self.acquire_timeout)
        except Exception:
            with contextlib.suppress(Exception):
                self.connection.terminate()


async def _keep_session(connection: asyncpg.Connection) -> None:
    """The pool's reset on release: nothing beyond asyncpg's own rollback (see the module's docstring)."""


class Database:
    def __init__(
        self,
        dsn: str,
        *,
        min_pool: int = 1,
        max_pool: int = 10,
        command_timeout: float | None = None,
        acquire_timeout: float | None = None,
    ) -> None:
        """``command_timeout``: the longest one statement may take; ``acquire_timeout``: the longest
        wait for a pooled connection, or to open one (None: no bound, asyncpg's defaults)."""
        self.dsn = dsn
        config: dict[str, Any] = {"dsn": dsn}
        if command_timeout is not None:
            config["command_timeout"] = command_timeout
        if acquire_timeout is not None:
            config["timeout"] = acquire_timeout  # asyncpg's connect timeout
        self.engine = PostgresEngine(config=config)
        self.acquire_timeout = acquire_timeout
        self._pool_size = (min_pool, max_pool)

    async def start(self) -> None:
        if self.engine.pool is None:
            low, high = self._pool_size
            await self.engine.start_connection_pool(min_size=low, max_size=high, reset=_keep_session)

    async def close(self) -> None:
        if self.engine.pool is not None:
            await self.engine.close_connection_pool()

    def transaction(self) -> PostgresTransaction:
        """A transaction owned by the caller (inside another one: that same transaction)."""
        transaction = _Transaction(engine=self.engine)
        transaction.acquire_timeout = self.acquire_timeout
        return transaction

    async def fetch(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        """Run raw SQL (``$1`` placeholders) inside the current transaction if there is one."""
        transaction = self.engine.current_transaction.get()
        if transaction is not None:
            rows = await transaction.connection.fetch(sql, *args)
        else:
            assert self.engine.pool is not None, "Database.start() was not awaited"
            async with self.engine.pool.acquire(timeout=self.acquire_timeout) as connection:
                try:
                    rows = await connection.fetch(sql, *args)
                except asyncpg.InternalClientError:
                    # its protocol was left mid-operation (seen when the server died under it):
                    # never hand this connection out again
                    connection.terminate()
                    raise
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

"""Shared machinery of the service-fault tests (faults 1, 2, 3 and 5 of issue 11).

Each test runs ``tryon-gateway serve`` and ``tryon-gateway worker`` as child processes against real
PostgreSQL, Redis and S3 and fails one of them from the outside:

- Redis: a ``redis-server`` of this module's own (:class:`RedisServer`), killed and started again on
  the same port, empty (the machine's Redis is shared with other test runs and is never touched);
- PostgreSQL: the machine's server, reached through a :class:`~tests.support.tcp_proxy.TcpProxy` that
  drops, refuses or stalls connections (a restart, as the gateway sees it);
- S3: the session's SeaweedFS behind the same kind of proxy;
- a worker: SIGKILLed mid-generation.

:class:`Stack` is the client side: every answer is recorded, so a test can end by asserting that no
client ever got a 500, before the money invariants of :mod:`tests.support.invariants`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg
import pytest
import redis

from tests.support import services
from tests.support.gateway import ADMIN_TOKEN, fixture_b64, free_port
from tests.support.image_host import ImageHost
from tests.support.invariants import assert_money_invariants
from tests.support.processes import child_env
from tests.support.tcp_proxy import TcpProxy

CLI = [sys.executable, "-m", "gateway.cli"]
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
TERMINAL = {"succeeded", "failed"}


# ================================================================================= services
class RedisServer:
    """A ``redis-server`` without persistence on a fixed port: a restart loses everything in it
    (queued messages, rate-limit counters, idempotency locks), as a crashed cache does."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                REDIS_SERVER,
                *("--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"),
                *("--dir", str(self.directory), "--logfile", str(self.directory / "redis.log")),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        try:
            for _ in range(100):
                with contextlib.suppress(redis.exceptions.RedisError):
                    if client.ping():
                        return
                time.sleep(0.05)
        finally:
            client.close()
        raise AssertionError(f"redis-server on {self.port} did not start: {self.log()}")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()
        self.process = None

    def log(self) -> str:
        path = self.directory / "redis.log"
        return path.read_text()[-2000:] if path.exists() else ""


@pytest.fixture(scope="module")
def own_redis(tmp_path_factory: pytest.TempPathFactory) -> Any:
    if not os.path.exists(REDIS_SERVER):
        pytest.fail(f"{REDIS_SERVER} is missing (apt-get install redis-server)", pytrace=False)
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.kill()


class ProxiedDatabase:
    """A fresh migrated database: ``direct_url`` for the test's own checks, ``url`` (through
    ``proxy``) for the gateway."""

    def __init__(self, name: str, direct_url: str, proxy: TcpProxy) -> None:
        self.name = name
        self.direct_url = direct_url
        self.proxy = proxy
        parts = urlsplit(direct_url)
        user = f"{parts.username}@" if parts.username else ""
        self.url = urlunsplit(parts._replace(netloc=f"{user}127.0.0.1:{proxy.port}"))

    def via(self, proxy: TcpProxy) -> str:
        """The database's URL through another proxy (e.g. one per process)."""
        parts = urlsplit(self.direct_url)
        user = f"{parts.username}@" if parts.username else ""
        return urlunsplit(parts._replace(netloc=f"{user}127.0.0.1:{proxy.port}"))


@pytest.fixture
async def proxied_database() -> AsyncIterator[ProxiedDatabase]:
    await services.check_postgres()
    name, url = await services.create_database()
    parts = urlsplit(url)
    proxy = await TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432).start()
    try:
        yield ProxiedDatabase(name, url, proxy)
    finally:
        await proxy.close()
        await services.drop_database(name)


@pytest.fixture
async def fresh_database() -> AsyncIterator[str]:
    await services.check_postgres()
    name, url = await services.create_database()
    try:
        yield url
    finally:
        await services.drop_database(name)


# ================================================================================= the gateway
class Stack:
    """``serve`` and ``worker`` processes of one deployment, and its clients' view of the API."""

    def __init__(
        self, env: dict[str, str], direct_database_url: str, http: aiohttp.ClientSession, log_dir: Path
    ) -> None:
        self.env = env
        self.log_dir = log_dir
        self.database_url = direct_database_url
        self.http = http
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.children: list[subprocess.Popen[bytes]] = []
        self.answers: list[tuple[str, int, Any]] = []
        """(what, status, body) of every API answer (status 0: no answer: the connection failed)."""

    # processes ------------------------------------------------------------------------
    def start(self, *args: str, **extra_env: str) -> subprocess.Popen[bytes]:
        """Start ``tryon-gateway *args``; its output goes to a log file (a pipe nobody reads would
        block a process that logs a lot, as processes in an outage do)."""
        log_path = self.log_dir / f"{len(self.children):02d}-{args[0]}.log"
        with log_path.open("wb") as log_file:
            child = subprocess.Popen(
                [*CLI, *args],
                env={**self.env, **extra_env},
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.children.append(child)
        return child

    async def wait_for_log(self, text: str, *, timeout: float) -> None:
        """Wait until a child logs ``text`` (e.g. a job id: the worker logs a job it had to give up)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not any(text in path.read_text(errors="replace") for path in self.log_dir.glob("*.log")):
            if loop.time() > deadline:
                raise AssertionError(f"nothing logged {text!r} within {timeout:g}s")
            await asyncio.sleep(0.2)

    def logs(self, lines: int = 40) -> str:
        """The end of every child's log (shown when a test fails)."""
        parts = []
        for path in sorted(self.log_dir.glob("*.log")):
            tail = path.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- {path.name}\n" + "\n".join(tail))
        return "\n".join(parts)

    async def start_serve(self, **extra_env: str) -> subprocess.Popen[bytes]:
        serve = self.start("serve", "--port", str(self.port), **extra_env)
        for _ in range(900):
            if serve.poll() is not None:
                raise AssertionError(f"serve exited:\n{self.logs()}")
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with self.http.get(self.base + "/readyz") as response:
                    if response.status == 200:
                        return serve
            await asyncio.sleep(0.1)
        raise AssertionError("serve never became ready")

    def start_worker(self, threads: int = 2, **extra_env: str) -> subprocess.Popen[bytes]:
        return self.start("worker", "--processes", "1", "--threads", str(threads), **extra_env)

    def stop_all(self) -> None:
        for child in self.children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in self.children:
            try:
                child.wait(timeout=20)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()

    # the API ----------------------------------------------------------------------------
    async def call(
        self,
        method: str,
        path: str,
        token: str,
        body: Any = None,
        *,
        headers: dict[str, str] | None = None,
        timeout: float = 60,
    ) -> tuple[int, Any, dict[str, str]]:
        """One API call; its answer is recorded. A connection failure is status 0, never raised."""
        what = f"{method} {path}"
        try:
            async with self.http.request(
                method,
                self.base + path,
                json=body,
                headers={"Authorization": f"Bearer {token}", **(headers or {})},
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as response:
                raw = await response.read()
                try:
                    parsed: Any = await response.json(content_type=None) if raw else None
                except ValueError:
                    parsed = raw[:300].decode(errors="replace")
                self.answers.append((what, response.status, parsed))
                return response.status, parsed, dict(response.headers)
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.answers.append((what, 0, f"{type(exc).__name__}: {exc}"))
            return 0, None, {}

    async def account(self, *, credits: int = 1000, dialect: str = "fitinview") -> tuple[int, str]:
        """A new account with a live key: (account id, key)."""
        status, account, _ = await self.call(
            "POST", "/admin/accounts", ADMIN_TOKEN, {"name": "Fault", "dialect": dialect, "credits": credits}
        )
        assert status == 201, account
        status, minted, _ = await self.call(
            "POST", f"/admin/accounts/{account['id']}/keys", ADMIN_TOKEN, {"mode": "live"}
        )
        assert status in (200, 201), minted
        return int(account["id"]), str(minted["key"])

    async def balance(self, account_id: int) -> int:
        rows = await self.sql("SELECT balance FROM accounts WHERE id = $1", account_id)
        return int(rows[0]["balance"])

    async def sql(self, query: str, *args: Any) -> list[asyncpg.Record]:
        """A query straight on the database (never through a proxy the test is cutting)."""
        connection = await asyncpg.connect(self.database_url)
        try:
            return list(await connection.fetch(query, *args))
        finally:
            await connection.close()

    async def wait_for(self, query: str, *args: Any, timeout: float, what: str) -> list[asyncpg.Record]:
        """Poll ``query`` until it returns rows."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            rows = await self.sql(query, *args)
            if rows:
                return rows
            if loop.time() > deadline:
                raise AssertionError(f"{what}: not within {timeout:g}s")
            await asyncio.sleep(0.1)

    # the end of every fault test --------------------------------------------------------
    def assert_no_server_errors(self) -> None:
        """No client got a 500 (a 503 is fine only with Retry-After, checked where it is expected),
        and the API never went silent (status 0: the process died or hung up)."""
        bad = [(what, status, body) for what, status, body in self.answers if status >= 500 and status != 503]
        assert not bad, bad
        lost = [(what, body) for what, status, body in self.answers if status == 0]
        assert not lost, lost

    async def check_invariants(self, terminal_timeout: float = 60) -> None:
        self.assert_no_server_errors()
        env = {key: value for key, value in self.env.items() if key.startswith("TRYON_")}
        env["TRYON_DATABASE_URL"] = self.database_url
        await assert_money_invariants(self.database_url, terminal_timeout=terminal_timeout, env=env)


def tryon_body(**extra: Any) -> dict[str, Any]:
    return {
        "person_image_b64": fixture_b64("person-astronaut.png"),
        "garment_images_b64": [fixture_b64("garment-shirt-red-stripes.png")],
        **extra,
    }


def order_body() -> dict[str, Any]:
    return {
        "person_image": fixture_b64("person-astronaut.png"),
        "clothing_image": fixture_b64("garment-shirt-red-stripes.png"),
    }


def assert_unavailable(status: int, headers: dict[str, str], body: Any, what: str) -> None:
    """A 503 the way a client may be told to come back: with ``Retry-After``."""
    assert status == 503, (what, status, body)
    assert int(headers.get("Retry-After", "0")) >= 1, (what, headers, body)


@contextlib.asynccontextmanager
async def stack(
    http: aiohttp.ClientSession,
    image_host: ImageHost,
    *,
    database_url: str,
    direct_database_url: str,
    redis_url: str,
    s3: services.S3Endpoint,
    **env: str,
) -> AsyncIterator[Stack]:
    """A deployment's environment (processes are started by the test, which decides when)."""
    group = Stack(
        child_env(
            database_url=database_url,
            redis_url=redis_url,
            s3=s3,
            image_host=image_host,
            TRYON_LOG_LEVEL="warning",
            **env,
        ),
        direct_database_url,
        http,
        Path(tempfile.mkdtemp(prefix="tryon-faults-")),
    )
    try:
        yield group
    except BaseException:
        print(group.logs())  # pytest shows it with the failure
        raise
    finally:
        group.stop_all()

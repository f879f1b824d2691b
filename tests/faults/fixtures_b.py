"""A deployment of its own for the third-party fault tests (faults 4, 6, 7, 8): ``serve`` and
``worker`` as child processes on a fresh database of the session's PostgreSQL, the session's Redis
(own namespace) and S3, plus the helpers every such test ends with.

The faults here are injected from outside the gateway: the fake Gemini, Stripe and webhook
receiver misbehave, or clients do. The services themselves stay healthy, so sharing them is safe.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import asyncpg

from tests.support import services
from tests.support.gateway import ADMIN_TOKEN, free_port
from tests.support.image_host import ImageHost
from tests.support.invariants import ledger_verify, money_violations, wait_all_terminal
from tests.support.processes import child_env

CLI = [sys.executable, "-m", "gateway.cli"]
TERMINAL = {"succeeded", "failed"}


class Deployment:
    """One ``serve`` and one ``worker`` process, and the client side of the API."""

    def __init__(self, env: dict[str, str], http: aiohttp.ClientSession, image_host: ImageHost) -> None:
        self.env = env
        self.http = http
        self.image_host = image_host
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.children: list[subprocess.Popen[bytes]] = []
        self.statuses: list[int] = []
        """Every status code an API call of this deployment answered (no 500 may be among them)."""

    def start(self, *args: str, **extra_env: str) -> subprocess.Popen[bytes]:
        child = subprocess.Popen(
            [*CLI, *args], env={**self.env, **extra_env}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        self.children.append(child)
        return child

    async def wait_ready(self, serve: subprocess.Popen[bytes]) -> None:
        for _ in range(600):
            if serve.poll() is not None:
                raise AssertionError(f"serve exited: {serve.stderr.read().decode() if serve.stderr else ''}")
            try:
                async with self.http.get(self.base + "/readyz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
        raise AssertionError("serve never became ready")

    def stop_all(self) -> None:
        for child in self.children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in self.children:
            try:
                child.wait(timeout=15)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()

    # the API -------------------------------------------------------------------------
    async def call(
        self, method: str, path: str, token: str, body: Any = None, *, timeout: float = 120
    ) -> tuple[int, Any, dict[str, str]]:
        async with self.http.request(
            method,
            self.base + path,
            json=body,
            headers={"Authorization": f"Bearer {token}"},
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as response:
            self.statuses.append(response.status)
            return response.status, await response.json(content_type=None), dict(response.headers)

    async def account(
        self, credits: int = 100, dialect: str = "fitinview", mode: str = "live"
    ) -> tuple[int, str, str]:
        """A new account: (id, a key of ``mode``, the key's webhook secret)."""
        status, account, _ = await self.call(
            "POST", "/admin/accounts", ADMIN_TOKEN, {"name": "Fault", "dialect": dialect, "credits": credits}
        )
        assert status == 201, account
        status, minted, _ = await self.call(
            "POST", f"/admin/accounts/{account['id']}/keys", ADMIN_TOKEN, {"mode": mode}
        )
        assert status in (200, 201), minted
        return int(account["id"]), str(minted["key"]), str(minted.get("webhook_secret") or "")

    def tryon_request(self, **extra: Any) -> dict[str, Any]:
        return {
            "person_url": self.image_host.url("/person.png"),
            "garment_urls": [self.image_host.url("/shirt.png")],
            **extra,
        }

    async def wait_terminal(self, job_id: str, key: str, timeout: float) -> dict[str, Any]:
        """Poll the job until it ends; fails the test if it has not within ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        body: Any = None
        while loop.time() < deadline:
            status, body, _ = await self.call("GET", f"/api/v1/tryon/{job_id}", key)
            assert status == 200, body
            if body["status"] in TERMINAL:
                return dict(body)
            await asyncio.sleep(0.2)
        raise AssertionError(f"job {job_id} did not end within {timeout:g}s: {body}")

    # the ledger ----------------------------------------------------------------------
    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        connection = await asyncpg.connect(self.env["TRYON_DATABASE_URL"])
        try:
            return list(await connection.fetch(query, *args))
        finally:
            await connection.close()

    async def check_money(self, terminal_timeout: float = 60) -> None:
        """The issue's closing checks short of ``ledger verify`` (run once per module, by
        :meth:`check_invariants`): no API call answered 500, every job ended, one debit and at most
        one refund per job, every balance equals the sum of its entries."""
        assert 500 not in self.statuses, self.statuses
        database_url = self.env["TRYON_DATABASE_URL"]
        problems = await wait_all_terminal(database_url, terminal_timeout)
        problems += await money_violations(database_url)
        assert not problems, "money invariants violated:\n" + "\n".join(problems)

    async def check_invariants(self, terminal_timeout: float = 60) -> None:
        """:meth:`check_money`, then ``tryon-gateway ledger verify`` exits 0."""
        await self.check_money(terminal_timeout)
        await asyncio.to_thread(ledger_verify, self.env["TRYON_DATABASE_URL"], env=self.env)


@asynccontextmanager
async def deployment(
    http: aiohttp.ClientSession,
    redis_url: str,
    s3: services.S3Endpoint,
    image_host: ImageHost,
    *,
    worker_threads: int = 2,
    serve_env: dict[str, str] | None = None,
    worker: bool = True,
    **env: str,
) -> AsyncIterator[Deployment]:
    """``serve`` and ``worker`` on a fresh database, with these ``TRYON_*`` settings on top."""
    await services.check_postgres()
    database, database_url = await services.create_database()
    group = Deployment(
        child_env(
            database_url=database_url,
            redis_url=redis_url,
            s3=s3,
            image_host=image_host,
            TRYON_LOG_LEVEL="warning",
            # stopping at the end of a module need not wait out the production grace
            TRYON_WORKER_SHUTDOWN_SECONDS="3",
            **env,
        ),
        http,
        image_host,
    )
    try:
        serve = group.start("serve", "--port", str(group.port), **(serve_env or {}))
        if worker:
            group.start("worker", "--threads", str(worker_threads))
        await group.wait_ready(serve)
        yield group
    finally:
        group.stop_all()
        await services.drop_database(database)


async def eventually(check: Callable[[], Any], timeout: float, what: str) -> Any:
    """Await ``check()`` until it returns something truthy, or fail after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = await check()
        if result:
            return result
        if loop.time() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout:g}s")
        await asyncio.sleep(0.1)

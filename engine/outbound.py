"""The outbound guard: every request the gateway makes to a URL a caller gave us.

Callers hand us URLs (input images now, webhooks later). Fetching them blindly
would let anyone make the gateway talk to its own network: loopback services,
the database, cloud metadata endpoints. This module is the one place that
decides whether an address may be reached, in three layers:

* :func:`check_url` checks what is written in the URL: syntax, scheme, and a
  literal IP host (aiohttp connects to IP literals without asking a resolver,
  so this is the only check they get) or an obviously internal name.
* :class:`GuardedResolver` checks what a host name resolves to, at the moment
  the connection is made, so a name cannot point somewhere internal, and a
  rebinding answer mixing public and internal addresses is refused as a whole.
* :func:`fetch_bytes` follows redirects itself, re-running both checks on every
  hop, and caps time and size while streaming.

The only exception is the operator's ``allow_hosts`` list of ``host:port``
pairs (``TRYON_OUTBOUND_ALLOW_HOSTS``) for local development and tests. It is
matched exactly, on every hop: a redirect from an allowed host to any other
internal address is still refused.

Nothing here knows about images or HTTP APIs; callers translate
:class:`OutboundRefused`, :class:`FetchFailed` and :class:`TooLarge` into their
own errors.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import re
import socket
import weakref

import aiohttp
import msgspec
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver
from yarl import URL

from engine import metrics

__all__ = [
    "FetchFailed",
    "GuardedResolver",
    "OutboundError",
    "OutboundPolicy",
    "OutboundRefused",
    "TooLarge",
    "check_url",
    "fetch_bytes",
    "is_blocked_address",
    "make_session",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_DEFAULT_PORTS = {"http": 80, "https": 443}
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_MAX_URL_LENGTH = 8192
_CHUNK_SIZE = 64 * 1024

# Host names that always mean "this machine" or "the cloud's metadata service",
# whatever DNS says. Single-label names are refused too (see check_url).
_INTERNAL_NAMES = frozenset({"localhost", "metadata.google.internal", "metadata.goog", "metadata"})
_INTERNAL_SUFFIXES = (".localhost", ".internal", ".local", ".home.arpa")

_HOST_NAME = re.compile(r"^[a-z0-9_-]+(\.[a-z0-9_-]+)*\.?$")
# Anything shaped like a number-based IPv4 address; canonical dotted quads are
# parsed by ipaddress first, the rest (127.1, 0x7f.0.0.1, 2130706433) would be
# mapped onto an address by some resolvers and so are refused outright.
_NUMERIC_HOST = re.compile(r"^(0x[0-9a-f]*|[0-9]+)(\.(0x[0-9a-f]*|[0-9]+)){0,3}\.?$")


class OutboundPolicy(msgspec.Struct, frozen=True):
    """What outbound fetches may do; built from the ``TRYON_*`` settings.

    ``allow_hosts`` entries are ``host:port`` (``[v6]:port`` for IPv6) or a
    bare ``host``, meaning that host on the default port of the URL's scheme.
    """

    allow_http: bool = False
    allow_hosts: frozenset[str] = msgspec.field(default_factory=frozenset)
    timeout_seconds: float = 10.0
    max_redirects: int = 3
    max_bytes: int = 15 * 1024 * 1024
    resolver: AbstractResolver | None = None
    """The DNS lookup behind :class:`GuardedResolver` in every session made for this policy (image
    fetches and webhooks alike); ``None`` is the system's. Tests set one to simulate DNS answers,
    rebinding included."""


class OutboundError(Exception):
    """Base of the guard's errors; ``reason`` is short and safe to show a caller."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class OutboundRefused(OutboundError):
    """The URL or an address it leads to may not be fetched (callers: ``invalid URL``).

    Counted where it is born, so every refusal (at submit, on a redirect hop, on a DNS
    answer, at a webhook attempt) counts once, whoever catches it.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        metrics.outbound_refused(reason)


class FetchFailed(OutboundError):
    """The fetch was allowed but did not succeed: network, status, timeout, redirects."""


class TooLarge(OutboundError):
    """The response is, or announced it would be, larger than the policy allows."""


# --- addresses ---------------------------------------------------------------

_BLOCKED_V4 = tuple(
    ipaddress.IPv4Network(net)
    for net in (
        "0.0.0.0/8",  # "this network", includes the unspecified address
        "10.0.0.0/8",
        "100.64.0.0/10",  # shared address space (carrier-grade NAT)
        "127.0.0.0/8",
        "169.254.0.0/16",  # link-local, includes 169.254.169.254 (cloud metadata)
        "172.16.0.0/12",
        "192.0.0.0/24",  # IETF protocol assignments
        "192.0.2.0/24",  # documentation
        "192.88.99.0/24",  # 6to4 relay anycast
        "192.168.0.0/16",
        "198.18.0.0/15",  # benchmarking
        "198.51.100.0/24",  # documentation
        "203.0.113.0/24",  # documentation
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, includes broadcast
    )
)

_BLOCKED_V6 = tuple(
    ipaddress.IPv6Network(net)
    for net in (
        "::/8",  # unspecified, loopback, IPv4-compatible and other reserved
        "64:ff9b:1::/48",  # local-use NAT64
        "100::/64",  # discard-only
        "2001::/23",  # IETF protocol assignments, includes Teredo (2001::/32)
        "2001:db8::/32",  # documentation
        "3fff::/20",  # documentation
        "5f00::/16",  # segment routing SIDs
        "fc00::/7",  # unique local, includes fd00:ec2::254 (AWS metadata)
        "fe80::/10",  # link-local
        "fec0::/10",  # deprecated site-local
        "ff00::/8",  # multicast
    )
)

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries, which is where it really leads."""
    embedded: list[ipaddress.IPv4Address] = []
    if ip.ipv4_mapped is not None:
        embedded.append(ip.ipv4_mapped)
    if ip.sixtofour is not None:
        embedded.append(ip.sixtofour)
    if ip.teredo is not None:
        embedded.extend(ip.teredo)
    if ip in _NAT64 or ip in _IPV4_COMPATIBLE:
        embedded.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return embedded


def is_blocked_address(ip: IPAddress) -> bool:
    """True if the gateway must never connect to ``ip``.

    Blocks loopback, private, link-local, shared, multicast, reserved,
    documentation and unspecified ranges and the cloud metadata addresses, and
    IPv6 forms that embed such an IPv4 address (mapped, compatible, 6to4,
    Teredo, NAT64). Python's own ``is_global`` is consulted as well, so a range
    it knows about and this list forgets is still blocked.
    """
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            return True
        if any(is_blocked_address(v4) for v4 in _embedded_ipv4(ip)):
            return True
        if ip.ipv4_mapped is not None:
            # A mapped address is the IPv4 address itself; Python's is_global
            # for the IPv6 form says nothing useful.
            return False
        return any(ip in net for net in _BLOCKED_V6) or not ip.is_global
    return any(ip in net for net in _BLOCKED_V4) or not ip.is_global


# --- allow list ----------------------------------------------------------------


@functools.lru_cache(maxsize=32)
def _parse_allow_hosts(entries: frozenset[str]) -> frozenset[tuple[str, int | None]]:
    """Turn ``host:port`` / ``[v6]:port`` / ``host`` entries into (host, port) pairs.

    Hosts are lower-cased (host names are case-insensitive) and IPv6 literals
    compressed, so they compare equal to what yarl reports for a URL.
    """
    parsed: set[tuple[str, int | None]] = set()
    for raw_entry in entries:
        entry = raw_entry.strip().lower()
        if not entry:
            continue
        host, port = entry, None
        if entry.startswith("["):
            bracket_end = entry.find("]")
            host = entry[1:bracket_end]
            rest = entry[bracket_end + 1 :]
            if rest.startswith(":") and rest[1:].isdigit():
                port = int(rest[1:])
        elif entry.count(":") == 1:
            name, _, port_text = entry.partition(":")
            if port_text.isdigit():
                host, port = name, int(port_text)
        try:
            host = str(ipaddress.ip_address(host))
        except ValueError:
            pass
        parsed.add((host, port))
    return frozenset(parsed)


def _normalize_host(host: str) -> str:
    """The host as the allow list stores it: lower case, compressed IPv6."""
    host = host.lower()
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host


def _is_allowed_for_url(host: str, port: int, scheme: str, policy: OutboundPolicy) -> bool:
    """Whether the URL's host and port (port defaulting from the scheme) are allowed."""
    allowed = _parse_allow_hosts(policy.allow_hosts)
    host = _normalize_host(host)
    return (host, port) in allowed or ((host, None) in allowed and port == _DEFAULT_PORTS[scheme])


def _is_allowed_endpoint(host: str, port: int, policy: OutboundPolicy) -> bool:
    """Whether a connection to host:port is allowed, for the resolver that sees no scheme.

    A bare entry allows the host on the default port of any scheme the policy
    permits, which is exactly the set of endpoints check_url lets through.
    """
    allowed = _parse_allow_hosts(policy.allow_hosts)
    host = _normalize_host(host)
    if (host, port) in allowed:
        return True
    default_ports = {443, 80} if policy.allow_http else {443}
    return (host, None) in allowed and port in default_ports


# --- URLs ----------------------------------------------------------------------


def check_url(url: str, policy: OutboundPolicy) -> URL:
    """Parse ``url`` and refuse it unless the policy lets the gateway fetch it.

    Checks what can be known without DNS: an absolute http(s) URL with a host,
    no user info (``https://good.com@evil.com`` tricks), a scheme the policy
    permits, and a host that is neither a blocked IP literal nor an obviously
    internal name. Host names still pass through :class:`GuardedResolver` when
    connecting. An exact ``allow_hosts`` match skips the host checks.

    Raises :class:`OutboundRefused` with a short reason.
    """
    if len(url) > _MAX_URL_LENGTH:
        raise OutboundRefused("URL is too long")
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url):
        raise OutboundRefused("URL contains whitespace or control characters")
    try:
        parsed = URL(url)
        host = parsed.raw_host
        port = parsed.port
    except (ValueError, TypeError, UnicodeError):
        raise OutboundRefused("malformed URL") from None
    if not parsed.is_absolute() or not host:
        raise OutboundRefused("URL must be absolute and name a host")
    scheme = parsed.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise OutboundRefused("URL scheme must be https")
    if scheme == "http" and not policy.allow_http:
        raise OutboundRefused("URL scheme must be https")
    if parsed.raw_user is not None or parsed.raw_password is not None:
        raise OutboundRefused("URL must not contain user info")
    if port is None or not 0 < port <= 65535:
        raise OutboundRefused("URL port is invalid")
    if _is_allowed_for_url(host, port, scheme, policy):
        return parsed
    _check_host(host.lower())
    return parsed


def _check_host(host: str) -> None:
    """Refuse a host that is a blocked IP literal or an internal-looking name."""
    if "%" in host:
        raise OutboundRefused("IPv6 zone identifiers are not allowed")
    if ":" in host:
        try:
            ip: IPAddress = ipaddress.IPv6Address(host)
        except ValueError:
            raise OutboundRefused("malformed IPv6 address") from None
        if is_blocked_address(ip):
            raise OutboundRefused("address is not public")
        return
    if _NUMERIC_HOST.match(host):
        try:
            ip = ipaddress.IPv4Address(host)
        except ValueError:
            raise OutboundRefused("IPv4 address must be written as four decimal numbers") from None
        if is_blocked_address(ip):
            raise OutboundRefused("address is not public")
        return
    name = host.rstrip(".")
    if not _HOST_NAME.match(host) or not name:
        raise OutboundRefused("malformed host name")
    if name in _INTERNAL_NAMES or name.endswith(_INTERNAL_SUFFIXES):
        raise OutboundRefused("host name is internal")
    if "." not in name:
        # Single-label names are completed by the resolver's search domains,
        # which point inside the network.
        raise OutboundRefused("host name must be fully qualified")


# --- DNS -----------------------------------------------------------------------


class GuardedResolver(AbstractResolver):
    """A resolver that refuses a host name resolving to any blocked address.

    It wraps a real resolver (the system's, through aiohttp's ThreadedResolver,
    which honours /etc/hosts and needs no closing; tests pass a fake one to
    simulate DNS) and runs inside the connector, so the addresses it
    returns are the only ones the connection can use: there is no second lookup
    an attacker's DNS could answer differently. If *any* address is blocked the
    whole answer is refused, so a rebinding answer mixing a public and an
    internal address gains nothing. Endpoints in the policy's ``allow_hosts``
    are resolved without the block.

    Raises :class:`OutboundRefused`, which aiohttp passes through unchanged.
    """

    def __init__(self, policy: OutboundPolicy, inner: AbstractResolver | None = None) -> None:
        self.policy = policy
        self._inner = inner if inner is not None else ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """Resolve with the wrapped resolver, then refuse blocked answers."""
        results = await self._inner.resolve(host, port, family)
        if _is_allowed_endpoint(host.rstrip("."), port, self.policy):
            return results
        if not results:
            raise OSError(f"no addresses found for {host}")
        for result in results:
            try:
                ip = ipaddress.ip_address(result["host"])
            except ValueError:
                raise OutboundRefused("host resolved to an unusable address") from None
            if is_blocked_address(ip):
                raise OutboundRefused("host resolves to a non-public address")
        return results

    async def close(self) -> None:
        """Close the wrapped resolver."""
        await self._inner.close()


# --- sessions and fetching -------------------------------------------------------

# Sessions built by make_session, with the resolver guarding them. fetch_bytes
# refuses any other session: a plain one would skip the DNS check silently.
_guarded_sessions: weakref.WeakKeyDictionary[aiohttp.ClientSession, GuardedResolver] = (
    weakref.WeakKeyDictionary()
)


def make_session(
    policy: OutboundPolicy, *, inner_resolver: AbstractResolver | None = None
) -> aiohttp.ClientSession:
    """Create the only kind of session :func:`fetch_bytes` accepts.

    The connector resolves through a :class:`GuardedResolver`; environment
    proxies are ignored (a proxy would do the DNS lookup we need to check) and
    cookies are never stored, so one caller's fetch cannot affect another's.

    Call it from inside the running event loop. The caller owns the session and
    must close it (``async with make_session(policy) as session`` or
    ``await session.close()``); one session per process is the intended use.
    ``inner_resolver`` (else the policy's ``resolver``) replaces the real DNS lookup, for tests.
    """
    resolver = GuardedResolver(policy, inner_resolver if inner_resolver is not None else policy.resolver)
    connector = aiohttp.TCPConnector(resolver=resolver, limit=100, limit_per_host=10)
    session = aiohttp.ClientSession(
        connector=connector,
        trust_env=False,
        cookie_jar=aiohttp.DummyCookieJar(),
        timeout=aiohttp.ClientTimeout(total=policy.timeout_seconds),
        headers={"User-Agent": "tryon-gateway", "Accept": "image/jpeg, image/png, image/webp, */*;q=0.1"},
    )
    _guarded_sessions[session] = resolver
    return session


async def fetch_bytes(session: aiohttp.ClientSession, url: str, policy: OutboundPolicy) -> bytes:
    """GET ``url`` under ``policy`` and return the body.

    Redirects are followed here, not by aiohttp, so every hop passes
    :func:`check_url` (and the session's resolver), at most
    ``policy.max_redirects`` of them. The whole fetch, redirects included, gets
    ``policy.timeout_seconds``; the body is streamed and abandoned as soon as it
    passes ``policy.max_bytes``.

    ``session`` must come from :func:`make_session` with the same
    ``allow_hosts`` and ``allow_http`` (its resolver enforces the DNS part);
    anything else is a programming error and raises ``ValueError``. Timeout
    and size limits may differ per call.

    Raises :class:`OutboundRefused`, :class:`FetchFailed` or :class:`TooLarge`.
    """
    resolver = _guarded_sessions.get(session)
    if resolver is None:
        raise ValueError("fetch_bytes needs a session from engine.outbound.make_session")
    session_policy = resolver.policy
    if (session_policy.allow_hosts, session_policy.allow_http) != (policy.allow_hosts, policy.allow_http):
        raise ValueError("the session was made for a different allow_hosts/allow_http policy")
    try:
        async with asyncio.timeout(policy.timeout_seconds):
            return await _fetch_following_redirects(session, url, policy)
    except TimeoutError:
        raise FetchFailed("timed out") from None


async def _fetch_following_redirects(
    session: aiohttp.ClientSession, url: str, policy: OutboundPolicy
) -> bytes:
    current = check_url(url, policy)
    hop_timeout = aiohttp.ClientTimeout(total=policy.timeout_seconds)
    redirects = 0
    while True:
        try:
            async with session.get(current, allow_redirects=False, timeout=hop_timeout) as response:
                if response.status in _REDIRECT_STATUSES:
                    location = response.headers.get("Location")
                    if not location:
                        raise FetchFailed(f"HTTP {response.status} without a Location")
                    redirects += 1
                    if redirects > policy.max_redirects:
                        raise FetchFailed("too many redirects")
                    try:
                        target = current.join(URL(location))
                    except (ValueError, TypeError, UnicodeError):
                        raise OutboundRefused("redirect to a malformed URL") from None
                    current = check_url(str(target), policy)
                    continue
                if not 200 <= response.status < 300:
                    raise FetchFailed(f"HTTP {response.status}")
                return await _read_capped(response, policy.max_bytes)
        except TimeoutError:
            # aiohttp's own per-hop timeouts; fetch_bytes enforces the overall deadline.
            raise FetchFailed("timed out") from None
        except aiohttp.ClientConnectorDNSError:
            raise FetchFailed("could not resolve host") from None
        except aiohttp.ClientSSLError:
            raise FetchFailed("TLS handshake failed") from None
        except aiohttp.ClientConnectorError:
            raise FetchFailed("connection failed") from None
        except aiohttp.ClientPayloadError:
            raise FetchFailed("response body was cut off or malformed") from None
        except aiohttp.InvalidURL:
            raise OutboundRefused("malformed URL") from None
        except aiohttp.ClientError:
            raise FetchFailed("connection error") from None


async def _read_capped(response: aiohttp.ClientResponse, max_bytes: int) -> bytes:
    """Read the body, refusing as soon as it is (or is announced to be) too big."""
    if response.content_length is not None and response.content_length > max_bytes:
        raise TooLarge(f"response announces {response.content_length} bytes")
    body = bytearray()
    async for chunk in response.content.iter_chunked(_CHUNK_SIZE):
        body += chunk
        if len(body) > max_bytes:
            raise TooLarge(f"response exceeds {max_bytes} bytes")
    return bytes(body)

"""Authentication: bearer token → :class:`~engine.access.Caller`, as a Litestar guard.

Every key belongs to exactly one dialect (FitInView keys ``fiv_live_…``/``fiv_test_…``,
FtmvAI keys 64 lowercase hex). A key used on the other dialect's routes is
unauthenticated there (401 in that route's shape), and so is an expired key (past its
``expires_at``) and a rotated-away secret after its grace period; a disabled key, and any key
of a suspended account, is 403. Keys are looked up by the SHA-256 of the token (see
:mod:`ledger.keys`).

GET and HEAD requests (polls, lists, account reads) take the key and its account from the
process's :class:`~engine.caller_cache.CallerCache` when it has them (no database read; every
check above still runs on each request); any other request (submits, purchases: money) reads
both from PostgreSQL and refreshes the cache. Each use is noted for ``last_used_at`` by the rate
limiter's Redis round trip that follows (:mod:`gateway.ratelimit`, :mod:`engine.key_usage`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.di import NamedDependency
from litestar.handlers.base import BaseRouteHandler
from litestar.types import Guard

from engine.access import Caller
from engine.errors import AccountSuspended, KeyDisabled, KeyExpired, NotFound, Unauthenticated
from engine.runtime import Runtime
from ledger.keys import dialect_of_token, hash_key


def raw_header(connection: ASGIConnection[Any, Any, Any, Any], name: bytes) -> str | None:
    """The first value of header ``name`` (lowercase bytes), read straight from the ASGI scope: a
    poll needs one or two headers, and building Litestar's ``Headers`` for them was a visible share
    of its CPU (issue 10). Same answer as ``connection.headers.get(name)``."""
    for key, value in connection.scope["headers"]:
        if key == name or key.lower() == name:
            return str(value.decode("latin-1"))
    return None


def bearer_token(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    header = raw_header(connection, b"authorization") or ""
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def pinned_dialect(
    connection: ASGIConnection[Any, Any, Any, Any], host_dialects: dict[str, str]
) -> str | None:
    """The dialect an operator pinned this request's host name to, if any."""
    if not host_dialects:
        return None
    host = (raw_header(connection, b"host") or "").split(":")[0].lower()
    return host_dialects.get(host)


CACHED_METHODS = frozenset({"GET", "HEAD"})
"""Requests that may authenticate from the in-process cache: reads, which move no money."""


async def resolve_caller(
    runtime: Runtime, token: str | None, dialect: str | None, *, cached: bool = False
) -> Caller:
    if token is None:
        raise Unauthenticated("Missing API key")
    token_dialect = dialect_of_token(token)
    if token_dialect is None or (dialect is not None and token_dialect != dialect):
        raise Unauthenticated("Invalid API key")
    token_hash = hash_key(token)
    cache = runtime.callers
    caller = cache.get(token_hash) if cached else None
    if caller is None:
        generation = cache.generation
        key = await runtime.ledger.key_for_token(token)
        if key is None:
            raise Unauthenticated("Invalid API key")
        caller = Caller(key=key, account=await runtime.ledger.account(key.account_id))
        cache.put(token_hash, caller, generation)
    key = caller.key
    if key.dialect != token_dialect:
        raise Unauthenticated("Invalid API key")
    if key.expires_at is not None and key.expires_at <= datetime.now(UTC):
        raise KeyExpired()
    if key.disabled:
        raise KeyDisabled("Key disabled")
    if caller.account.suspended:
        raise AccountSuspended()
    return caller


def authenticate(runtime: Runtime, dialect: str | None, host_dialects: dict[str, str]) -> Guard:
    """A guard that authenticates for ``dialect`` (None: any dialect) and stores the caller."""

    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        pinned = pinned_dialect(connection, host_dialects)
        if pinned is not None and dialect is not None and pinned != dialect:
            raise NotFound("Not Found")
        scope = connection.scope
        cached = scope.get("method") in CACHED_METHODS
        caller = await resolve_caller(runtime, bearer_token(connection), dialect or pinned, cached=cached)
        scope.setdefault("state", {})["caller"] = caller  # = connection.state.caller, without a State

    return guard


def one_guard(*guards: Guard) -> Guard:
    """``guards`` run in order as one Litestar guard: Litestar copies the route handler for each
    guard on each request, and that copy was a visible share of a poll (issue 10)."""

    async def guard(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
        for each in guards:
            outcome = each(connection, handler)
            if outcome is not None:
                await outcome

    return guard


def gate(*guards: Guard) -> Callable[[Request[Any, Any, Any]], Awaitable[None]]:
    """``guards`` run in order as a router's ``before_request`` hook rather than as its guard.

    Same checks, same order (before the handler's arguments are read; what they raise is answered
    by the route's exception handlers exactly as a guard's would be), but without the copy of the
    route handler Litestar makes for every guard of every request (``authorize_connection``), about
    6 µs of a poll (issue 10). A router gated this way has no route-level response cache, which
    would answer before ``before_request`` runs."""

    async def before_request(request: Request[Any, Any, Any]) -> None:
        handler = request.scope["route_handler"]
        for each in guards:
            outcome = each(request, handler)
            if outcome is not None:
                await outcome

    return before_request


def provide_caller(request: Request[Any, Any, Any], runtime: NamedDependency[Runtime]) -> Caller:
    """The guard's caller. It takes ``runtime`` (unused) so Litestar resolves it after ``runtime``
    instead of beside it: providers resolved side by side cost a task group per request."""
    caller: Caller = request.state.caller
    return caller

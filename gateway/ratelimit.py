"""Per-key rate limits kept in Redis, so every gateway process counts together.

Fixed windows: one counter per key, limit class and window start, incremented
atomically (INCR + EXPIRE in one MULTI). A route declares what it counts
against with ``opt={"rate": …}``: ``submit`` (what costs: try-on submits and
purchases, ``TRYON_RATE_LIMIT_PER_MIN``) or ``read`` (polls and account reads,
``TRYON_READ_RATE_LIMIT_PER_MIN``), so polling never starves submits.
"""

from __future__ import annotations

import math
import time
from typing import Any

import msgspec
import redis.asyncio as aioredis
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.types import Guard
from redis.exceptions import RedisError

from engine.access import Caller, RateVerdict
from engine.errors import RateLimited, ServiceUnavailable


class Window(msgspec.Struct, frozen=True, kw_only=True):
    scope: str
    limit: int
    seconds: int


async def hit(
    redis: aioredis.Redis, namespace: str, subject: str, window: Window, *, now: float | None = None
) -> RateVerdict:
    """Count one request in ``window`` for ``subject``; raise RateLimited if it is over."""
    now = time.time() if now is None else now
    start = int(now // window.seconds) * window.seconds
    reset = start + window.seconds
    key = f"{namespace}:rl:{window.scope}:{subject}:{start}"
    try:
        async with redis.pipeline(transaction=True) as pipe:
            pipe.incr(key)
            pipe.expire(key, window.seconds + 5)
            count, _ = await pipe.execute()
    except RedisError as exc:
        raise ServiceUnavailable("Rate limiter unavailable") from exc
    if count > window.limit:
        raise RateLimited(
            retry_after=max(1, math.ceil(reset - now)), limit=window.limit, reset=reset, scope=window.scope
        )
    return RateVerdict(limit=window.limit, remaining=window.limit - count, reset=reset, scope=window.scope)


def per_key_limits(redis: aioredis.Redis, namespace: str, windows: dict[str, Window]) -> Guard:
    """A guard applying the window named by the route's ``opt["rate"]`` to the authenticated key."""

    async def guard(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
        rate = handler.opt.get("rate")
        if rate is None:
            return
        caller: Caller = connection.state.caller
        connection.state.rate_verdict = await hit(redis, namespace, str(caller.key.id), windows[rate])

    return guard

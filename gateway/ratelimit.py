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
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import msgspec
import redis.asyncio as aioredis
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.types import Guard
from redis.exceptions import RedisError

from engine import metrics
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
        with counted(caller.dialect):
            connection.state.rate_verdict = await hit(redis, namespace, str(caller.key.id), windows[rate])

    return guard


@contextmanager
def counted(dialect: str) -> Iterator[None]:
    """Count a refusal by a rate limit (``tryon_rate_limited_total``) as it passes through."""
    try:
        yield
    except RateLimited as exc:
        metrics.rate_limited(dialect=dialect, scope=exc.scope)
        raise


# FtmvAI plans -------------------------------------------------------------------------
class Plan(msgspec.Struct, frozen=True, kw_only=True):
    """Order creations per UTC hour and day, and orders in progress at once, per account."""

    per_hour: int
    per_day: int
    concurrent: int


PLANS: dict[str, Plan] = {
    "free": Plan(per_hour=10, per_day=50, concurrent=1),
    "paid": Plan(per_hour=100, per_day=1000, concurrent=5),
}

HOUR = 3600
DAY = 86_400


class OrderReservation(msgspec.Struct, frozen=True, kw_only=True):
    """Counter keys incremented for an order being created; released if it is not created."""

    keys: tuple[str, ...]


def _order_windows(namespace: str, account_id: int, plan: Plan, now: float) -> list[tuple[str, Window, int]]:
    windows = []
    for scope, limit, seconds in (("hour", plan.per_hour, HOUR), ("day", plan.per_day, DAY)):
        start = int(now // seconds) * seconds  # fixed UTC windows: epoch multiples
        windows.append(
            (
                f"{namespace}:orders:{scope}:{account_id}:{start}",
                Window(scope=scope, limit=limit, seconds=seconds),
                start,
            )
        )
    return windows


def _closest(verdicts: list[RateVerdict]) -> RateVerdict:
    """The window closest to running out (fewest remaining; then the soonest reset)."""
    return min(verdicts, key=lambda verdict: (verdict.remaining, verdict.reset))


async def reserve_order(
    redis: aioredis.Redis, namespace: str, account_id: int, plan: Plan, *, now: float | None = None
) -> tuple[RateVerdict, OrderReservation]:
    """Count one order creation in the hour and day windows, or refuse it (nothing counted)."""
    now = time.time() if now is None else now
    windows = _order_windows(namespace, account_id, plan, now)
    try:
        async with redis.pipeline(transaction=True) as pipe:
            for key, window, _ in windows:
                pipe.incr(key)
                pipe.expire(key, window.seconds + 60)
            results = await pipe.execute()
    except RedisError as exc:
        raise ServiceUnavailable("Rate limiter unavailable") from exc
    counts = results[0::2]
    verdicts = [
        RateVerdict(
            limit=window.limit,
            remaining=max(window.limit - count, 0),
            reset=start + window.seconds,
            scope=window.scope,
        )
        for (_, window, start), count in zip(windows, counts, strict=True)
    ]
    reservation = OrderReservation(keys=tuple(key for key, _, _ in windows))
    exceeded = [verdict for verdict, count in zip(verdicts, counts, strict=True) if count > verdict.limit]
    if exceeded:
        await release_order(redis, reservation)
        worst = max(exceeded, key=lambda verdict: verdict.reset)
        raise RateLimited(
            retry_after=max(1, math.ceil(worst.reset - now)),
            limit=worst.limit,
            reset=worst.reset,
            scope=worst.scope,
        )
    return _closest(verdicts), reservation


async def release_order(redis: aioredis.Redis, reservation: OrderReservation) -> None:
    try:
        async with redis.pipeline(transaction=True) as pipe:
            for key in reservation.keys:
                pipe.decr(key)
            await pipe.execute()
    except RedisError:
        pass  # the windows expire on their own; at worst one order too few this hour


async def peek_orders(
    redis: aioredis.Redis, namespace: str, account_id: int, plan: Plan, *, now: float | None = None
) -> list[RateVerdict]:
    now = time.time() if now is None else now
    windows = _order_windows(namespace, account_id, plan, now)
    try:
        counts = await redis.mget([key for key, _, _ in windows])
    except RedisError as exc:
        raise ServiceUnavailable("Rate limiter unavailable") from exc
    return [
        RateVerdict(
            limit=window.limit,
            remaining=max(window.limit - int(count or 0), 0),
            reset=start + window.seconds,
            scope=window.scope,
        )
        for (_, window, start), count in zip(windows, counts, strict=True)
    ]


def plan_limits(redis: aioredis.Redis, namespace: str, read_window: Window) -> Guard:
    """FtmvAI's limits: order creations per plan (``opt["rate"] == "order"``) or polls (``"read"``).

    Stores the verdict of the window closest to running out in ``state.rate_verdict`` (the
    dialect renders it as ``X-RateLimit-*``) and, for an order, the reservation that
    :func:`release_reserved_order` gives back if the order is not created.
    """

    async def guard(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
        await apply_plan_limits(redis, namespace, read_window, connection, handler.opt.get("rate"))

    return guard


async def apply_plan_limits(
    redis: aioredis.Redis,
    namespace: str,
    read_window: Window,
    connection: ASGIConnection[Any, Any, Any, Any],
    rate: str | None,
) -> None:
    caller: Caller = connection.state.caller
    plan = PLANS[caller.account.plan]
    if rate == "order":
        with counted(caller.dialect):
            verdict, reservation = await reserve_order(redis, namespace, caller.account.id, plan)
        connection.state.order_reservation = reservation
        connection.state.rate_verdict = verdict
        return
    verdicts = await peek_orders(redis, namespace, caller.account.id, plan)
    if rate == "read":
        with counted(caller.dialect):
            verdicts.append(await hit(redis, namespace, str(caller.key.id), read_window))
    connection.state.rate_verdict = _closest(verdicts)


def release_reserved_order(redis: aioredis.Redis) -> Any:
    """An ``after_exception`` hook: an order that raised was not created, so it does not count."""

    async def hook(_: BaseException, scope: Any) -> None:
        state = scope.get("state") or {}
        reservation = state.pop("order_reservation", None)
        if isinstance(reservation, OrderReservation):
            await release_order(redis, reservation)

    return hook

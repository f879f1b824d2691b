"""Rate limits kept in Redis, so every gateway process counts together, in ONE round trip.

Fixed windows: one counter per subject, limit class and window start. A route declares what it
counts against with ``opt={"rate": …}``: ``submit`` (what costs: try-on submits and purchases,
``TRYON_RATE_LIMIT_PER_MIN``) or ``read`` (polls and account reads,
``TRYON_READ_RATE_LIMIT_PER_MIN``), so polling never starves submits; FtmvAI adds its plans'
hourly and daily order windows (``order``).

Everything a request does in Redis before its handler runs — counting its windows, reading the
plan windows it reports in ``X-RateLimit-*``, and noting the key's use for ``last_used_at``
(:mod:`engine.key_usage`) — is one Lua script (:data:`SCRIPT`, sent as ``EVALSHA``), so a poll
costs one Redis round trip, and the script runs atomically (an order's hour and day windows
are checked and counted together: a refused order counts in neither).
"""

from __future__ import annotations

import hashlib
import math
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import msgspec
import redis.asyncio as aioredis
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.types import Guard
from redis.exceptions import NoScriptError, RedisError

from engine import key_usage, metrics
from engine.access import Caller, RateVerdict
from engine.coalesce import TurnBatch
from engine.errors import RateLimited, ServiceUnavailable


class Window(msgspec.Struct, frozen=True, kw_only=True):
    scope: str
    limit: int
    seconds: int


SCRIPT = """
-- KEYS[1]: the hash of noted key uses; KEYS[2 .. 1+n]: counters to count; the rest: counters to read.
-- ARGV[1]: the key id to note ('' for none); ARGV[2]: now (unix seconds); ARGV[3]: n;
-- ARGV[4]: '1' = all or nothing (count none if any would pass its limit; answer count + 1 then);
-- ARGV[5 .. 4+n]: the counters' limits; ARGV[5+n .. 4+2n]: their expiries in seconds.
if ARGV[1] ~= '' then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end
local n = tonumber(ARGV[3])
local refuse = false
if ARGV[4] == '1' then
  for i = 1, n do
    if tonumber(redis.call('GET', KEYS[1 + i]) or '0') >= tonumber(ARGV[4 + i]) then refuse = true end
  end
end
local counts = {}
for i = 1, n do
  if refuse then
    counts[i] = tonumber(redis.call('GET', KEYS[1 + i]) or '0') + 1
  else
    counts[i] = redis.call('INCR', KEYS[1 + i])
    redis.call('EXPIRE', KEYS[1 + i], ARGV[4 + n + i])
  end
end
for i = 2 + n, #KEYS do
  counts[#counts + 1] = tonumber(redis.call('GET', KEYS[i]) or '0')
end
return counts
"""
SCRIPT_SHA = hashlib.sha1(SCRIPT.encode()).hexdigest()


class Counter(msgspec.Struct, frozen=True, kw_only=True):
    key: str
    window: Window
    start: int
    expire: int

    @property
    def reset(self) -> int:
        return self.start + self.window.seconds


def _counter(name: str, window: Window, now: float, *, slack: int) -> Counter:
    start = int(now // window.seconds) * window.seconds  # fixed UTC windows: epoch multiples
    return Counter(key=f"{name}:{start}", window=window, start=start, expire=window.seconds + slack)


async def round_trip(
    redis: aioredis.Redis,
    namespace: str,
    *,
    note_key_id: int | None,
    count: list[Counter],
    read: list[Counter],
    all_or_nothing: bool = False,
    now: float,
) -> list[int]:
    """Run :data:`SCRIPT`: the counts of ``count`` after counting, then those of ``read``."""
    keys = [key_usage.hash_name(namespace), *(c.key for c in count), *(c.key for c in read)]
    args: list[Any] = [
        "" if note_key_id is None else str(note_key_id),
        str(int(now)),
        str(len(count)),
        "1" if all_or_nothing else "0",
        *(str(c.window.limit) for c in count),
        *(str(c.expire) for c in count),
    ]
    command = ("EVALSHA", SCRIPT_SHA, len(keys), *keys, *args)
    try:
        try:
            result = await _scripts_for(redis)(command)
        except NoScriptError:  # a fresh (or flushed) Redis: load it once, then it is cached there
            await redis.script_load(SCRIPT)
            result = await redis.execute_command(*command)  # type: ignore[no-untyped-call]
    except RedisError as exc:
        raise ServiceUnavailable("Rate limiter unavailable") from exc
    return [int(value) for value in result]


def _scripts_for(redis: aioredis.Redis) -> TurnBatch[tuple[Any, ...], Any]:
    """The client's :class:`~engine.coalesce.TurnBatch` of EVALSHAs: a turn's scripts go as one
    pipeline (no MULTI: each script is atomic by itself, as before; each request still makes one
    Redis round trip, shared), a lone one as its own EVALSHA."""
    batch = _script_batches.get(redis)
    if batch is None:

        async def alone(command: tuple[Any, ...]) -> Any:
            return await redis.execute_command(*command)  # type: ignore[no-untyped-call]

        async def together(commands: list[tuple[Any, ...]]) -> list[Any]:
            async with redis.pipeline(transaction=False) as pipe:
                for command in commands:
                    pipe.execute_command(*command)
                answers: list[Any] = await pipe.execute(raise_on_error=False)
            return answers

        batch = _script_batches[redis] = TurnBatch(alone, together)
    return batch


_script_batches: weakref.WeakKeyDictionary[aioredis.Redis, TurnBatch[tuple[Any, ...], Any]] = (
    weakref.WeakKeyDictionary()
)


def _verdict(counter: Counter, count: int) -> RateVerdict:
    window = counter.window
    return RateVerdict(
        limit=window.limit, remaining=max(window.limit - count, 0), reset=counter.reset, scope=window.scope
    )


def _refusal(counter: Counter, now: float) -> RateLimited:
    return RateLimited(
        retry_after=max(1, math.ceil(counter.reset - now)),
        limit=counter.window.limit,
        reset=counter.reset,
        scope=counter.window.scope,
    )


def _key_counter(namespace: str, subject: str, window: Window, now: float) -> Counter:
    return _counter(f"{namespace}:rl:{window.scope}:{subject}", window, now, slack=5)


async def hit(
    redis: aioredis.Redis,
    namespace: str,
    subject: str,
    window: Window,
    *,
    now: float | None = None,
    note_key_id: int | None = None,
) -> RateVerdict:
    """Count one request in ``window`` for ``subject``; raise RateLimited if it is over."""
    now = time.time() if now is None else now
    counter = _key_counter(namespace, subject, window, now)
    (count,) = await round_trip(redis, namespace, note_key_id=note_key_id, count=[counter], read=[], now=now)
    if count > window.limit:
        raise _refusal(counter, now)
    return RateVerdict(
        limit=window.limit, remaining=window.limit - count, reset=counter.reset, scope=window.scope
    )


async def note_use(redis: aioredis.Redis, namespace: str, key_id: int) -> None:
    """A route that counts against no window still notes its key's use (same script, one trip)."""
    await round_trip(redis, namespace, note_key_id=key_id, count=[], read=[], now=time.time())


def per_key_limits(redis: aioredis.Redis, namespace: str, windows: dict[str, Window]) -> Guard:
    """A guard applying the window named by the route's ``opt["rate"]`` to the authenticated key."""

    async def guard(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
        state = connection.scope["state"]  # what connection.state wraps, without a State per access
        caller: Caller = state["caller"]
        rate = handler.opt.get("rate")
        if rate is None:
            await note_use(redis, namespace, caller.key.id)
            return
        with counted(caller.dialect):
            state["rate_verdict"] = await hit(
                redis, namespace, str(caller.key.id), windows[rate], note_key_id=caller.key.id
            )

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


def _order_counters(namespace: str, account_id: int, plan: Plan, now: float) -> list[Counter]:
    return [
        _counter(
            f"{namespace}:orders:{scope}:{account_id}",
            Window(scope=scope, limit=limit, seconds=seconds),
            now,
            slack=60,
        )
        for scope, limit, seconds in (("hour", plan.per_hour, HOUR), ("day", plan.per_day, DAY))
    ]


def _closest(verdicts: list[RateVerdict]) -> RateVerdict:
    """The window closest to running out (fewest remaining; then the soonest reset)."""
    return min(verdicts, key=lambda verdict: (verdict.remaining, verdict.reset))


async def reserve_order(
    redis: aioredis.Redis,
    namespace: str,
    account_id: int,
    plan: Plan,
    *,
    now: float | None = None,
    note_key_id: int | None = None,
) -> tuple[RateVerdict, OrderReservation]:
    """Count one order creation in the hour and day windows, or refuse it (nothing counted)."""
    now = time.time() if now is None else now
    counters = _order_counters(namespace, account_id, plan, now)
    counts = await round_trip(
        redis, namespace, note_key_id=note_key_id, count=counters, read=[], all_or_nothing=True, now=now
    )
    exceeded = [
        counter for counter, count in zip(counters, counts, strict=True) if count > counter.window.limit
    ]
    if exceeded:
        raise _refusal(max(exceeded, key=lambda counter: counter.reset), now)
    verdicts = [_verdict(counter, count) for counter, count in zip(counters, counts, strict=True)]
    return _closest(verdicts), OrderReservation(keys=tuple(counter.key for counter in counters))


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
    counters = _order_counters(namespace, account_id, plan, now)
    counts = await round_trip(redis, namespace, note_key_id=None, count=[], read=counters, now=now)
    return [_verdict(counter, count) for counter, count in zip(counters, counts, strict=True)]


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
    state = connection.scope["state"]  # what connection.state wraps, without a State per access
    caller: Caller = state["caller"]
    plan = PLANS[caller.account.plan]
    key_id = caller.key.id
    if rate == "order":
        with counted(caller.dialect):
            verdict, reservation = await reserve_order(
                redis, namespace, caller.account.id, plan, note_key_id=key_id
            )
        state["order_reservation"] = reservation
        state["rate_verdict"] = verdict
        return
    now = time.time()
    orders = _order_counters(namespace, caller.account.id, plan, now)
    reads = [_key_counter(namespace, str(key_id), read_window, now)] if rate == "read" else []
    counts = await round_trip(redis, namespace, note_key_id=key_id, count=reads, read=orders, now=now)
    verdicts = [_verdict(counter, count) for counter, count in zip(orders, counts[len(reads) :], strict=True)]
    if reads:
        if counts[0] > read_window.limit:
            metrics.rate_limited(dialect=caller.dialect, scope=read_window.scope)
            raise _refusal(reads[0], now)
        verdicts.append(_verdict(reads[0], counts[0]))
    state["rate_verdict"] = _closest(verdicts)


def release_reserved_order(redis: aioredis.Redis) -> Any:
    """An ``after_exception`` hook: an order that raised was not created, so it does not count."""

    async def hook(_: BaseException, scope: Any) -> None:
        state = scope.get("state") or {}
        reservation = state.pop("order_reservation", None)
        if isinstance(reservation, OrderReservation):
            await release_order(redis, reservation)

    return hook

"""Plan windows in Redis: fixed UTC hours and days, reservations given back, closest window wins."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from engine import key_usage
from engine.errors import RateLimited
from gateway.ratelimit import Plan, Window, hit, peek_orders, release_order, reserve_order

NOON = 1_767_225_600 + 12 * 3600 + 17 * 60  # 2026-01-01 12:17:00 UTC


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(redis_url)
    yield client
    await client.aclose()


async def test_daily_window_runs_out_before_the_hourly_one(redis: aioredis.Redis) -> None:
    namespace = "rl-" + secrets.token_hex(4)
    plan = Plan(per_hour=100, per_day=3, concurrent=5)
    remaining = []
    for _ in range(3):
        verdict, _ = await reserve_order(redis, namespace, 7, plan, now=NOON)
        remaining.append((verdict.scope, verdict.remaining))
    assert remaining == [("day", 2), ("day", 1), ("day", 0)]
    with pytest.raises(RateLimited) as refused:
        await reserve_order(redis, namespace, 7, plan, now=NOON)
    midnight = NOON - NOON % 86_400 + 86_400
    assert (refused.value.scope, refused.value.reset) == ("day", midnight)
    assert refused.value.retry_after == midnight - NOON
    # the refused attempt counted nothing; a new UTC day starts afresh
    assert [v.remaining for v in await peek_orders(redis, namespace, 7, plan, now=NOON)] == [97, 0]
    verdict, _ = await reserve_order(redis, namespace, 7, plan, now=midnight + 5)
    assert verdict.remaining == 2


async def test_hourly_window_is_a_fixed_utc_hour(redis: aioredis.Redis) -> None:
    namespace = "rl-" + secrets.token_hex(4)
    plan = Plan(per_hour=2, per_day=50, concurrent=1)
    await reserve_order(redis, namespace, 1, plan, now=NOON)
    verdict, reservation = await reserve_order(redis, namespace, 1, plan, now=NOON + 60)
    assert (verdict.scope, verdict.remaining, verdict.reset) == ("hour", 0, NOON - NOON % 3600 + 3600)
    with pytest.raises(RateLimited):
        await reserve_order(redis, namespace, 1, plan, now=NOON + 120)
    await release_order(redis, reservation)
    verdict, _ = await reserve_order(redis, namespace, 1, plan, now=NOON + 180)
    assert verdict.remaining == 0
    fresh, _ = await reserve_order(redis, namespace, 1, plan, now=NOON - NOON % 3600 + 3600)
    assert fresh.scope == "hour" and fresh.remaining == 1


async def test_one_script_counts_reads_the_plan_windows_and_notes_the_key(redis: aioredis.Redis) -> None:
    namespace = "rl-" + secrets.token_hex(4)
    window = Window(scope="read", limit=2, seconds=60)
    first = await hit(redis, namespace, "9", window, now=NOON, note_key_id=9)
    assert (first.remaining, first.reset) == (1, NOON - NOON % 60 + 60)
    assert await redis.hgetall(key_usage.hash_name(namespace)) == {b"9": str(NOON).encode()}
    await hit(redis, namespace, "9", window, now=NOON + 1)
    with pytest.raises(RateLimited) as refused:
        await hit(redis, namespace, "9", window, now=NOON + 2)
    assert (refused.value.scope, refused.value.retry_after) == ("read", 58)

    # An order refused by its hour window is counted in neither window, but its key's use is noted.
    plan = Plan(per_hour=1, per_day=50, concurrent=1)
    await reserve_order(redis, namespace, 3, plan, now=NOON, note_key_id=30)
    with pytest.raises(RateLimited):
        await reserve_order(redis, namespace, 3, plan, now=NOON + 5, note_key_id=31)
    assert [v.remaining for v in await peek_orders(redis, namespace, 3, plan, now=NOON)] == [0, 49]
    assert b"31" in await redis.hgetall(key_usage.hash_name(namespace))

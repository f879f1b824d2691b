"""``api_keys.last_used_at``, kept cheaply: no extra Redis round trip per request, one UPDATE per sweep.

Writing the row on every authenticated request would turn every read (``GET /api/v1/tryon/…``
polls many times a second per integrator) into a row update, a WAL record and a dead tuple
on the hottest lookup table. Instead each request does one ``HSET`` of
``<namespace>:keys:last-used`` (field = key id, value = unix seconds: a later use of the same
key overwrites it, so the hash holds at most one field per key in use) inside the rate limiter's
script, in the same round trip as the request's limits (:mod:`gateway.ratelimit`; :func:`note_use`
is the same write on its own), and the sweeper calls
:func:`flush` every ``TRYON_SWEEP_INTERVAL_SECONDS``: it takes the hash away atomically
(``RENAME`` to a per-flush name, then ``HGETALL`` and ``DEL``) and moves ``last_used_at``
forward for all those keys in one statement. ``last_used_at`` therefore lags by at most a
sweep interval; a lost Redis (or a crash between the rename and the UPDATE) loses some of
those timestamps, never a request.
"""

from __future__ import annotations

import logging
import secrets
import time
from datetime import UTC, datetime

from redis.exceptions import RedisError, ResponseError

from engine.runtime import Runtime

log = logging.getLogger(__name__)


def hash_name(namespace: str) -> str:
    """The hash of noted uses; the rate limiter's script writes it in the request's one Redis
    round trip (``gateway.ratelimit``), :func:`note_use` outside of it."""
    return f"{namespace}:keys:last-used"


def _hash_name(runtime: Runtime) -> str:
    return hash_name(runtime.config.redis_namespace)


async def note_use(runtime: Runtime, key_id: int) -> None:
    """Remember that ``key_id`` authenticated now (never fails the request)."""
    try:
        await runtime.redis.hset(_hash_name(runtime), str(key_id), str(int(time.time())))
    except RedisError:
        log.warning("could not note the use of key %d", key_id)


async def pending(runtime: Runtime) -> dict[int, int]:
    """Uses noted but not yet flushed: key id → unix seconds (for ops and tests)."""
    raw = await runtime.redis.hgetall(_hash_name(runtime))
    return {int(key): int(value) for key, value in raw.items()}


async def flush(runtime: Runtime) -> int:
    """Write the noted uses to ``api_keys.last_used_at``; returns how many rows moved forward.

    Safe beside other sweepers: each flush renames the hash to its own name first, so two
    flushes never read the same entries (the loser of the race finds no hash and does nothing).
    """
    source = _hash_name(runtime)
    taken = f"{source}:flushing:{secrets.token_hex(6)}"
    try:
        await runtime.redis.rename(source, taken)
    except ResponseError:  # no such key: nothing was used since the last flush
        return 0
    except RedisError:
        log.warning("could not take the noted key uses from Redis; trying again next sweep")
        return 0
    moved = 0
    try:
        raw = await runtime.redis.hgetall(taken)
        ids = [int(key) for key in raw]
        used_at = [datetime.fromtimestamp(int(value), UTC) for value in raw.values()]
        async with runtime.db.transaction():
            moved = await runtime.accounts.record_key_uses(ids, used_at)
    except Exception:
        log.exception("could not write %s to api_keys.last_used_at; those uses are dropped", taken)
    finally:
        try:
            await runtime.redis.delete(taken)
        except RedisError:
            log.warning("could not delete %s", taken)
    return moved

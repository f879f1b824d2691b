"""Who a bearer token is, remembered in-process for a few seconds and forgotten everywhere at once.

Authenticating from PostgreSQL costs two reads per request (the key by its hash, then its
account), which dominated a poll (issue 10). Each API process therefore keeps the
:class:`~engine.access.Caller` it last resolved for a token's SHA-256 for
``TRYON_AUTH_CACHE_SECONDS`` (5 s by default). Every check the gateway makes (dialect, expiry,
disabled, suspended) still runs on each request, against the remembered key and account.

Correctness does not rest on the TTL: whoever changes a key or an account (disable, enable,
rotate, suspend, plan or prices, erase) calls :meth:`CallerCache.invalidate` *after* its
transaction commits; that publishes ``key:<id>`` or ``account:<id>`` on
``<namespace>:auth-changed`` and every API process, holding ONE subscription (the pattern of
:mod:`engine.completion`), drops the entries of that key or account as the message arrives —
well inside the 1 s a disabled key has to be refused everywhere. The TTL only bounds what a lost
message could cost. Three rules keep a stale entry from surviving a message:

* while the process is not subscribed (starting, or the subscription dropped) nothing is
  served from the cache or stored in it, and a (re)subscription empties it: messages published
  meanwhile are unknown;
* each invalidation bumps a generation; a database read that began before it is not stored
  (it may have read the row as it was before the change committed);
* an entry lives no longer than the key's ``expires_at`` or a rotation's grace end.

Money is never decided from the cache: balances are read from the database where they matter,
and requests other than GET/HEAD authenticate from the database (``gateway.auth``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable

import msgspec
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from engine.access import Caller

log = logging.getLogger(__name__)

MAX_ENTRIES = 10_000
"""Tokens remembered per process at most (the oldest entry goes first beyond it)."""
PING_AFTER_SECONDS = 5.0
"""A silent subscription is pinged after this long; no answer within another such spell is a
dead one (a half-open TCP connection never errors on its own)."""


def channel_name(namespace: str) -> str:
    return f"{namespace}:auth-changed"


class _Entry(msgspec.Struct, frozen=True):
    caller: Caller
    until: float
    """Unix seconds after which the entry is not served."""


class CallerCache:
    def __init__(
        self, redis: aioredis.Redis, namespace: str, *, ttl_seconds: float, reconnect_delay: float = 0.5
    ) -> None:
        self._redis = redis
        self._channel = channel_name(namespace)
        self._ttl = ttl_seconds
        self._entries: dict[str, _Entry] = {}
        self._generation = 0
        self._subscribed = False
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._reconnect_delay = reconnect_delay

    # the request path ----------------------------------------------------------------------
    @property
    def generation(self) -> int:
        """Take it before a database read; pass it to :meth:`put` with what was read."""
        return self._generation

    def get(self, token_hash: str) -> Caller | None:
        if not self._subscribed:
            return None
        entry = self._entries.get(token_hash)
        if entry is None:
            return None
        if entry.until <= time.time():
            self._entries.pop(token_hash, None)
            return None
        return entry.caller

    def put(self, token_hash: str, caller: Caller, generation: int) -> None:
        """Remember ``caller`` for the token, unless an invalidation arrived since ``generation``."""
        if not self._subscribed or self._ttl <= 0 or generation != self._generation:
            return
        now = time.time()
        until = now + self._ttl
        for moment in (caller.key.expires_at, caller.key.previous_key_expires_at):
            if moment is not None and moment.timestamp() > now:
                until = min(until, moment.timestamp())
        if len(self._entries) >= MAX_ENTRIES and token_hash not in self._entries:
            self._entries.pop(next(iter(self._entries)))
        self._entries[token_hash] = _Entry(caller=caller, until=until)

    def __len__(self) -> int:
        return len(self._entries)

    # invalidation ------------------------------------------------------------------------
    async def invalidate(self, *, key_ids: Iterable[int] = (), account_ids: Iterable[int] = ()) -> None:
        """Forget these keys and accounts in every API process. Call it after the change commits.

        Best effort: if Redis is unreachable the other processes' subscriptions are down too
        (they serve nothing from their caches then) or, at worst, an entry lives out its TTL.
        """
        messages = [f"key:{key_id}" for key_id in key_ids] + [f"account:{aid}" for aid in account_ids]
        for message in messages:
            self._forget(message)
        try:
            for message in messages:
                await self._redis.publish(self._channel, message)
        except RedisError:
            log.warning("could not publish %s; other processes forget it within their cache TTL", messages)

    def _forget(self, message: str) -> None:
        self._generation += 1
        kind, _, raw = message.partition(":")
        if kind not in ("key", "account") or not raw.isdecimal():
            self._entries.clear()
            return
        target = int(raw)
        stale = [
            token_hash
            for token_hash, entry in self._entries.items()
            if (entry.caller.key.id if kind == "key" else entry.caller.account.id) == target
        ]
        for token_hash in stale:
            del self._entries[token_hash]

    def _reset(self) -> None:
        self._generation += 1
        self._entries.clear()

    # the subscription ----------------------------------------------------------------------
    async def start(self) -> None:
        if self._task is None and self._ttl > 0:
            self._task = asyncio.create_task(self._listen(), name="caller-cache")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ready.wait(), timeout=5)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._subscribed = False
        self._reset()

    async def _listen(self) -> None:
        while True:
            pubsub = self._redis.pubsub()
            try:
                await pubsub.subscribe(self._channel)
                await self._confirmed(pubsub)
                self._reset()  # anything published before the confirmation is unknown
                self._subscribed = True
                self._ready.set()
                await self._receive(pubsub)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError, TimeoutError) as exc:
                log.warning("auth-changed subscription lost (%s); serving from the database", exc)
            finally:
                self._subscribed = False
                self._reset()
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            await asyncio.sleep(self._reconnect_delay)

    @staticmethod
    async def _confirmed(pubsub: aioredis.client.PubSub) -> None:
        """Wait for Redis to confirm the subscription: only from then on no message is missed."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        while loop.time() < deadline:
            message = await pubsub.get_message(timeout=1.0)
            if message is not None and message.get("type") == "subscribe":
                return
        raise TimeoutError("no subscription confirmation")

    async def _receive(self, pubsub: aioredis.client.PubSub) -> None:
        loop = asyncio.get_running_loop()
        heard = loop.time()
        pinged = False
        while True:
            message = await pubsub.get_message(timeout=1.0)
            if message is None:
                silent = loop.time() - heard
                if silent > 2 * PING_AFTER_SECONDS:
                    raise TimeoutError("the subscription stopped answering")
                if silent > PING_AFTER_SECONDS and not pinged:
                    await pubsub.ping()
                    pinged = True
                continue
            heard, pinged = loop.time(), False
            if message.get("type") != "message":
                continue  # a pong
            data = message.get("data")
            if isinstance(data, bytes):
                data = data.decode()
            if isinstance(data, str):
                self._forget(data)

"""Job-finished events over Redis pub/sub, so sync waits never poll the database.

Workers publish a job's public id on one channel after the transaction that
finished it commits, followed by a payload (the finished job and the account's
balance, see :mod:`engine.execution`). Each API process keeps ONE subscription
and a table of waiting requests keyed by job id; a finished event wakes exactly
the requests waiting on that job and hands them the payload, so a woken waiter
needs no database read: when thousands of jobs finish at once, their waiters
are answered from the events instead of queueing for the connection pool. A
request waiting reads the job once before it starts waiting (the job may already
be done), and re-reads only when woken without a usable payload. If the
subscription drops, every waiter is woken to re-read, then the hub resubscribes,
so a lost event can at worst cost one extra read, never a hang.

Message format: ``<public_id>`` or ``<public_id>\n<payload>`` (older workers sent the
id alone; both are understood).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import TypeVar

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from engine import metrics

T = TypeVar("T")
log = logging.getLogger(__name__)


def channel_name(namespace: str) -> str:
    return f"{namespace}:job-finished"


async def publish_finished(
    redis: aioredis.Redis, namespace: str, public_id: str, payload: bytes | None = None
) -> None:
    """Tell every waiting API process that ``public_id`` finished (best effort), with ``payload``
    for its waiters (:meth:`CompletionHub.wait_until`'s ``from_event``)."""
    message = public_id.encode() if payload is None else public_id.encode() + b"\n" + payload
    try:
        await redis.publish(channel_name(namespace), message)
    except RedisError:
        log.warning("could not publish completion of %s; waiters fall back to their timeout", public_id)


class CompletionHub:
    def __init__(self, redis: aioredis.Redis, namespace: str, *, reconnect_delay: float = 0.5) -> None:
        self._redis = redis
        self._channel = channel_name(namespace)
        self._waiters: dict[str, set[asyncio.Future[bytes | None]]] = defaultdict(set)
        self._task: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()
        self._reconnect_delay = reconnect_delay
        self._draining = False

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._listen(), name="completion-hub")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._subscribed.wait(), timeout=5)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._wake_all()

    def drain(self) -> None:
        """The process is stopping: every waiter answers now with the job as it is (``running``
        for FitInView), and new waits return at once, so no held request is cut off."""
        self._draining = True
        self._wake_all()

    @property
    def waiting(self) -> int:
        return sum(len(futures) for futures in self._waiters.values())

    async def wait_until(
        self,
        public_id: str,
        *,
        read: Callable[[], Awaitable[T]],
        is_finished: Callable[[T], bool],
        timeout: float,
        from_event: Callable[[bytes], T | None] | None = None,
    ) -> T:
        """Return ``read()`` once it reports a finished job, or after ``timeout`` seconds.

        ``from_event`` turns a finished event's payload into the same value ``read()`` gives
        (None if it can't), so a waiter woken by its event returns without reading.
        """
        with metrics.sync_waiter():
            return await self._wait_until(
                public_id, read=read, is_finished=is_finished, timeout=timeout, from_event=from_event
            )

    async def _wait_until(
        self,
        public_id: str,
        *,
        read: Callable[[], Awaitable[T]],
        is_finished: Callable[[T], bool],
        timeout: float,
        from_event: Callable[[bytes], T | None] | None,
    ) -> T:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            future: asyncio.Future[bytes | None] = loop.create_future()
            self._waiters[public_id].add(future)
            try:
                value = await read()
                remaining = deadline - loop.time()
                if is_finished(value) or remaining <= 0 or self._draining:
                    return value
                payload: bytes | None = None
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(remaining):
                        payload = await future  # our own future: cancelling it on timeout is fine
                if payload is not None and from_event is not None:
                    event_value = from_event(payload)
                    if event_value is not None and is_finished(event_value):
                        return event_value
                if loop.time() >= deadline or self._draining:
                    return await read()
            finally:
                waiters = self._waiters.get(public_id)
                if waiters is not None:
                    waiters.discard(future)
                    if not waiters:
                        del self._waiters[public_id]

    def _wake(self, public_id: str, payload: bytes | None = None) -> None:
        for future in self._waiters.get(public_id, ()):
            if not future.done():
                future.set_result(payload)

    def _wake_all(self) -> None:
        for public_id in list(self._waiters):
            self._wake(public_id)

    async def _listen(self) -> None:
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self._channel)
                self._subscribed.set()
                # Anything published while we were not subscribed is unknown: re-read.
                self._wake_all()
                while True:
                    message = await pubsub.get_message(timeout=5.0)
                    if message is None:
                        continue
                    data = message.get("data")
                    if isinstance(data, str):
                        data = data.encode()
                    if isinstance(data, bytes):
                        head, _, payload = data.partition(b"\n")
                        self._wake(head.decode(errors="replace"), payload or None)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                log.warning("completion subscription lost (%s); resubscribing", exc)
                self._subscribed.clear()
                self._wake_all()
                await asyncio.sleep(self._reconnect_delay)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]

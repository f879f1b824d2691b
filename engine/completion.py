"""Job-finished events over Redis pub/sub, so sync waits never poll the database.

Workers publish a job's public id on one channel after the transaction that
finished it commits. Each API process keeps ONE subscription and a table of
waiting requests keyed by job id; a finished event wakes exactly the requests
waiting on that job. A request waiting reads the job from the database once
before it starts waiting (the job may already be done) and once per wake-up.
If the subscription drops, every waiter is woken to re-read, then the hub
resubscribes, so a lost event can at worst cost one extra read, never a hang.
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


async def publish_finished(redis: aioredis.Redis, namespace: str, public_id: str) -> None:
    """Tell every waiting API process that ``public_id`` finished (best effort)."""
    try:
        await redis.publish(channel_name(namespace), public_id)
    except RedisError:
        log.warning("could not publish completion of %s; waiters fall back to their timeout", public_id)


class CompletionHub:
    def __init__(self, redis: aioredis.Redis, namespace: str, *, reconnect_delay: float = 0.5) -> None:
        self._redis = redis
        self._channel = channel_name(namespace)
        self._waiters: dict[str, set[asyncio.Future[None]]] = defaultdict(set)
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
    ) -> T:
        """Return ``read()`` once it reports a finished job, or after ``timeout`` seconds."""
        with metrics.sync_waiter():
            return await self._wait_until(public_id, read=read, is_finished=is_finished, timeout=timeout)

    async def _wait_until(
        self,
        public_id: str,
        *,
        read: Callable[[], Awaitable[T]],
        is_finished: Callable[[T], bool],
        timeout: float,
    ) -> T:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            future: asyncio.Future[None] = loop.create_future()
            self._waiters[public_id].add(future)
            try:
                value = await read()
                remaining = deadline - loop.time()
                if is_finished(value) or remaining <= 0 or self._draining:
                    return value
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(future), timeout=remaining)
                if loop.time() >= deadline or self._draining:
                    return await read()
            finally:
                waiters = self._waiters.get(public_id)
                if waiters is not None:
                    waiters.discard(future)
                    if not waiters:
                        del self._waiters[public_id]

    def _wake(self, public_id: str) -> None:
        for future in self._waiters.get(public_id, ()):
            if not future.done():
                future.set_result(None)

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
                    if isinstance(data, bytes):
                        data = data.decode()
                    if isinstance(data, str):
                        self._wake(data)
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

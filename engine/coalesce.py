"""Requests of one event-loop turn that need the same kind of answer, sent as one operation.

Under load many polls reach the same step (their rate-limit script, their job read) in the same
turn of the event loop. Each one's own round trip costs a pooled connection, a write, a wake-up
for the answer and the protocol work on both ends, here and in Redis or PostgreSQL, on the same
few cores (issue 10). :class:`TurnBatch` lets them share one: the first call of a turn yields
once (``sleep(0)``) while the others that are ready join it; alone, it runs the single operation
exactly as before (``alone``), so a quiet gateway sends what it always sent; with company, all of
them go as one (``together``) and each caller gets its own answer or its own error.

``together`` runs as a task of its own: a caller that is cancelled while it waits (its client
went away) takes nothing from the others. An error of the whole operation (an outage) is every
caller's error, as it would have been for each alone. Nothing is retried, reordered across
callers in a way they could see, or held past the turn it was asked in.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

K = TypeVar("K")
R = TypeVar("R")


class TurnBatch(Generic[K, R]):
    """``await batch(key)``: ``alone(key)``, or one ``together(keys)`` for the turn's callers.

    ``together`` answers the keys in order, each a result or an exception (raised to its caller).
    """

    __slots__ = ("_alone", "_joined", "_running", "_together")

    def __init__(
        self,
        alone: Callable[[K], Awaitable[R]],
        together: Callable[[list[K]], Awaitable[Sequence[R | BaseException]]],
    ) -> None:
        self._alone = alone
        self._together = together
        self._joined: list[tuple[K, asyncio.Future[R]]] | None = None
        self._running: set[asyncio.Task[None]] = set()  # referenced until done

    async def __call__(self, key: K) -> R:
        joined = self._joined
        if joined is not None:  # another caller of this turn is gathering: go with it
            future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
            joined.append((key, future))
            return await future
        self._joined = joined = []
        try:
            await asyncio.sleep(0)
        except BaseException:  # cancelled while gathering: those who joined still get their answers
            self._joined = None
            if joined:
                self._start(joined)
            raise
        self._joined = None
        if not joined:
            return await self._alone(key)
        mine: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        joined.insert(0, (key, mine))
        self._start(joined)
        return await mine

    def _start(self, batch: list[tuple[K, asyncio.Future[R]]]) -> None:
        task = asyncio.ensure_future(self._answer(batch))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _answer(self, batch: list[tuple[K, asyncio.Future[R]]]) -> None:
        try:
            answers = await self._together([key for key, _ in batch])
        except BaseException as exc:
            for _, future in batch:
                if future.done():
                    continue
                if isinstance(exc, asyncio.CancelledError):
                    future.cancel()
                else:
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for (_, future), answer in zip(batch, answers, strict=True):
            if future.done():
                continue
            if isinstance(answer, BaseException):
                future.set_exception(answer)
            else:
                future.set_result(answer)

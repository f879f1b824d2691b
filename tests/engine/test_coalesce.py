"""engine.coalesce.TurnBatch: a lone call runs alone; the calls of one event-loop turn share one
operation, and each caller gets its own answer, its own error, or the shared failure (issue 10)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from engine.coalesce import TurnBatch


class Recorder:
    def __init__(
        self, *, fail_together: BaseException | None = None, hold: asyncio.Event | None = None
    ) -> None:
        self.started = asyncio.Event()
        self.alone: list[int] = []
        self.together: list[list[int]] = []
        self.fail_together = fail_together
        self.hold = hold

    async def one(self, key: int) -> int:
        self.alone.append(key)
        await asyncio.sleep(0)
        return key * 10

    async def many(self, keys: list[int]) -> Sequence[int | BaseException]:
        self.together.append(keys)
        self.started.set()
        if self.hold is not None:
            await self.hold.wait()
        if self.fail_together is not None:
            raise self.fail_together
        return [ValueError(f"bad {key}") if key < 0 else key * 10 for key in keys]


async def test_a_lone_call_runs_its_own_operation() -> None:
    recorder = Recorder()
    batch: TurnBatch[int, int] = TurnBatch(recorder.one, recorder.many)
    assert await batch(3) == 30
    assert await batch(4) == 40  # one after another: each alone
    assert recorder.alone == [3, 4] and recorder.together == []


async def test_the_calls_of_one_turn_share_one_operation_and_get_their_own_answers() -> None:
    recorder = Recorder()
    batch: TurnBatch[int, int] = TurnBatch(recorder.one, recorder.many)
    results = await asyncio.gather(*(batch(key) for key in (1, 2, -3, 2)), return_exceptions=True)
    assert results[0] == 10 and results[1] == 20 and results[3] == 20
    assert isinstance(results[2], ValueError) and str(results[2]) == "bad -3"
    assert recorder.together == [[1, 2, -3, 2]] and recorder.alone == []


async def test_a_failed_operation_is_every_callers_error() -> None:
    recorder = Recorder(fail_together=ConnectionError("down"))
    batch: TurnBatch[int, int] = TurnBatch(recorder.one, recorder.many)
    results = await asyncio.gather(batch(1), batch(2), return_exceptions=True)
    assert all(isinstance(result, ConnectionError) for result in results)


async def test_a_cancelled_caller_takes_nothing_from_the_others() -> None:
    hold = asyncio.Event()
    recorder = Recorder(hold=hold)
    batch: TurnBatch[int, int] = TurnBatch(recorder.one, recorder.many)
    leader = asyncio.ensure_future(batch(1))
    follower = asyncio.ensure_future(batch(2))
    other = asyncio.ensure_future(batch(3))
    await recorder.started.wait()
    leader.cancel()
    follower.cancel()
    hold.set()
    assert await other == 30
    for task in (leader, follower):
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_a_leader_cancelled_while_gathering_still_answers_who_joined() -> None:
    recorder = Recorder()
    batch: TurnBatch[int, int] = TurnBatch(recorder.one, recorder.many)
    leader = asyncio.ensure_future(batch(1))
    follower = asyncio.ensure_future(batch(2))
    await asyncio.sleep(0)  # the leader is gathering (in its sleep(0)) and the follower has joined
    leader.cancel()
    assert await follower == 20
    with pytest.raises(asyncio.CancelledError):
        await leader
    assert recorder.together == [[2]] and recorder.alone == []

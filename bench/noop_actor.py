"""The engine's ceiling: a no-op async Dramatiq actor, on the same broker setup as the gateway's worker.

Same Redis, the gateway's middleware (age and time limits, retries, callbacks, pipelines,
shutdown notices) and an event-loop thread for the async actor, so a message travels exactly
the path a ``job.submitted`` message does, minus the job. The worker process counts in memory
(no extra round trip per message) and, at the expected count, writes when the first message
started and the last one ended::

    python -m bench.noop_actor REDIS_URL NAMESPACE THREADS EXPECTED OUT.json
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import (
    AgeLimit,
    AsyncIO,
    Callbacks,
    Pipelines,
    Retries,
    ShutdownNotifications,
    TimeLimit,
)

ACTOR = "bench.noop"


class _Count:
    lock = threading.Lock()
    done = 0
    first = 0.0
    expected = 0
    out: Path | None = None


def make_broker(redis_url: str, namespace: str) -> RedisBroker:
    return RedisBroker(  # type: ignore[no-untyped-call]
        url=redis_url,
        namespace=namespace,
        middleware=[
            AgeLimit(),
            TimeLimit(),
            ShutdownNotifications(),
            Callbacks(),
            Pipelines(),
            Retries(max_retries=3),
            AsyncIO(),
        ],
    )


def declare(broker: RedisBroker) -> dramatiq.Actor[..., object]:
    async def noop(number: int) -> None:
        with _Count.lock:
            if _Count.done == 0:
                _Count.first = time.time()
            _Count.done += 1
            if _Count.done == _Count.expected and _Count.out is not None:
                _Count.out.write_text(
                    json.dumps({"first": _Count.first, "last": time.time(), "count": _Count.done})
                )

    return dramatiq.actor(actor_name=ACTOR, broker=broker)(noop)


def enqueue(redis_url: str, namespace: str, count: int) -> None:
    broker = make_broker(redis_url, namespace)
    actor = declare(broker)
    for number in range(count):
        actor.send(number)
    broker.close()


def work(redis_url: str, namespace: str, threads: int, expected: int, out: Path) -> None:
    _Count.expected, _Count.out = expected, out
    broker = make_broker(redis_url, namespace)
    declare(broker)
    worker = dramatiq.Worker(broker, worker_threads=threads, worker_timeout=200)
    worker.start()
    print("noop worker ready", flush=True)
    while not out.exists():
        time.sleep(0.05)
    worker.stop(5000)
    broker.close()


if __name__ == "__main__":
    redis_url, namespace, threads, expected, out = sys.argv[1:6]
    work(redis_url, namespace, int(threads), int(expected), Path(out))

"""Dramatiq plumbing: the broker, the event loop async actors run on, and the worker.

Async actors run on an event loop. A standalone worker (``tryon-gateway worker``)
gets its own loop thread and starts its own :class:`~engine.runtime.Runtime` on
it. ``tryon-gateway dev`` (and the tests) run the worker inside the API process:
there the actors run on the server's own loop (:class:`SharedLoop`), so one
process has one loop, one connection pool and one runtime.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import threading
from collections.abc import Callable, Coroutine
from typing import Any

import dramatiq
from dramatiq.asyncio import EventLoopThread, get_event_loop_thread, set_event_loop_thread
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import (
    AgeLimit,
    Callbacks,
    Middleware,
    Pipelines,
    Retries,
    ShutdownNotifications,
    TimeLimit,
)

from engine import actors, payments, webhooks
from engine.runtime import Runtime

log = logging.getLogger(__name__)


class SharedLoop(EventLoopThread):
    """Dramatiq's event-loop handle, pointing at a loop that already runs elsewhere."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        threading.Thread.__init__(self, daemon=True)
        self.loop = loop
        self.logger = logging.getLogger("dramatiq.asyncio")
        self.interrupt_check_ival = 0.1

    def start(self, *, timeout: float | None = None) -> None:
        return None

    def stop(self) -> None:
        return None

    def join(self, timeout: float | None = None) -> None:
        return None


def _loop_thread() -> EventLoopThread:
    """The standalone worker's event-loop thread, on uvloop when it is installed (it comes with
    ``uvicorn[standard]``, as for ``serve``): every job's database, Redis and S3 calls run on this
    one loop, and uvloop runs them for less CPU than asyncio's own loop."""
    thread = EventLoopThread(logging.getLogger("dramatiq.asyncio"))
    if importlib.util.find_spec("uvloop") is not None:
        import uvloop

        thread.loop.close()
        thread.loop = uvloop.new_event_loop()
    return thread


class EngineLoop(Middleware):
    """Provides the loop for async actors and starts the runtime on it before work begins.

    Dramatiq keeps ONE event-loop handle per process. Workers that share the server's loop
    (``dev``, the tests' gateways) all point it at that same loop, so it is cleared only when
    the last of them stops: one worker stopping must not pull the loop from under the others.
    """

    _shared_workers = 0
    _shared_lock = threading.Lock()

    def __init__(self, runtime: Runtime, shared_loop: asyncio.AbstractEventLoop | None) -> None:
        self.runtime = runtime
        self.shared_loop = shared_loop
        self.owned: EventLoopThread | None = None

    def before_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        if self.shared_loop is not None:
            with EngineLoop._shared_lock:
                EngineLoop._shared_workers += 1
                set_event_loop_thread(SharedLoop(self.shared_loop))
            return
        self.owned = _loop_thread()
        self.owned.start(timeout=5.0)
        set_event_loop_thread(self.owned)
        self.owned.run_coroutine(self.runtime.start(listen_for_completions=False))

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        if self.shared_loop is not None:
            with EngineLoop._shared_lock:
                EngineLoop._shared_workers -= 1
                if EngineLoop._shared_workers == 0:
                    set_event_loop_thread(None)
            return
        thread = get_event_loop_thread()
        if self.owned is not None and thread is self.owned:
            self.owned.run_coroutine(self.runtime.close())
            self.owned.stop()  # type: ignore[no-untyped-call]
            self.owned = None
            set_event_loop_thread(None)


def _transient(retries: int, exc: BaseException) -> bool:
    return actors.is_transient(exc)


def make_broker(runtime: Runtime, *, shared_loop: asyncio.AbstractEventLoop | None = None) -> RedisBroker:
    """A Redis broker with the engine's actors declared on it, bound to ``runtime``."""
    config = runtime.config
    broker = RedisBroker(  # type: ignore[no-untyped-call]
        url=runtime.redis_url,
        namespace=config.redis_namespace,
        middleware=[
            AgeLimit(),
            TimeLimit(time_limit=int(config.job_deadline_seconds * 1000) + 60_000),
            ShutdownNotifications(),
            Callbacks(),
            Pipelines(),
            Retries(
                max_retries=config.job_max_retries,
                min_backoff=config.job_retry_min_backoff_ms,
                max_backoff=config.job_retry_max_backoff_ms,
                retry_when=_transient,
            ),
            EngineLoop(runtime, shared_loop),
        ],
    )
    actors.declare(broker, runtime)
    webhooks.declare_actors(broker, runtime)
    payments.declare_actors(broker, runtime)
    return broker


def start_worker(broker: RedisBroker, *, threads: int = 4) -> dramatiq.Worker:
    worker = dramatiq.Worker(broker, worker_threads=threads, worker_timeout=200)
    worker.start()
    return worker


async def sweep_forever(runtime: Runtime, sweep: Callable[[Runtime], Coroutine[Any, Any, object]]) -> None:
    """Run the sweeper every ``sweep_interval_seconds`` until cancelled."""
    while True:
        try:
            await sweep(runtime)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("sweep failed; trying again next interval")
        await asyncio.sleep(runtime.config.sweep_interval_seconds)

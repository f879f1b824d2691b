"""The engine's Dramatiq actors. Messages carry only ids; actors are idempotent.

``job.submitted`` runs a job: it claims the job (queued → running) in the
database first, so a redelivered or re-sent message for a job that is already
running or finished does nothing.
"""

from __future__ import annotations

import asyncio

import asyncpg
import dramatiq
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from engine import execution
from engine.runtime import Runtime

JOB_SUBMITTED = "job.submitted"

_runtime: Runtime | None = None
_actors: dict[str, dramatiq.Actor] = {}  # type: ignore[type-arg]


def is_transient(exc: BaseException) -> bool:
    """Worth redelivering: a service hiccup before the job could be claimed."""
    return isinstance(
        exc,
        (
            asyncpg.PostgresConnectionError,
            asyncpg.exceptions.CannotConnectNowError,
            ConnectionError,
            RedisConnectionError,
            RedisTimeoutError,
            asyncio.TimeoutError,
        ),
    )


async def job_submitted(job_id: int) -> None:
    assert _runtime is not None, "engine.actors.declare() was not called in this process"
    await execution.run_job(_runtime, job_id)


def declare(broker: dramatiq.Broker, runtime: Runtime) -> None:
    global _runtime
    _runtime = runtime
    _actors.clear()
    _actors[JOB_SUBMITTED] = dramatiq.actor(actor_name=JOB_SUBMITTED, broker=broker)(job_submitted)


def enqueue_job(job_id: int) -> None:
    """Send ``job.submitted`` for a committed job. A failure here is healed by the sweeper."""
    _actors[JOB_SUBMITTED].send(job_id)

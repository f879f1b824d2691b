"""The engine's Dramatiq actors. Messages carry only ids; actors are idempotent.

``job.submitted`` runs a job: it claims the job (queued → running) in the
database first, so a redelivered or re-sent message for a job that is already
running or finished does nothing. Actors are declared per broker and bound to
that broker's runtime (several runtimes may share a process, as in the tests),
and the runtime learns how to send to them.
"""

from __future__ import annotations

import asyncio

import asyncpg
import dramatiq
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from engine import context, execution
from engine.runtime import Runtime

JOB_SUBMITTED = "job.submitted"


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


def declare(broker: dramatiq.Broker, runtime: Runtime) -> None:
    """Declare the actors on ``broker``, bound to ``runtime``, and let the runtime send to them."""

    async def job_submitted(job_id: int, request_id: str | None = None) -> None:
        # The submitting request's id (absent in messages from before it was carried, and in
        # the sweeper's re-sends) makes the worker's lines for this job findable by it.
        context.request_id.set(context.sane_request_id(request_id))
        await execution.run_job(runtime, job_id)

    actor = dramatiq.actor(actor_name=JOB_SUBMITTED, broker=broker)(job_submitted)

    def send(job_id: int, request_id: str | None) -> None:
        actor.send_with_options(args=(job_id,), kwargs={"request_id": request_id} if request_id else None)

    runtime.job_sender = send
    runtime.job_actor = actor  # for Runtime.send_job, the submit path's non-blocking send

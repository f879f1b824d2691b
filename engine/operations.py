"""What operators do to jobs: find them, explain them, cancel, refund and re-run them.

The admin API, the CLI and the console call these same functions. The invariants:

* **Cancel never succeeds later.** A cancel is the ordinary failure path
  (:func:`engine.execution.fail_job`, code ``cancelled``): the conditional
  ``queued|running → failed`` UPDATE decides, under the row lock, whether the cancel or the
  job's own end comes first. Exactly one wins; a worker that loses finds ``succeed`` refusing
  and deletes the result it stored. A cancel is always refunded (once: the failure refund),
  wakes sync waiters and records the job's webhook event, like any failure.
* **A goodwill refund happens once per job, whatever races.** The job row is locked first;
  the ledger's unique (job_id, kind) index and the entry's unique ``goodwill:job_…``
  reference are the backstop, so the losers of any race get :class:`Conflict`.
* **A re-run is free.** A new job (``rerun_of`` = the original) with the original's
  parameters and inputs (copied server-side to the new job's prefix) costs 0 credits and has
  no ledger entry at all; ``ledger verify`` knows re-runs by ``rerun_of``.

Transactions: :func:`refund` runs in the caller's transaction, like every ledger service.
:func:`cancel` and :func:`rerun` own theirs, like ``submit_tryon`` and the actors, because
they must commit before they announce the end of a job or enqueue a new one; calling them
inside a transaction is a programming error they refuse. Every action writes its audit entry
in the transaction that makes the change.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime
from typing import Any

import msgspec
from redis.exceptions import RedisError

from engine import metrics
from engine.errors import Conflict, InvalidRequest, NotFound, ServiceUnavailable
from engine.execution import fail_job
from engine.models import CANCELLED, GOODWILL_PREFIX, JobFilter, JobRecord, JobStatus, StoredImage
from engine.runtime import Runtime
from engine.service import new_public_id
from ledger.audit import require_reason
from ledger.models import Actor, EntryRecord
from storage.errors import StorageError

log = logging.getLogger(__name__)

JOB_REF = re.compile(r"^(job_[0-9a-f]{1,40}|[0-9]{1,18})$")
"""A job as operators name it: its public ``job_…`` id or its integer order id."""
CANCEL_MESSAGE = "cancelled by an operator"
"""The ``error_message`` callers see; the operator's reason stays in the audit log."""


class JobSearchPage(msgspec.Struct, frozen=True, kw_only=True):
    jobs: list[JobRecord]
    next_cursor: str | None


class Timings(msgspec.Struct, frozen=True, kw_only=True):
    """When the job moved, and where its time went (milliseconds; None: not reached)."""

    queued_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    queue_wait_ms: int | None
    generation_ms: int | None
    """Backend calls, every attempt together (from the generation report)."""
    quality_gate_ms: int | None
    total_ms: int | None


class Link(msgspec.Struct, frozen=True, kw_only=True):
    role: str
    content_type: str
    width: int
    height: int
    url: str | None
    """A presigned GET link; None once retention purged the object."""


class JobDetail(msgspec.Struct, frozen=True, kw_only=True):
    """Everything ops may need to explain one job."""

    job: JobRecord
    inputs: list[Link]
    results: list[Link]
    timings: Timings
    quality_gate: list[str]
    """The gate's verdict per generation attempt (``passed`` or the reason it failed)."""
    ledger: list[EntryRecord]
    webhooks: list[dict[str, Any]]
    idempotency_key: dict[str, Any] | None
    rerun_of: JobRecord | None
    reruns: list[JobRecord]


# finding ---------------------------------------------------------------------------------
async def search(runtime: Runtime, query: JobFilter) -> JobSearchPage:
    """A page of jobs matching ``query``, newest first; ``next_cursor`` continues below it."""
    rows = await runtime.jobs.search(msgspec.structs.replace(query, limit=query.limit + 1))
    more = len(rows) > query.limit
    rows = rows[: query.limit]
    return JobSearchPage(jobs=rows, next_cursor=str(rows[-1].id) if more and rows else None)


async def find(runtime: Runtime, ref: str) -> JobRecord:
    """The job named by ``job_…`` or by its order id. Raises InvalidRequest or NotFound."""
    if not JOB_REF.match(ref):
        raise InvalidRequest("a job is named by its job_… id or its integer order id", field="id")
    job = await (runtime.jobs.by_public_id(ref) if ref.startswith("job_") else runtime.jobs.get(int(ref)))
    if job is None:
        raise NotFound("Job not found")
    return job


async def _locked(runtime: Runtime, ref: str) -> JobRecord:
    """:func:`find`, then the job's row lock for the rest of the transaction (fresh state)."""
    job = await runtime.jobs.lock((await find(runtime, ref)).id)
    assert job is not None
    return job


def _ms(seconds: float | None) -> int | None:
    return None if seconds is None else round(seconds * 1000)


def _timings(job: JobRecord) -> tuple[Timings, list[str]]:
    generations = [item for item in job.report.get("generations", []) if isinstance(item, dict)]
    generation = sum(float(item.get("seconds") or 0) for item in generations) if generations else None
    gated = [item for item in generations if "gate_seconds" in item]
    gate = sum(float(item["gate_seconds"]) for item in gated) if gated else None
    timings = Timings(
        queued_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.completed_at,
        queue_wait_ms=_ms((job.started_at - job.created_at).total_seconds()) if job.started_at else None,
        generation_ms=_ms(generation),
        quality_gate_ms=_ms(gate),
        total_ms=job.duration_ms,
    )
    return timings, [str(item["quality"]) for item in generations if "quality" in item]


def _links(runtime: Runtime, job: JobRecord, images: list[StoredImage]) -> list[Link]:
    ttl = runtime.config.presign_ttl_seconds
    return [
        Link(
            role=image.role,
            content_type=image.content_type,
            width=image.width,
            height=image.height,
            url=None if job.purged_at is not None else runtime.store.presigned_url(image.key, ttl),
        )
        for image in images
    ]


async def detail(runtime: Runtime, ref: str) -> JobDetail:
    """The whole record of one job, with fresh links, its money, webhooks and re-runs."""
    job = await find(runtime, ref)
    timings, verdicts = _timings(job)
    return JobDetail(
        job=job,
        inputs=_links(runtime, job, job.inputs),
        results=_links(runtime, job, job.results),
        timings=timings,
        quality_gate=verdicts,
        ledger=await runtime.ledger.job_entries(job.id),
        webhooks=await runtime.jobs.webhook_deliveries(job.id),
        idempotency_key=await runtime.jobs.idempotency_key(job),
        rerun_of=await runtime.jobs.get(job.rerun_of) if job.rerun_of is not None else None,
        reruns=await runtime.jobs.reruns(job.id),
    )


def _state(job: JobRecord) -> dict[str, Any]:
    return {
        "status": job.status,
        "error_code": job.error_code,
        "credits_refunded": job.credits_refunded,
    }


def _outside_transaction(runtime: Runtime, action: str) -> None:
    if runtime.db.engine.current_transaction.get() is not None:
        raise RuntimeError(f"{action} owns its transaction: call it outside one")


# acting ----------------------------------------------------------------------------------
async def cancel(runtime: Runtime, actor: Actor, ref: str, reason: str) -> JobRecord:
    """End a queued or running job as ``failed``/``cancelled``, refunded; Conflict if finished.

    Owns its transaction (see the module docstring).
    """
    _outside_transaction(runtime, "cancel")
    reason = require_reason(reason)
    job = await find(runtime, ref)
    if job.status.finished:
        raise Conflict(f"Job {job.public_id} already {job.status}; only a queued or running job is cancelled")

    async def audit(failed: JobRecord, refunded: int) -> None:
        await runtime.audit.record(
            actor,
            "job.cancel",
            target_type="job",
            target_id=failed.public_id,
            account_id=failed.account,
            reason=reason,
            before={"status": job.status},
            after=_state(failed) | {"refunded": refunded},
        )

    cancelled = await fail_job(
        runtime, job.id, code=CANCELLED, message=CANCEL_MESSAGE, always_refund=True, in_transaction=audit
    )
    if cancelled is None:  # it finished between our read and the conditional UPDATE
        raise Conflict(f"Job {job.public_id} finished before the cancel; nothing was changed")
    return cancelled


async def refund(runtime: Runtime, actor: Actor, ref: str, reason: str) -> JobRecord:
    """A goodwill refund of a finished, charged, not yet refunded job: once, else Conflict.

    Meant for succeeded jobs (and failures the refund rule left charged, e.g.
    ``content_blocked``). Runs in the caller's transaction.
    """
    reason = require_reason(reason)
    job = await _locked(runtime, ref)
    if not job.status.finished:
        raise Conflict(f"Job {job.public_id} is still {job.status}; cancel it instead (cancels are refunded)")
    if job.credits_refunded:
        raise Conflict(f"Job {job.public_id} was already refunded ({job.credits_refunded} credits)")
    if job.mode != "live" or job.cost_credits == 0:
        raise Conflict(f"Nothing to refund: job {job.public_id} cost no credits")
    amount = await runtime.ledger.refund_job_once(
        job.account, job.id, reason=f"goodwill: {reason}", reference=GOODWILL_PREFIX + job.public_id
    )
    refunded = await runtime.jobs.record_refund(job.id, amount)
    await runtime.audit.record(
        actor,
        "job.refund",
        target_type="job",
        target_id=job.public_id,
        account_id=job.account,
        reason=reason,
        before={"credits_refunded": job.credits_refunded},
        after={"credits_refunded": refunded.credits_refunded},
    )
    metrics.credits_moved("refund", amount)
    return refunded


async def rerun(runtime: Runtime, actor: Actor, ref: str, reason: str) -> JobRecord:
    """Run a failed job again, free, as a new job linked by ``rerun_of``; returns the new job.

    Its inputs are copied server-side to the new job's own prefix first (so retention and
    erasure treat both jobs alike); the new job is enqueued after the commit. Conflict if the
    job did not fail, its inputs were purged, or a re-run of it is already queued, running or
    succeeded. Owns its transaction (see the module docstring).
    """
    _outside_transaction(runtime, "rerun")
    reason = require_reason(reason)
    original = await find(runtime, ref)
    _check_rerunnable(original, [])
    public_id = new_public_id()
    inputs = await _copy_inputs(runtime, original, public_id)
    try:
        async with runtime.db.transaction():
            locked = await runtime.jobs.lock(original.id)
            assert locked is not None
            _check_rerunnable(locked, await runtime.jobs.reruns(locked.id))
            job = await runtime.jobs.insert_rerun(locked.id, public_id, inputs)
            await runtime.audit.record(
                actor,
                "job.rerun",
                target_type="job",
                target_id=locked.public_id,
                account_id=locked.account,
                reason=reason,
                after={"rerun": job.public_id, "order_id": job.id, "cost_credits": 0},
            )
    except BaseException:
        await _delete_quietly(runtime, inputs)
        raise
    metrics.job_submitted(dialect=job.dialect, kind=job.kind, backend=job.backend, mode=job.mode)
    log.info("job.rerun", extra={"job_id": job.public_id, "rerun_of": original.public_id})
    try:
        runtime.enqueue_job(job.id)
    except (RedisError, OSError):
        log.warning("could not enqueue re-run %s now; the sweeper will send it", job.public_id)
    return job


def _check_rerunnable(job: JobRecord, reruns: list[JobRecord]) -> None:
    if job.status != JobStatus.FAILED:
        raise Conflict(f"Job {job.public_id} is {job.status}; only a failed job is re-run")
    if job.purged_at is not None:
        raise Conflict(f"Job {job.public_id}'s inputs were purged by retention; it can't be re-run")
    live = [rerun for rerun in reruns if rerun.status != JobStatus.FAILED]
    if live:
        raise Conflict(f"Job {job.public_id} already has a re-run, {live[0].public_id} ({live[0].status})")


async def _copy_inputs(runtime: Runtime, job: JobRecord, public_id: str) -> list[StoredImage]:
    prefix = f"accounts/{job.account}/jobs/{public_id}/"
    copied: list[StoredImage] = []
    try:
        for image in job.inputs:
            key = prefix + image.key.rsplit("/", 1)[-1]
            await runtime.store.copy(image.key, key)
            copied.append(msgspec.structs.replace(image, key=key))
    except StorageError as exc:
        await _delete_quietly(runtime, copied)
        if "NoSuchKey" in str(exc) or "Not Found" in str(exc):
            raise Conflict(f"Job {job.public_id}'s inputs are gone from storage; it can't be re-run") from exc
        raise ServiceUnavailable("Object storage unavailable") from exc
    return copied


async def _delete_quietly(runtime: Runtime, images: list[StoredImage]) -> None:
    for image in images:
        try:
            await runtime.store.delete(image.key)
        except StorageError as exc:
            log.warning("could not delete %s of an abandoned re-run: %s", image.key, exc)

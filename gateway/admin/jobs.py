"""Admin routes for jobs: find, explain, cancel, refund and re-run (``engine.operations``).

* ``GET /admin/jobs`` (viewer) — search, newest first, paged by ``next_cursor``
* ``GET /admin/jobs/{id}`` (viewer) — ``id`` is ``job_…`` or the integer order id
* ``POST /admin/jobs/{id}/cancel`` (support, reason) — queued/running → failed ``cancelled``, refunded
* ``POST /admin/jobs/{id}/refund`` (support, reason) — a goodwill refund, once per job
* ``POST /admin/jobs/{id}/rerun`` (support, reason) — 201, a free new job linked by ``rerun_of``

Cancel and re-run own their transactions in the engine (they must commit before they wake
waiters or enqueue); the refund runs in this route's transaction like every ledger write.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec
from litestar import get, post
from litestar.di import NamedDependency
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath, JSONBody

from engine import operations
from engine.models import JobFilter, JobRecord
from engine.operations import JobDetail, Link, Timings
from engine.runtime import Runtime
from gateway.admin.params import (
    Cursor,
    ErrorCodeFilter,
    IdFilter,
    JobBackendFilter,
    JobDialectFilter,
    JobKindFilter,
    JobRef,
    JobStatusFilter,
    Limit,
    When,
    before_id,
)
from gateway.admin.schemas import ReasonBody
from ledger.models import Actor


class JobOut(msgspec.Struct, kw_only=True):
    job_id: str
    """The public id (FitInView's ``job_id``)."""
    order_id: int
    """The integer order number (FtmvAI's ``order_id``)."""
    account_id: int
    key_id: int
    dialect: str
    kind: str
    mode: str
    backend: str
    status: str
    stage: str
    progress: int
    error_code: str | None
    error_message: str | None
    cost_credits: int
    credits_refunded: int
    rerun_of: int | None
    """The order id of the job this one re-runs."""
    created_at: datetime
    completed_at: datetime | None
    purged: bool


class JobPageOut(msgspec.Struct, kw_only=True):
    jobs: list[JobOut]
    next_cursor: str | None


class LedgerEntryOut(msgspec.Struct, kw_only=True):
    id: int
    kind: str
    amount: int
    balance_after: int
    reason: str
    reference: str | None
    created_at: datetime


class DeliveryOut(msgspec.Struct, kw_only=True):
    attempt: int
    delivery_id: str
    attempted_at: datetime
    status_code: int | None
    error: str | None
    duration_ms: int


class WebhookOut(msgspec.Struct, kw_only=True):
    id: str
    """``evt_…``: see ``GET /admin/webhooks/{id}`` and resend it there."""
    url: str
    status: str
    attempts: int
    created_at: datetime
    delivered_at: datetime | None
    deliveries: list[DeliveryOut]


class IdempotencyOut(msgspec.Struct, kw_only=True):
    key: str
    fingerprint: str
    created_at: datetime


class RelatedJob(msgspec.Struct, kw_only=True):
    job_id: str
    order_id: int
    status: str


class JobDetailOut(JobOut, kw_only=True):
    params: dict[str, Any]
    metadata: dict[str, Any] | None
    seed: int | None
    webhook_url: str | None
    attempts: int
    started_at: datetime | None
    purged_at: datetime | None
    inputs: list[Link]
    results: list[Link]
    timings: Timings
    quality_gate: list[str]
    report: dict[str, Any]
    """The generation report: attempts, seeds, model, tokens, prompt version, gate verdicts."""
    ledger: list[LedgerEntryOut]
    webhooks: list[WebhookOut]
    idempotency_key: IdempotencyOut | None
    original: RelatedJob | None
    """The job this one re-runs."""
    reruns: list[RelatedJob]


def job_out(job: JobRecord) -> JobOut:
    return JobOut(**_summary(job))


def _summary(job: JobRecord) -> dict[str, Any]:
    return {
        "job_id": job.public_id,
        "order_id": job.id,
        "account_id": job.account,
        "key_id": job.api_key,
        "dialect": job.dialect,
        "kind": job.kind,
        "mode": job.mode,
        "backend": job.backend,
        "status": str(job.status),
        "stage": str(job.stage),
        "progress": job.progress,
        "error_code": job.error_code,
        "error_message": job.error_message,
        "cost_credits": job.cost_credits,
        "credits_refunded": job.credits_refunded,
        "rerun_of": job.rerun_of,
        "created_at": job.created_at,
        "completed_at": job.completed_at,
        "purged": job.purged_at is not None,
    }


def _related(job: JobRecord) -> RelatedJob:
    return RelatedJob(job_id=job.public_id, order_id=job.id, status=str(job.status))


def detail_out(detail: JobDetail) -> JobDetailOut:
    job = detail.job
    key = detail.idempotency_key
    return JobDetailOut(
        **_summary(job),
        params=job.params,
        metadata=job.metadata,
        seed=job.seed,
        webhook_url=job.webhook_url,
        attempts=job.attempts,
        started_at=job.started_at,
        purged_at=job.purged_at,
        inputs=detail.inputs,
        results=detail.results,
        timings=detail.timings,
        quality_gate=detail.quality_gate,
        report=job.report,
        ledger=[
            LedgerEntryOut(
                id=entry.id,
                kind=entry.kind,
                amount=entry.amount,
                balance_after=entry.balance_after,
                reason=entry.reason,
                reference=entry.reference,
                created_at=entry.created_at,
            )
            for entry in detail.ledger
        ],
        webhooks=[
            WebhookOut(
                id=event["public_id"],
                url=event["url"],
                status=event["status"],
                attempts=event["attempts"],
                created_at=event["created_at"],
                delivered_at=event["delivered_at"],
                deliveries=[msgspec.convert(row, DeliveryOut) for row in event["deliveries"]],
            )
            for event in detail.webhooks
        ],
        idempotency_key=None
        if key is None
        else IdempotencyOut(key=key["key"], fingerprint=key["request_hash"], created_at=key["created_at"]),
        original=None if detail.rerun_of is None else _related(detail.rerun_of),
        reruns=[_related(rerun) for rerun in detail.reruns],
    )


@get("/jobs", opt={"role": "viewer"})
async def search_jobs(
    runtime: NamedDependency[Runtime],
    account: IdFilter = None,
    key: IdFilter = None,
    dialect: JobDialectFilter = None,
    kind: JobKindFilter = None,
    status: JobStatusFilter = None,
    error_code: ErrorCodeFilter = None,
    backend: JobBackendFilter = None,
    since: When = None,
    until: When = None,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> JobPageOut:
    page = await operations.search(
        runtime,
        JobFilter(
            account=account,
            api_key=key,
            dialect=dialect,
            kind=kind,
            status=status,
            error_code=error_code,
            backend=backend,
            since=since,
            until=until,
            before_id=before_id(cursor),
            limit=limit,
        ),
    )
    return JobPageOut(jobs=[job_out(job) for job in page.jobs], next_cursor=page.next_cursor)


@get("/jobs/{job_id:str}", opt={"role": "viewer"})
async def get_job(job_id: FromPath[JobRef], runtime: NamedDependency[Runtime]) -> JobDetailOut:
    return detail_out(await operations.detail(runtime, job_id))


@post("/jobs/{job_id:str}/cancel", status_code=200, opt={"role": "support"})
async def cancel_job(
    job_id: FromPath[JobRef],
    data: JSONBody[ReasonBody],
    runtime: NamedDependency[Runtime],
    actor: NamedDependency[Actor],
) -> JobOut:
    return job_out(await operations.cancel(runtime, actor, job_id, data.reason))


@post("/jobs/{job_id:str}/refund", status_code=200, opt={"role": "support"})
async def refund_job(
    job_id: FromPath[JobRef],
    data: JSONBody[ReasonBody],
    runtime: NamedDependency[Runtime],
    actor: NamedDependency[Actor],
) -> JobOut:
    async with runtime.db.transaction():
        job = await operations.refund(runtime, actor, job_id, data.reason)
    return job_out(job)


@post("/jobs/{job_id:str}/rerun", status_code=201, opt={"role": "support"})
async def rerun_job(
    job_id: FromPath[JobRef],
    data: JSONBody[ReasonBody],
    runtime: NamedDependency[Runtime],
    actor: NamedDependency[Actor],
) -> JobOut:
    return job_out(await operations.rerun(runtime, actor, job_id, data.reason))


ROUTES: list[HTTPRouteHandler] = [search_jobs, get_job, cancel_job, refund_job, rerun_job]

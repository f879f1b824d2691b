"""Turning engine jobs into FitInView's response bodies."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec

from dialects.fitinview.schemas import AccountResponse, TryOnJobList, TryOnJobStatus, TryOnSubmitResponse
from engine.models import JobPage, JobStatus, JobView, Submission

STATUS_WORDS = {
    JobStatus.QUEUED: "running",
    JobStatus.RUNNING: "running",
    JobStatus.SUCCEEDED: "succeeded",
    JobStatus.FAILED: "failed",
}


def timestamp(value: datetime | None) -> str | None:
    """ISO 8601 UTC as the document writes it: ``YYYY-MM-DDTHH:MM:SSZ``."""
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def job_status(job: JobView) -> TryOnJobStatus:
    return TryOnJobStatus(
        job_id=job.public_id,
        status=STATUS_WORDS[job.status],
        result_url=job.result_urls[0] if job.status is JobStatus.SUCCEEDED and job.result_urls else None,
        error_code=job.error_code,
        error_message=job.error_message,
        cost_credits=job.cost_credits,
        duration_ms=job.duration_ms,
        created_at=timestamp(job.created_at) or "",
        completed_at=timestamp(job.completed_at),
        metadata=job.metadata,
        seed=job.seed,
        credits_refunded=job.credits_refunded,
    )


def sync_limit_message(job_id: str, wait_seconds: float) -> str:
    return f"Job exceeded {wait_seconds:g}s sync limit; poll GET /api/v1/tryon/{job_id}"


def submit_response(submission: Submission, *, waited: bool, wait_seconds: float) -> TryOnSubmitResponse:
    job = submission.job
    message = None
    if waited and not job.status.finished:
        message = sync_limit_message(job.public_id, wait_seconds)
    return TryOnSubmitResponse(
        **msgspec.structs.asdict(job_status(job)),
        credits_remaining=submission.credits_remaining,
        message=message,
    )


def job_list(page: JobPage) -> TryOnJobList:
    return TryOnJobList(jobs=[job_status(job) for job in page.jobs], next_cursor=page.next_cursor)


def account(
    *, name: str, credits_remaining: int, rate_limit_per_min: int, total_calls: int, prices: dict[str, int]
) -> AccountResponse:
    return AccountResponse(
        name=name,
        credits_remaining=credits_remaining,
        rate_limit_per_min=rate_limit_per_min,
        total_calls=total_calls,
        tryon_cost_credits=prices,
    )

"""Turning engine jobs into FtmvAI's orders, and rate verdicts into its headers."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

from dialects.ftmvai.schemas import (
    AccountInfo,
    AccountResponse,
    GenerateResponse,
    Order,
    OrderError,
    OrderResponse,
    RateLimitInfo,
)
from engine.access import RateVerdict
from engine.models import JobStatus, JobView

STATUS_WORDS = {
    JobStatus.QUEUED: "pending",
    JobStatus.RUNNING: "in_progress",
    JobStatus.SUCCEEDED: "completed",
    JobStatus.FAILED: "failed",
}
EXPECTED_SECONDS = {"tryon": 60, "catalog": 150}
"""Typical time a job of each kind takes end to end; scaled by what is left of it."""
ESTIMATED_TIME = {"tryon": "45-60 seconds", "catalog": "1-3 minutes"}
PRODUCT_DESCRIPTION = "Professional product photography"


def timestamp(value: datetime) -> str:
    """As the document writes them: ``2025-06-14T15:00:43+00:00``."""
    return value.astimezone(UTC).replace(microsecond=0).isoformat()


def generate_response(job: JobView) -> GenerateResponse:
    return GenerateResponse(
        success=True,
        order_id=job.id,
        status="pending",
        credits_used=job.cost_credits,
        message="Order created successfully. Use the orders endpoint to check status.",
        estimated_time=ESTIMATED_TIME.get(job.kind, ESTIMATED_TIME["tryon"]),
        created_at=timestamp(job.created_at),
    )


def estimated_completion(job: JobView, now: datetime) -> datetime:
    """Now plus the share of the typical duration the job's stage says is still ahead."""
    expected = EXPECTED_SECONDS.get(job.kind, EXPECTED_SECONDS["tryon"])
    left = max(1, math.ceil(expected * (100 - job.progress) / 100))
    return max(now, job.created_at) + timedelta(seconds=left)


def _results(job: JobView) -> dict[str, object]:
    """The order's links; a purged order (retention deleted its images) keeps its keys with null
    values, and a catalog keeps its quantity, so callers see what it was but get no dead link."""
    inputs: dict[str, str] = {}
    if not job.purged:
        inputs = dict(zip([image.role for image in job.inputs], job.input_urls, strict=True))
    if job.kind == "catalog":
        return {
            "product_url": inputs.get("product"),
            "catalog_images": None if job.purged else list(job.result_urls),
            "quantity": len(job.results),
            "product_description": PRODUCT_DESCRIPTION,
        }
    return {
        "person_url": inputs.get("person"),
        "clothing_url": inputs.get("garment"),
        "result_url": job.result_urls[0] if job.result_urls else None,
    }


def order(job: JobView, *, now: datetime | None = None) -> OrderResponse:
    now = now or datetime.now(UTC)
    body = Order(
        id=job.id,
        status=STATUS_WORDS[job.status],
        credits_used=job.cost_credits,
        created_at=timestamp(job.created_at),
    )
    if not job.status.finished:
        body.status = "in_progress" if job.status is JobStatus.RUNNING else "pending"
        body.progress = job.progress if job.status is JobStatus.RUNNING else 0
        body.estimated_completion = timestamp(estimated_completion(job, now))
    else:
        assert job.completed_at is not None
        body.completed_at = timestamp(job.completed_at)
        body.processing_time = int((job.completed_at - job.created_at).total_seconds())
    if job.status is JobStatus.SUCCEEDED:
        body.results = _results(job)
    if job.status is JobStatus.FAILED:
        body.error = OrderError(
            code=(job.error_code or "internal_error").upper(), message=job.error_message or "failed"
        )
    if job.credits_refunded:  # a failure's refund, or an operator's goodwill refund of a success
        body.credits_refunded = job.credits_refunded
    return OrderResponse(success=True, order=body)


def account(
    *,
    user_id: int,
    credits_remaining: int,
    calls_today: int,
    calls_total: int,
    plan: str,
    verdict: RateVerdict,
) -> AccountResponse:
    return AccountResponse(
        success=True,
        account=AccountInfo(
            user_id=user_id,
            credits_remaining=credits_remaining,
            api_calls_today=calls_today,
            api_calls_total=calls_total,
            plan=plan,
        ),
        rate_limit=RateLimitInfo(limit=verdict.limit, remaining=verdict.remaining, reset=verdict.reset),
    )


def rate_headers(verdict: RateVerdict) -> dict[str, str]:
    return {
        "X-RateLimit-Limit": str(verdict.limit),
        "X-RateLimit-Remaining": str(verdict.remaining),
        "X-RateLimit-Reset": str(verdict.reset),
    }

"""FitInView's response bodies, field for field as ``fitinview-api.txt`` documents them.

Every documented field is always present (``null`` where it has no value);
``metadata``, ``seed`` and ``credits_refunded`` are the additive fields
DECISIONS.md allows. Requests are parsed by hand in :mod:`dialects.fitinview.requests`
because the API is lenient (aliases, case-insensitive sizes, unknown fields ignored).
"""

from __future__ import annotations

from typing import Any

import msgspec


class TryOnJobStatus(msgspec.Struct, kw_only=True):
    job_id: str
    status: str
    result_url: str | None
    error_code: str | None
    error_message: str | None
    cost_credits: int
    duration_ms: int | None
    created_at: str
    completed_at: str | None
    metadata: dict[str, Any] | None
    seed: int | None
    credits_refunded: int


class TryOnSubmitResponse(TryOnJobStatus, kw_only=True):
    """The answer to ``POST /api/v1/tryon``: the job status plus the balance and the sync message."""

    credits_remaining: int
    message: str | None


class TryOnJobList(msgspec.Struct, kw_only=True):
    jobs: list[TryOnJobStatus]
    next_cursor: str | None


class AccountResponse(msgspec.Struct, kw_only=True):
    name: str
    credits_remaining: int
    rate_limit_per_min: int
    total_calls: int
    tryon_cost_credits: dict[str, int]


class ErrorResponse(msgspec.Struct):
    detail: str

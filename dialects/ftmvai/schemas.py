"""FtmvAI's response bodies, as ``ftmvai-api.txt`` shows them."""

from __future__ import annotations

from typing import Any

import msgspec


class GenerateResponse(msgspec.Struct, kw_only=True):
    success: bool
    order_id: int
    status: str
    credits_used: int
    message: str
    estimated_time: str
    created_at: str


class OrderError(msgspec.Struct, kw_only=True):
    code: str
    message: str


class Order(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One order. Fields appear as the document shows them for each status."""

    id: int
    status: str
    credits_used: int
    progress: int | None = None
    results: dict[str, Any] | None = None
    error: OrderError | None = None
    created_at: str
    estimated_completion: str | None = None
    completed_at: str | None = None
    processing_time: int | None = None
    credits_refunded: int | None = None


class OrderResponse(msgspec.Struct, kw_only=True):
    success: bool
    order: Order


class AccountInfo(msgspec.Struct, kw_only=True):
    user_id: int
    credits_remaining: int
    api_calls_today: int
    api_calls_total: int
    plan: str


class RateLimitInfo(msgspec.Struct, kw_only=True):
    limit: int
    remaining: int
    reset: int


class AccountResponse(msgspec.Struct, kw_only=True):
    success: bool
    account: AccountInfo
    rate_limit: RateLimitInfo


class ErrorBody(msgspec.Struct, kw_only=True):
    code: str
    message: str
    details: dict[str, Any] | None = None


class ErrorResponse(msgspec.Struct, kw_only=True):
    success: bool
    error: ErrorBody

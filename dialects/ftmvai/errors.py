"""FtmvAI's error envelope, ``{"success": false, "error": {"code", "message", "details"}}``.

Maps the domain error hierarchy (and the framework's own HTTP errors) to the
document's status codes and UPPER_SNAKE codes, and puts the caller's
``X-RateLimit-*`` headers on authenticated error responses too.
"""

from __future__ import annotations

import logging
from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException

from dialects.ftmvai.responses import rate_headers
from dialects.ftmvai.schemas import ErrorBody, ErrorResponse
from engine.access import RateVerdict
from engine.errors import (
    AccessDenied,
    AccountSuspended,
    Conflict,
    DomainError,
    InsufficientCredits,
    InvalidRequest,
    KeyDisabled,
    KeyExpired,
    NotFound,
    RateLimited,
    ServiceUnavailable,
    Unauthenticated,
)
from engine.outage import RETRY_AFTER_SECONDS, as_unavailable

log = logging.getLogger(__name__)

_CODES: list[tuple[type[DomainError], int, str]] = [
    (InvalidRequest, 400, "INVALID_REQUEST"),
    (Unauthenticated, 401, "UNAUTHORIZED"),
    (InsufficientCredits, 402, "INSUFFICIENT_CREDITS"),
    (KeyDisabled, 403, "KEY_DISABLED"),
    (AccessDenied, 403, "FORBIDDEN"),
    (NotFound, 404, "ORDER_NOT_FOUND"),
    (Conflict, 409, "CONFLICT"),
    (RateLimited, 429, "RATE_LIMITED"),
    (ServiceUnavailable, 503, "SERVICE_UNAVAILABLE"),
]


def _envelope(
    status: int, code: str, message: str, details: dict[str, Any] | None, headers: dict[str, str]
) -> Response[ErrorResponse]:
    body = ErrorResponse(success=False, error=ErrorBody(code=code, message=message, details=details))
    return Response(body, status_code=status, headers=headers)


def error_response(exc: DomainError, verdict: RateVerdict | None = None) -> Response[ErrorResponse]:
    status, code = next(
        ((status, code) for kind, status, code in _CODES if isinstance(exc, kind)), (500, "INTERNAL_ERROR")
    )
    headers = rate_headers(verdict) if verdict is not None else {}
    details: dict[str, Any] | None = None
    message = exc.message
    if isinstance(exc, InsufficientCredits):
        message = "Insufficient credits for this operation"
        details = {"credits_required": exc.required, "credits_available": exc.available}
    elif isinstance(exc, RateLimited):
        message = "Rate limit exceeded"
        details = {"limit": exc.scope, "retry_after": exc.retry_after}
        headers = rate_headers(RateVerdict(limit=exc.limit, remaining=0, reset=exc.reset, scope=exc.scope))
        headers["Retry-After"] = str(max(exc.retry_after, 1))
    elif isinstance(exc, InvalidRequest) and exc.field:
        details = {"field": exc.field}
    elif isinstance(exc, NotFound):
        message = "Order not found"
    elif isinstance(exc, KeyExpired):
        message = "API key expired"
    elif isinstance(exc, Unauthenticated):
        message = "Invalid or missing API key"
    elif isinstance(exc, AccountSuspended):
        message = "Account suspended"
    elif isinstance(exc, ServiceUnavailable):
        headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return _envelope(status, code, message, details, headers)


def _verdict(request: Request[Any, Any, Any]) -> RateVerdict | None:
    verdict = request.state.get("rate_verdict") if hasattr(request.state, "get") else None
    return verdict if isinstance(verdict, RateVerdict) else None


def handle_domain_error(request: Request[Any, Any, Any], exc: DomainError) -> Response[ErrorResponse]:
    return error_response(exc, _verdict(request))


def handle_http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[ErrorResponse]:
    headers = rate_headers(verdict) if (verdict := _verdict(request)) else {}
    if exc.status_code == 413:
        return _envelope(400, "INVALID_REQUEST", "image too large: request body", None, headers)
    if exc.status_code in (400, 422):
        return _envelope(400, "INVALID_REQUEST", str(exc.detail), None, headers)
    if exc.status_code == 404:
        return _envelope(404, "NOT_FOUND", str(exc.detail), None, headers)
    if exc.status_code == 405:
        headers.update(exc.headers or {})  # Allow
        return _envelope(405, "METHOD_NOT_ALLOWED", str(exc.detail), None, headers)
    return _envelope(
        exc.status_code,
        "INTERNAL_ERROR" if exc.status_code >= 500 else "INVALID_REQUEST",
        str(exc.detail),
        None,
        headers,
    )


def handle_too_deep(request: Request[Any, Any, Any], exc: RecursionError) -> Response[ErrorResponse]:
    """Input nested too deeply for a decoder (msgspec raises RecursionError): the client's fault."""
    return error_response(
        InvalidRequest("Request body must be valid JSON: nested too deeply"), _verdict(request)
    )


def handle_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[ErrorResponse]:
    if (outage := as_unavailable(exc)) is not None:  # PostgreSQL, Redis or the network is down
        log.warning("backing service unavailable on an FtmvAI route: %r", exc)
        return error_response(outage, _verdict(request))
    log.exception("unhandled error on an FtmvAI route", exc_info=exc)
    return _envelope(500, "INTERNAL_ERROR", "Internal server error", None, {})


EXCEPTION_HANDLERS = {
    DomainError: handle_domain_error,
    HTTPException: handle_http_error,
    RecursionError: handle_too_deep,
    Exception: handle_unexpected,
}

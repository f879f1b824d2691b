"""FitInView's error shape, ``{"detail": "…"}``, with the document's status codes.

Maps the domain error hierarchy (and the framework's own HTTP errors) to it, so
nothing on a FitInView route ever answers in another shape, and bad input never
becomes a 500.
"""

from __future__ import annotations

import logging
from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException

from dialects.fitinview.schemas import ErrorResponse
from engine.errors import (
    AccessDenied,
    AccountSuspended,
    Conflict,
    DomainError,
    IdempotencyInProgress,
    IdempotencyMismatch,
    InsufficientCredits,
    InvalidRequest,
    KeyDisabled,
    NotFound,
    RateLimited,
    ServiceUnavailable,
    Unauthenticated,
)
from engine.outage import RETRY_AFTER_SECONDS, as_unavailable
from engine.payments import PaymentDeclined

log = logging.getLogger(__name__)

_STATUS: list[tuple[type[DomainError], int]] = [
    (InvalidRequest, 400),
    (Unauthenticated, 401),
    (InsufficientCredits, 402),
    (PaymentDeclined, 402),
    (KeyDisabled, 403),
    (AccessDenied, 403),
    (NotFound, 404),
    (IdempotencyInProgress, 409),
    (Conflict, 409),
    (IdempotencyMismatch, 422),
    (RateLimited, 429),
    (ServiceUnavailable, 503),
]

_DETAIL: dict[type[DomainError], str] = {
    Unauthenticated: "Missing or invalid API key",
    AccountSuspended: "Account suspended",
    KeyDisabled: "Key disabled",
    InsufficientCredits: "Insufficient credits",
    RateLimited: "Rate limit exceeded",
}


def error_response(exc: DomainError) -> Response[ErrorResponse]:
    status = next((code for kind, code in _STATUS if isinstance(exc, kind)), 500)
    detail = next((text for kind, text in _DETAIL.items() if isinstance(exc, kind)), exc.message)
    headers = {}
    if isinstance(exc, RateLimited):
        headers["Retry-After"] = str(max(exc.retry_after, 1))
    elif isinstance(exc, ServiceUnavailable):
        headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return Response(ErrorResponse(detail=detail), status_code=status, headers=headers)


def handle_domain_error(_: Request[Any, Any, Any], exc: DomainError) -> Response[ErrorResponse]:
    return error_response(exc)


def handle_http_error(_: Request[Any, Any, Any], exc: HTTPException) -> Response[ErrorResponse]:
    status = exc.status_code
    if status == 413:
        return Response(ErrorResponse(detail="image too large: request body"), status_code=400)
    if status in (400, 422):
        return Response(ErrorResponse(detail=str(exc.detail)), status_code=400)
    return Response(ErrorResponse(detail=str(exc.detail)), status_code=status, headers=exc.headers or {})


def handle_too_deep(_: Request[Any, Any, Any], exc: RecursionError) -> Response[ErrorResponse]:
    """Input nested too deeply for a decoder (msgspec raises RecursionError): the client's fault."""
    return error_response(InvalidRequest("Request body must be valid JSON: nested too deeply"))


def handle_unexpected(_: Request[Any, Any, Any], exc: Exception) -> Response[ErrorResponse]:
    if (outage := as_unavailable(exc)) is not None:  # PostgreSQL, Redis or the network is down
        log.warning("backing service unavailable on a FitInView route: %r", exc)
        return error_response(outage)
    log.exception("unhandled error on a FitInView route", exc_info=exc)
    return Response(ErrorResponse(detail="Internal server error"), status_code=500)


EXCEPTION_HANDLERS = {
    DomainError: handle_domain_error,
    HTTPException: handle_http_error,
    RecursionError: handle_too_deep,
    Exception: handle_unexpected,
}

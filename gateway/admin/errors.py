"""The admin API's one error shape, ``{"detail": "…"}``, with a status for every domain error.

Like a dialect's error table: nothing on an admin route answers in another shape, validation
failures name the field, and unexpected errors are logged and answered 500 without details.
"""

from __future__ import annotations

import logging
from typing import Any

import asyncpg
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.types import ExceptionHandlersMap

from engine.errors import (
    AccessDenied,
    Conflict,
    DomainError,
    InsufficientCredits,
    InvalidRequest,
    KeyDisabled,
    NotFound,
    RateLimited,
    ServiceUnavailable,
    Unauthenticated,
)
from engine.outage import RETRY_AFTER_SECONDS, as_unavailable

log = logging.getLogger(__name__)

_STATUS: list[tuple[type[DomainError], int]] = [
    (InvalidRequest, 400),
    (Unauthenticated, 401),
    (AccessDenied, 403),
    (KeyDisabled, 403),
    (NotFound, 404),
    (InsufficientCredits, 409),
    (Conflict, 409),
    (RateLimited, 429),
    (ServiceUnavailable, 503),
]


def _body(detail: str, status: int, headers: dict[str, str] | None = None) -> Response[dict[str, str]]:
    return Response({"detail": detail}, status_code=status, headers=headers or {})


def domain_error(_: Request[Any, Any, Any], exc: DomainError) -> Response[dict[str, str]]:
    status = next((code for kind, code in _STATUS if isinstance(exc, kind)), 500)
    detail = exc.message
    if isinstance(exc, InsufficientCredits):
        detail = f"balance {exc.available} does not cover {exc.required}"
    elif isinstance(exc, InvalidRequest) and exc.field and not detail.startswith(exc.field):
        detail = f"{exc.field}: {detail}"
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)} if isinstance(exc, ServiceUnavailable) else None
    return _body(detail, status, headers)


def validation_error(_: Request[Any, Any, Any], exc: ValidationException) -> Response[dict[str, str]]:
    """Litestar's parameter and body validation: name the field(s) it complains about."""
    problems = []
    for item in exc.extra if isinstance(exc.extra, list) else []:
        if isinstance(item, dict):
            key = str(item.get("key") or item.get("source") or "body")
            if key.endswith("_") and len(key) > 1:
                key = key[:-1]  # ``from_`` is the Python name of the ``from`` query parameter
            problems.append(f"{key}: {item.get('message', 'invalid value')}")
    detail = "; ".join(problems) or str(exc.detail)
    return _body(detail, 400)


def http_error(_: Request[Any, Any, Any], exc: HTTPException) -> Response[dict[str, str]]:
    if exc.status_code == 413:
        return _body("request body too large", 400)
    status = 400 if exc.status_code == 422 else exc.status_code
    return _body(str(exc.detail), status, exc.headers)


def unexpected(_: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, str]]:
    if isinstance(exc, RecursionError):
        return _body("request body is nested too deeply", 400)
    if (outage := as_unavailable(exc)) is not None:  # PostgreSQL, Redis or the network is down
        log.warning("backing service unavailable on an admin route: %r", exc)
        return domain_error(_, outage)
    # Safety nets for limits only the database states; the domain should refuse these first.
    if isinstance(exc, asyncpg.NumericValueOutOfRangeError):
        log.warning("a change ran past a numeric column's range: %s", exc)
        return _body("out of range: the change would take a stored number (a balance) past its limit", 409)
    if isinstance(exc, asyncpg.StringDataRightTruncationError):
        log.warning("a value was longer than its column: %s", exc)
        return _body("a value is longer than the gateway stores", 400)
    if isinstance(exc, asyncpg.CharacterNotInRepertoireError | asyncpg.UntranslatableCharacterError):
        log.warning("a value held text the database can't store: %s", exc)
        return _body("a value holds a NUL byte or other text the gateway can't store", 400)
    log.exception("unhandled error on an admin route", exc_info=exc)
    return _body("Internal server error", 500)


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    ValidationException: validation_error,
    DomainError: domain_error,
    HTTPException: http_error,
    Exception: unexpected,
}

"""One exception tree for both dialects.

Every error raised by the SDK is a :class:`TryonError`. HTTP errors carry the status, the
dialect's error code (FtmvAI's ``error.code`` such as ``INSUFFICIENT_CREDITS``; FitInView
answers only ``{"detail": …}``, so its code is ``None``), the message and the request id (the
``X-Request-Id`` header when the server sends one). Catch a subclass to react to one kind of
failure — :class:`PaymentRequiredError` to top up, :class:`RateLimitError` to back off — or
:class:`TryonError` for all of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Optional

if TYPE_CHECKING:
    from tryon_client.models import Job, Order

__all__ = [
    "APIConnectionError",
    "APIError",
    "AuthenticationError",
    "BadRequestError",
    "ConflictError",
    "DialectError",
    "InvalidInputError",
    "JobFailedError",
    "NotFoundError",
    "PaymentRequiredError",
    "PermissionDeniedError",
    "RateLimitError",
    "ServerError",
    "TryonError",
    "WaitTimeoutError",
    "WebhookVerificationError",
]


class TryonError(Exception):
    """Base of every SDK error."""

    def __init__(
        self,
        message: str,
        *,
        status: Optional[int] = None,
        code: Optional[str] = None,
        request_id: Optional[str] = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.request_id = request_id

    def __str__(self) -> str:
        parts = [self.message]
        if self.status is not None:
            parts.append(f"HTTP {self.status}")
        if self.code:
            parts.append(self.code)
        if self.request_id:
            parts.append(f"request {self.request_id}")
        return parts[0] if len(parts) == 1 else f"{parts[0]} ({', '.join(parts[1:])})"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description (the CLI's ``--json`` error output)."""
        return {
            "type": type(self).__name__,
            "message": self.message,
            "status": self.status,
            "code": self.code,
            "request_id": self.request_id,
        }


class InvalidInputError(TryonError, ValueError):
    """The caller's input was refused before anything was sent (unreadable file, bad size, …)."""


class DialectError(TryonError):
    """The call does not exist in the key's dialect (e.g. a product catalog with a FitInView key)."""


class APIConnectionError(TryonError):
    """The gateway could not be reached or dropped the connection, after every retry."""


class WaitTimeoutError(TryonError):
    """A job or order was still running when the client's wait budget ran out."""

    def __init__(self, message: str, *, job_id: str) -> None:
        super().__init__(message)
        self.job_id = job_id


class WebhookVerificationError(TryonError):
    """A webhook's signature is missing, wrong or too old."""


class APIError(TryonError):
    """The gateway answered with an HTTP error status."""

    def __init__(
        self,
        message: str,
        *,
        status: int,
        code: Optional[str] = None,
        request_id: Optional[str] = None,
        body: Any = None,
        headers: Optional[Mapping[str, str]] = None,
    ) -> None:
        super().__init__(message, status=status, code=code, request_id=request_id)
        self.body = body
        self.headers: dict[str, str] = dict(headers or {})


class BadRequestError(APIError):
    """400 or 422: the request was refused as invalid (nothing was charged)."""


class AuthenticationError(APIError):
    """401: missing, unknown or wrong-dialect API key."""


class PaymentRequiredError(APIError):
    """402: not enough credits (or a declined purchase)."""


class PermissionDeniedError(APIError):
    """403: the key is disabled."""


class NotFoundError(APIError):
    """404: unknown job or order (or another account's)."""


class ConflictError(APIError):
    """409: an Idempotency-Key still being accepted, or a purchase token reused for another pack."""


class RateLimitError(APIError):
    """429 after the client's retries (or a ``Retry-After`` longer than it is willing to wait)."""

    def __init__(self, message: str, *, retry_after: Optional[float] = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "retry_after": self.retry_after}


class ServerError(APIError):
    """5xx after the client's retries."""


class JobFailedError(TryonError):
    """The job (FitInView) or order (FtmvAI) ended ``failed``; ``job`` is its final state."""

    def __init__(self, message: str, *, code: Optional[str], job: Job | Order) -> None:
        super().__init__(message, code=code)
        self.job = job

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "job_id": self.job.id}


_BY_STATUS: dict[int, type[APIError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    402: PaymentRequiredError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    422: BadRequestError,
    429: RateLimitError,
}


def error_class(status: int) -> type[APIError]:
    """The exception class for an HTTP error status."""
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    if status >= 500:
        return ServerError
    return APIError

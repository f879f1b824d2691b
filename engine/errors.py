"""Domain errors raised by the engine: request validation, access and job lookups.

They extend :class:`ledger.errors.DomainError`. None of them knows HTTP; the
dialect routers translate them (FitInView: ``{"detail"}``; FtmvAI: its envelope).
"""

from __future__ import annotations

from ledger.errors import (
    AccessDenied,
    Conflict,
    DomainError,
    InsufficientCredits,
    InvalidRequest,
    NotFound,
    Unauthenticated,
)

__all__ = [
    "AccessDenied",
    "AccountSuspended",
    "Conflict",
    "DomainError",
    "IdempotencyInProgress",
    "IdempotencyMismatch",
    "ImageRejected",
    "InsufficientCredits",
    "InvalidRequest",
    "KeyDisabled",
    "KeyExpired",
    "NotFound",
    "RateLimited",
    "ServiceUnavailable",
    "Unauthenticated",
]


class ImageRejected(InvalidRequest):
    """An input image could not be used: bad URL, failed fetch, too large, wrong format.

    ``message`` is one of the contract's words (``invalid URL``, ``image fetch
    failed``, ``image too large``, ``unsupported image format``), optionally
    followed by details.
    """


class KeyDisabled(DomainError):
    """The key exists but has been disabled by ops (or automatically)."""


class AccountSuspended(KeyDisabled):
    """The key's account is suspended by ops: every key of it is refused like a disabled one."""

    def __init__(self) -> None:
        super().__init__("Account suspended")


class KeyExpired(Unauthenticated):
    """The key's ``expires_at`` has passed: it no longer authenticates (a 401, like a wrong key)."""

    def __init__(self) -> None:
        super().__init__("API key expired")


class RateLimited(DomainError):
    """A per-key or per-plan limit is exhausted.

    ``retry_after`` is in whole seconds; ``limit``/``remaining``/``reset`` describe
    the window that ran out; ``scope`` names it (``minute``, ``hour``, ``day``,
    ``concurrent``, ``read``).
    """

    def __init__(self, *, retry_after: int, limit: int, reset: int, scope: str) -> None:
        super().__init__("Rate limit exceeded")
        self.retry_after = retry_after
        self.limit = limit
        self.remaining = 0
        self.reset = reset
        self.scope = scope


class IdempotencyMismatch(DomainError):
    """The Idempotency-Key was used before with a different request body."""

    def __init__(self) -> None:
        super().__init__("Idempotency-Key reused with a different request")


class IdempotencyInProgress(DomainError):
    """A request with this Idempotency-Key is still being accepted."""

    def __init__(self) -> None:
        super().__init__("A request with this Idempotency-Key is still being processed; retry shortly")


class ServiceUnavailable(DomainError):
    """A backing service (database, Redis, object storage) could not be reached."""

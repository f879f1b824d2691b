"""The root of the domain's error hierarchy, and the ledger's own errors.

The root lives here, in the lowest package that raises domain errors, so every
layer above (engine, dialects) extends one hierarchy. Domain errors carry facts,
never HTTP status codes: each dialect's router maps them to its own error shape.
"""

from __future__ import annotations


class DomainError(Exception):
    """Base of every error the domain raises on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRequest(DomainError):
    """The request is malformed or breaks a documented rule.

    ``field`` names the offending request field where there is one.
    """

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class Unauthenticated(DomainError):
    """No credential, an unknown one, or one of the wrong kind (an API key of the other dialect)."""


class AccessDenied(DomainError):
    """A valid caller (key or operator) asked for something it may not do."""


class NotFound(DomainError):
    """The thing asked for does not exist, or is not the caller's to see."""


class Conflict(DomainError):
    """The request contradicts the current state (for example a second test key)."""


class InsufficientCredits(DomainError):
    """The account's balance does not cover the price of the job."""

    def __init__(self, required: int, available: int) -> None:
        super().__init__("Insufficient credits")
        self.required = required
        self.available = available

"""Bodies and query types of the account and key routes (:mod:`gateway.admin.accounts`).

A key is only ever shown by its prefix (``key_hint``); the plaintext key and webhook secret
appear once, in the answer that creates or rotates them.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal

import msgspec
from litestar.params import Parameter

from gateway.admin.params import Email, GraceSeconds, Name, Price, Reason

DialectFilter = Annotated[
    Literal["fitinview", "ftmvai"] | None, Parameter(description="Only accounts of this dialect")
]
PlanFilter = Annotated[Literal["free", "paid"] | None, Parameter(description="Only accounts on this plan")]
PriceName = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]


class AccountSummary(msgspec.Struct, kw_only=True):
    id: int
    name: str
    dialect: str
    plan: str
    email: str | None
    credits_remaining: int
    suspended: bool
    erased_at: datetime | None
    created_at: datetime


class AccountPage(msgspec.Struct, kw_only=True):
    accounts: list[AccountSummary]
    next_cursor: str | None


class KeyOut(msgspec.Struct, kw_only=True):
    id: int
    prefix: str
    """The key's first characters (``key_hint``), never the key."""
    dialect: str
    mode: str
    name: str
    created_at: datetime
    last_used_at: datetime | None
    """Lags by up to one sweep interval (kept in Redis, written in batches)."""
    expires_at: datetime | None
    disabled: bool
    disabled_reason: str | None
    previous_key_valid_until: datetime | None
    """During a rotation's grace period: until when the replaced secret still works."""
    previous_webhook_secret_valid_until: datetime | None


class KeyList(msgspec.Struct, kw_only=True):
    keys: list[KeyOut]


class UsageDayOut(msgspec.Struct, kw_only=True):
    day: date
    jobs_submitted: int
    jobs_succeeded: int
    jobs_failed: int
    credits_debited: int
    credits_refunded: int
    credits_granted: int
    credits_purchased: int
    credits_adjusted: int
    credits_reversed: int
    generation_seconds: float


class Usage(msgspec.Struct, kw_only=True):
    since: date
    """The first UTC day counted (the last 30 days, today included)."""
    jobs_submitted: int
    jobs_succeeded: int
    jobs_failed: int
    credits_debited: int
    credits_refunded: int
    days: list[UsageDayOut]
    """Only days with activity, oldest first."""


class AccountFull(msgspec.Struct, kw_only=True):
    """``GET /admin/accounts/{id}``: everything ops need about one account."""

    id: int
    name: str
    dialect: str
    plan: str
    credits_remaining: int
    ledger_sum: int
    """The sum of the account's ledger entries; equal to ``credits_remaining`` when all is well."""
    prices: dict[str, int]
    """The account's price overrides (price book name → credits); defaults apply to the rest."""
    email: str | None
    suspended: bool
    suspended_reason: str | None
    erased_at: datetime | None
    created_at: datetime
    keys: list[KeyOut]
    usage: Usage


class PatchAccount(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Only the fields given change. ``prices`` replaces the overrides (``{}`` clears them);
    ``email: null`` clears the email; changing ``suspended`` needs a ``reason``."""

    name: Name | msgspec.UnsetType = msgspec.UNSET
    email: Email | msgspec.UnsetType | None = msgspec.UNSET
    plan: Literal["free", "paid"] | msgspec.UnsetType = msgspec.UNSET
    prices: dict[PriceName, Price] | msgspec.UnsetType = msgspec.UNSET
    suspended: bool | msgspec.UnsetType = msgspec.UNSET
    reason: Reason | None = None


class RotateBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    grace_seconds: GraceSeconds
    """How long the replaced secret keeps working (0: refused at once; at most 30 days)."""


class KeyRotated(msgspec.Struct, kw_only=True):
    id: int
    key: str
    """The new key: shown once, never again."""
    prefix: str
    mode: str
    name: str
    previous_valid_until: datetime | None


class WebhookSecretRotated(msgspec.Struct, kw_only=True):
    id: int
    webhook_secret: str
    """The new ``whsec_…`` secret: shown once, never again."""
    previous_valid_until: datetime | None


class Erasure(msgspec.Struct, kw_only=True):
    account_id: int
    erased_at: str
    keys_disabled: list[int]
    jobs_scrubbed: int
    idempotency_keys_deleted: int
    webhook_events_scrubbed: int
    objects_deleted: int

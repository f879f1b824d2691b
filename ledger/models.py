"""Plain records the ledger hands to the layers above (no ORM objects leak out)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import msgspec

from ledger.keys import Dialect, KeyMode


class AccountRecord(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    name: str
    dialect: Dialect
    plan: str
    balance: int
    prices: dict[str, Any]
    created_at: datetime
    email: str | None = None
    suspended: bool = False
    suspended_reason: str | None = None
    erased_at: datetime | None = None


class ApiKeyRecord(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    account_id: int
    dialect: Dialect
    mode: KeyMode
    name: str
    key_hint: str
    webhook_secret: str | None
    disabled: bool
    disabled_reason: str | None
    created_at: datetime
    expires_at: datetime | None = None
    last_used_at: datetime | None = None
    previous_key_expires_at: datetime | None = None
    """Until when the secret replaced by the last rotation still authenticates (None: not at all)."""
    previous_webhook_secret: str | None = None
    previous_webhook_secret_expires_at: datetime | None = None
    """Until when deliveries are also signed with ``previous_webhook_secret`` (FitInView)."""


class MintedKey(msgspec.Struct, frozen=True, kw_only=True):
    """A freshly minted key: the only moment the plaintext key and secret exist."""

    record: ApiKeyRecord
    plaintext: str
    webhook_secret: str | None


class RotatedKey(msgspec.Struct, frozen=True, kw_only=True):
    """A key after rotation: the new plaintext (shown once) and the old secret's last moment."""

    record: ApiKeyRecord
    plaintext: str | None = None
    webhook_secret: str | None = None
    previous_valid_until: datetime | None


class UsageDayRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One UTC day of an account's usage, summed over dialects and backends (``usage_daily``)."""

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


class EntryRecord(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    account_id: int
    kind: str
    amount: int
    balance_after: int
    job_id: int | None
    reason: str
    reference: str | None
    created_at: datetime


class Actor(msgspec.Struct, frozen=True, kw_only=True):
    """Who performs an admin write, for the audit trail: an operator's name and the request id.

    The HTTP admin API builds it from the authenticated operator; the CLI from ``--operator``.
    """

    operator: str
    request_id: str | None = None


class OperatorRecord(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    name: str
    role: str
    token_hint: str
    disabled: bool
    created_at: datetime | None


class AuditRecord(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    operator: str
    action: str
    target_type: str
    target_id: str
    account_id: int | None
    reason: str
    change: dict[str, Any]
    request_id: str | None
    created_at: datetime

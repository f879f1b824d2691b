"""Plain records the ledger hands to the layers above (no ORM objects leak out)."""

from __future__ import annotations

from datetime import datetime
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


class MintedKey(msgspec.Struct, frozen=True, kw_only=True):
    """A freshly minted key: the only moment the plaintext key and secret exist."""

    record: ApiKeyRecord
    plaintext: str
    webhook_secret: str | None


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

"""Request and response bodies of the admin routes (their limits: :mod:`gateway.admin.params`)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec

from gateway.admin.params import Credits, Name, OperatorName, Reason


class CreateAccount(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: Name
    dialect: Literal["fitinview", "ftmvai"]
    plan: Literal["free", "paid"] = "paid"
    credits: Credits = 0


class AccountOut(msgspec.Struct, kw_only=True):
    id: int
    name: str
    dialect: str
    plan: str
    credits_remaining: int


class CreateKey(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    mode: Literal["live", "test"]
    name: Name | Literal[""] = ""
    expires_at: datetime | None = None


class KeyCreated(msgspec.Struct, kw_only=True):
    id: int
    key: str
    mode: str
    name: str
    webhook_secret: str | None
    expires_at: datetime | None = None


class GrantCredits(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    amount: Credits
    reason: Reason


class Balance(msgspec.Struct, kw_only=True):
    credits_remaining: int


class ReasonBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The body of an action that must say why (refund, cancel, disable, erasure …)."""

    reason: Reason


class OptionalReason(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    reason: Reason | None = None


class KeyState(msgspec.Struct, kw_only=True):
    id: int
    mode: str
    disabled: bool
    disabled_reason: str | None = None


# operators ----------------------------------------------------------------------------
class CreateOperator(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: OperatorName
    role: Literal["viewer", "support", "admin"]


class OperatorOut(msgspec.Struct, kw_only=True):
    name: str
    role: str
    token_hint: str
    disabled: bool
    created_at: datetime | None


class OperatorCreated(OperatorOut, kw_only=True):
    token: str
    """Shown once."""


class OperatorList(msgspec.Struct, kw_only=True):
    operators: list[OperatorOut]


# audit --------------------------------------------------------------------------------
class AuditOut(msgspec.Struct, kw_only=True):
    id: int
    operator: str
    action: str
    target: str
    """``type:id``, e.g. ``job:42`` or ``account:7``."""
    account_id: int | None
    reason: str
    change: dict[str, object]
    request_id: str | None
    created_at: datetime


class AuditPage(msgspec.Struct, kw_only=True):
    entries: list[AuditOut]
    next_cursor: str | None

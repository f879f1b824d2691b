"""Request and response bodies of the admin routes."""

from __future__ import annotations

from typing import Literal

import msgspec


class CreateAccount(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: str
    dialect: Literal["fitinview", "ftmvai"]
    plan: Literal["free", "paid"] = "paid"
    credits: int = 0


class AccountOut(msgspec.Struct, kw_only=True):
    id: int
    name: str
    dialect: str
    plan: str
    credits_remaining: int


class AccountDetail(AccountOut, kw_only=True):
    ledger_sum: int
    prices: dict[str, int]


class CreateKey(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    mode: Literal["live", "test"]
    name: str = ""


class KeyCreated(msgspec.Struct, kw_only=True):
    id: int
    key: str
    mode: str
    name: str
    webhook_secret: str | None


class GrantCredits(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    amount: int
    reason: str


class Balance(msgspec.Struct, kw_only=True):
    credits_remaining: int


class KeyState(msgspec.Struct, kw_only=True):
    id: int
    mode: str
    disabled: bool

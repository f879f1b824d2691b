"""What ops do through the admin routes. Each function runs in the caller's transaction."""

from __future__ import annotations

from engine.errors import InvalidRequest
from engine.runtime import Runtime
from gateway.admin.schemas import AccountDetail, AccountOut, CreateAccount, CreateKey, KeyCreated, KeyState
from ledger.models import AccountRecord


def _account_out(account: AccountRecord) -> AccountOut:
    return AccountOut(
        id=account.id,
        name=account.name,
        dialect=account.dialect,
        plan=account.plan,
        credits_remaining=account.balance,
    )


async def open_account(runtime: Runtime, request: CreateAccount) -> AccountOut:
    if not request.name.strip():
        raise InvalidRequest("name must not be empty", field="name")
    if request.credits < 0:
        raise InvalidRequest("credits must not be negative", field="credits")
    account = await runtime.ledger.open_account(
        name=request.name, dialect=request.dialect, plan=request.plan, credits=request.credits
    )
    return _account_out(account)


async def account_detail(runtime: Runtime, account_id: int) -> AccountDetail:
    account = await runtime.ledger.account(account_id)
    out = _account_out(account)
    return AccountDetail(
        **{field: getattr(out, field) for field in out.__struct_fields__},
        ledger_sum=await runtime.ledger.ledger_sum(account_id),
        prices={name: int(value) for name, value in account.prices.items()},
    )


async def mint_key(runtime: Runtime, account_id: int, request: CreateKey) -> KeyCreated:
    minted = await runtime.ledger.mint_key(account_id, mode=request.mode, name=request.name)
    return KeyCreated(
        id=minted.record.id,
        key=minted.plaintext,
        mode=minted.record.mode,
        name=minted.record.name,
        webhook_secret=minted.webhook_secret,
    )


async def adjust_credits(runtime: Runtime, account_id: int, amount: int, reason: str) -> int:
    if amount == 0:
        raise InvalidRequest("amount must not be zero", field="amount")
    if not reason.strip():
        raise InvalidRequest("reason must not be empty", field="reason")
    return await runtime.ledger.adjust(account_id, amount, reason=reason)


async def set_key_disabled(runtime: Runtime, key_id: int, disabled: bool) -> KeyState:
    key = await runtime.ledger.set_key_disabled(key_id, disabled=disabled, reason="disabled by ops")
    return KeyState(id=key.id, mode=key.mode, disabled=key.disabled)

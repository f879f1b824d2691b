"""Admin routes for accounts, their keys and their credits. Each write owns its transaction.

Reads call :class:`ledger.accounts.AccountAdmin` (search, detail, keys); writes call it (or
:func:`engine.erasure.erase`) inside ``runtime.db.transaction()``, where the change and its
audit entry commit together.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import msgspec
from litestar import delete, get, patch, post
from litestar.di import NamedDependency
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath, JSONBody

from engine import erasure, metrics
from engine.runtime import Runtime
from gateway.admin.accounts_schemas import (
    AccountFull,
    AccountPage,
    AccountSummary,
    DialectFilter,
    Erasure,
    KeyList,
    KeyOut,
    KeyRotated,
    PatchAccount,
    PlanFilter,
    RotateBody,
    Usage,
    UsageDayOut,
    WebhookSecretRotated,
)
from gateway.admin.params import Cursor, Id, Limit, SearchText, before_id
from gateway.admin.schemas import (
    AccountOut,
    Balance,
    CreateAccount,
    CreateKey,
    GrantCredits,
    KeyCreated,
    KeyState,
    OptionalReason,
    ReasonBody,
)
from ledger.accounts import USAGE_DAYS, AccountChanges, AccountDetailRecord, AccountQuery
from ledger.models import AccountRecord, Actor, ApiKeyRecord


def account_out(account: AccountRecord) -> AccountOut:
    return AccountOut(
        id=account.id,
        name=account.name,
        dialect=account.dialect,
        plan=account.plan,
        credits_remaining=account.balance,
    )


def key_state(key: ApiKeyRecord) -> KeyState:
    return KeyState(id=key.id, mode=key.mode, disabled=key.disabled, disabled_reason=key.disabled_reason)


@post("/accounts", status_code=201, opt={"role": "admin"})
async def create_account(
    data: JSONBody[CreateAccount], runtime: NamedDependency[Runtime], actor: NamedDependency[Actor]
) -> AccountOut:
    async with runtime.db.transaction():
        account = await runtime.accounts.open_account(
            actor, name=data.name, dialect=data.dialect, plan=data.plan, credits=data.credits
        )
    metrics.credits_moved("grant", data.credits)
    return account_out(account)


def account_summary(account: AccountRecord) -> AccountSummary:
    return AccountSummary(
        id=account.id,
        name=account.name,
        dialect=account.dialect,
        plan=account.plan,
        email=account.email,
        credits_remaining=account.balance,
        suspended=account.suspended,
        erased_at=account.erased_at,
        created_at=account.created_at,
    )


def key_out(key: ApiKeyRecord) -> KeyOut:
    return KeyOut(
        id=key.id,
        prefix=key.key_hint,
        dialect=key.dialect,
        mode=key.mode,
        name=key.name,
        created_at=key.created_at,
        last_used_at=key.last_used_at,
        expires_at=key.expires_at,
        disabled=key.disabled,
        disabled_reason=key.disabled_reason,
        previous_key_valid_until=key.previous_key_expires_at,
        previous_webhook_secret_valid_until=key.previous_webhook_secret_expires_at
        if key.previous_webhook_secret
        else None,
    )


def account_full(detail: AccountDetailRecord, since: date) -> AccountFull:
    account = detail.account
    days = [UsageDayOut(**msgspec.structs.asdict(day)) for day in detail.usage]
    return AccountFull(
        id=account.id,
        name=account.name,
        dialect=account.dialect,
        plan=account.plan,
        credits_remaining=account.balance,
        ledger_sum=detail.ledger_sum,
        prices={name: int(value) for name, value in account.prices.items()},
        email=account.email,
        suspended=account.suspended,
        suspended_reason=account.suspended_reason,
        erased_at=account.erased_at,
        created_at=account.created_at,
        keys=[key_out(key) for key in detail.keys],
        usage=Usage(
            since=since,
            jobs_submitted=sum(day.jobs_submitted for day in days),
            jobs_succeeded=sum(day.jobs_succeeded for day in days),
            jobs_failed=sum(day.jobs_failed for day in days),
            credits_debited=sum(day.credits_debited for day in days),
            credits_refunded=sum(day.credits_refunded for day in days),
            days=days,
        ),
    )


def patch_changes(data: PatchAccount) -> AccountChanges:
    return AccountChanges(
        name=data.name,
        email=data.email,
        plan=data.plan,
        prices=data.prices if data.prices is msgspec.UNSET else dict(data.prices),
        suspended=data.suspended,
        reason=data.reason,
    )


@get("/accounts", opt={"role": "viewer"})
async def search_accounts(
    runtime: NamedDependency[Runtime],
    q: SearchText = None,
    dialect: DialectFilter = None,
    plan: PlanFilter = None,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> AccountPage:
    found = await runtime.accounts.search(
        AccountQuery(q=q, dialect=dialect, plan=plan, before_id=before_id(cursor), limit=limit + 1)
    )
    page = found[:limit]
    return AccountPage(
        accounts=[account_summary(account) for account in page],
        next_cursor=str(page[-1].id) if len(found) > limit and page else None,
    )


@get("/accounts/{account_id:int}", opt={"role": "viewer"})
async def get_account(account_id: FromPath[Id], runtime: NamedDependency[Runtime]) -> AccountFull:
    detail = await runtime.accounts.detail(account_id)
    return account_full(detail, usage_since())


def usage_since() -> date:
    return (datetime.now(UTC) - timedelta(days=USAGE_DAYS - 1)).date()


@patch("/accounts/{account_id:int}", opt={"role": "admin"})
async def update_account(
    account_id: FromPath[Id],
    data: JSONBody[PatchAccount],
    runtime: NamedDependency[Runtime],
    actor: NamedDependency[Actor],
) -> AccountFull:
    async with runtime.db.transaction():
        await runtime.accounts.update(actor, account_id, patch_changes(data))
    await runtime.callers.invalidate(account_ids=[account_id])  # after the commit: plan, prices, suspension
    return account_full(await runtime.accounts.detail(account_id), usage_since())


@delete("/accounts/{account_id:int}", status_code=200, opt={"role": "admin"})
async def erase_account(
    account_id: FromPath[Id],
    data: JSONBody[ReasonBody],
    runtime: NamedDependency[Runtime],
    actor: NamedDependency[Actor],
) -> Erasure:
    async with runtime.db.transaction():
        report = await erasure.erase(runtime, actor, account_id, data.reason)
    await runtime.callers.invalidate(account_ids=[account_id])
    return Erasure(**msgspec.structs.asdict(report))


@get("/accounts/{account_id:int}/keys", opt={"role": "viewer"})
async def list_keys(account_id: FromPath[Id], runtime: NamedDependency[Runtime]) -> KeyList:
    return KeyList(keys=[key_out(key) for key in await runtime.accounts.keys(account_id)])


@post("/keys/{key_id:int}/rotate", status_code=200, opt={"role": "admin"})
async def rotate_key(
    key_id: FromPath[Id],
    data: JSONBody[RotateBody],
    runtime: NamedDependency[Runtime],
    actor: NamedDependency[Actor],
) -> KeyRotated:
    async with runtime.db.transaction():
        rotated = await runtime.accounts.rotate(actor, key_id, data.grace_seconds)
    await runtime.callers.invalidate(key_ids=[key_id])
    assert rotated.plaintext is not None
    return KeyRotated(
        id=rotated.record.id,
        key=rotated.plaintext,
        prefix=rotated.record.key_hint,
        mode=rotated.record.mode,
        name=rotated.record.name,
        previous_valid_until=rotated.previous_valid_until,
    )


@post("/keys/{key_id:int}/webhook-secret/rotate", status_code=200, opt={"role": "admin"})
async def rotate_webhook_secret(
    key_id: FromPath[Id],
    data: JSONBody[RotateBody],
    runtime: NamedDependency[Runtime],
    actor: NamedDependency[Actor],
) -> WebhookSecretRotated:
    async with runtime.db.transaction():
        rotated = await runtime.accounts.rotate_webhook_secret(actor, key_id, data.grace_seconds)
    await runtime.callers.invalidate(key_ids=[key_id])
    assert rotated.webhook_secret is not None
    return WebhookSecretRotated(
        id=rotated.record.id,
        webhook_secret=rotated.webhook_secret,
        previous_valid_until=rotated.previous_valid_until,
    )


@post("/accounts/{account_id:int}/keys", status_code=201, opt={"role": "admin"})
async def create_key(
    account_id: FromPath[Id],
    data: JSONBody[CreateKey],
    runtime: NamedDependency[Runtime],
    actor: NamedDependency[Actor],
) -> KeyCreated:
    async with runtime.db.transaction():
        minted = await runtime.accounts.mint_key(
            actor, account_id, mode=data.mode, name=data.name, expires_at=data.expires_at
        )
    return KeyCreated(
        id=minted.record.id,
        key=minted.plaintext,
        mode=minted.record.mode,
        name=minted.record.name,
        webhook_secret=minted.webhook_secret,
        expires_at=minted.record.expires_at,
    )


@post("/accounts/{account_id:int}/credits", status_code=200, opt={"role": "support"})
async def adjust_credits(
    account_id: FromPath[Id],
    data: JSONBody[GrantCredits],
    runtime: NamedDependency[Runtime],
    actor: NamedDependency[Actor],
) -> Balance:
    async with runtime.db.transaction():
        balance = await runtime.accounts.adjust_credits(actor, account_id, data.amount, data.reason)
    metrics.credits_moved("adjust", data.amount)
    return Balance(credits_remaining=balance)


@post("/keys/{key_id:int}/disable", status_code=200, opt={"role": "support"})
async def disable_key(
    key_id: FromPath[Id],
    data: JSONBody[ReasonBody],
    runtime: NamedDependency[Runtime],
    actor: NamedDependency[Actor],
) -> KeyState:
    async with runtime.db.transaction():
        key = await runtime.accounts.set_key_disabled(actor, key_id, disabled=True, reason=data.reason)
    await runtime.callers.invalidate(key_ids=[key_id])
    return key_state(key)


@post("/keys/{key_id:int}/enable", status_code=200, opt={"role": "support"})
async def enable_key(
    key_id: FromPath[Id],
    runtime: NamedDependency[Runtime],
    actor: NamedDependency[Actor],
    data: JSONBody[OptionalReason | None] = None,
) -> KeyState:
    async with runtime.db.transaction():
        key = await runtime.accounts.set_key_disabled(
            actor, key_id, disabled=False, reason=data.reason if data else None
        )
    await runtime.callers.invalidate(key_ids=[key_id])
    return key_state(key)


ROUTES: list[HTTPRouteHandler] = [
    search_accounts,
    create_account,
    get_account,
    update_account,
    erase_account,
    list_keys,
    rotate_key,
    rotate_webhook_secret,
    create_key,
    adjust_credits,
    disable_key,
    enable_key,
]

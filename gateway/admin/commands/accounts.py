"""``tryon-gateway admin accounts list|show|create|suspend|unsuspend|erase``.

The same service functions as ``/admin/accounts`` (:class:`ledger.accounts.AccountAdmin`,
:func:`engine.erasure.erase`), the same output shapes, audited under ``--operator``.
"""

from __future__ import annotations

import argparse
from typing import Any

import msgspec

from engine import erasure
from gateway.admin.accounts import account_full, account_summary, usage_since
from gateway.admin.commands import CommandContext, command, group
from ledger.accounts import AccountQuery


async def create(ctx: CommandContext, args: argparse.Namespace) -> Any:
    async with ctx.runtime.db.transaction():
        return await ctx.runtime.accounts.open_account(
            ctx.actor, name=args.name, dialect=args.dialect, plan=args.plan, credits=args.credits
        )


async def list_accounts(ctx: CommandContext, args: argparse.Namespace) -> Any:
    found = await ctx.runtime.accounts.search(
        AccountQuery(q=args.q, dialect=args.dialect, plan=args.plan, limit=args.limit)
    )
    return [account_summary(account) for account in found]


async def show(ctx: CommandContext, args: argparse.Namespace) -> Any:
    return account_full(await ctx.runtime.accounts.detail(args.account_id), usage_since())


async def suspend(ctx: CommandContext, args: argparse.Namespace) -> Any:
    async with ctx.runtime.db.transaction():
        account = await ctx.runtime.accounts.set_suspended(
            ctx.actor, args.account_id, suspended=not args.undo, reason=args.reason
        )
    await ctx.runtime.callers.invalidate(account_ids=[args.account_id])  # after the commit
    summary: dict[str, Any] = msgspec.to_builtins(account_summary(account))
    return summary | {"suspended_reason": account.suspended_reason}


async def unsuspend(ctx: CommandContext, args: argparse.Namespace) -> Any:
    args.undo = True
    return await suspend(ctx, args)


async def erase(ctx: CommandContext, args: argparse.Namespace) -> Any:
    async with ctx.runtime.db.transaction():
        report = await erasure.erase(ctx.runtime, ctx.actor, args.account_id, args.reason)
    await ctx.runtime.callers.invalidate(account_ids=[args.account_id])
    return report


def register(groups: Any) -> None:
    accounts = group(groups, "accounts", "customer accounts")
    parser = command(accounts, "list", "search accounts (newest first)", list_accounts)
    parser.add_argument("q", nargs="?", default=None, help="an id, a name or email prefix, or a key prefix")
    parser.add_argument("--dialect", choices=("fitinview", "ftmvai"))
    parser.add_argument("--plan", choices=("free", "paid"))
    parser.add_argument("--limit", type=int, default=50)
    parser = command(accounts, "show", "an account: balance, keys, usage of the last 30 days", show)
    parser.add_argument("account_id", type=int)
    parser = command(accounts, "create", "open an account", create)
    parser.add_argument("name")
    parser.add_argument("--dialect", required=True, choices=("fitinview", "ftmvai"))
    parser.add_argument("--plan", default="paid", choices=("free", "paid"))
    parser.add_argument("--credits", type=int, default=0)
    parser = command(accounts, "suspend", "refuse the account's keys (403); queued jobs finish", suspend)
    parser.add_argument("account_id", type=int)
    parser.add_argument("--reason", required=True)
    parser.add_argument("--undo", action="store_true", help="lift the suspension instead")
    parser = command(accounts, "unsuspend", "lift a suspension", unsuspend)
    parser.add_argument("account_id", type=int)
    parser.add_argument("--reason", required=True)
    parser = command(accounts, "erase", "erase the account's personal data and stored objects", erase)
    parser.add_argument("account_id", type=int)
    parser.add_argument("--reason", required=True)

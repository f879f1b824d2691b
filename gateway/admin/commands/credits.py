"""``tryon-gateway admin credits grant|adjust``: every movement with a reason, audited."""

from __future__ import annotations

import argparse
from typing import Any

from gateway.admin.commands import CommandContext, command, group
from ledger.errors import InvalidRequest


async def grant(ctx: CommandContext, args: argparse.Namespace) -> Any:
    if args.amount <= 0:
        raise InvalidRequest("a grant must be positive; `credits adjust` takes credits back", field="amount")
    return await adjust(ctx, args)


async def adjust(ctx: CommandContext, args: argparse.Namespace) -> Any:
    async with ctx.runtime.db.transaction():
        balance = await ctx.runtime.accounts.adjust_credits(
            ctx.actor, args.account_id, args.amount, args.reason
        )
    return {"account_id": args.account_id, "amount": args.amount, "credits_remaining": balance}


def register(groups: Any) -> None:
    credits = group(groups, "credits", "grant or correct an account's credits")
    parser = command(credits, "grant", "add credits", grant)
    parser.add_argument("account_id", type=int)
    parser.add_argument("amount", type=int)
    parser.add_argument("--reason", required=True)
    parser = command(credits, "adjust", "a correction in either direction (never below zero)", adjust)
    parser.add_argument("account_id", type=int)
    parser.add_argument("amount", type=int, help="negative to take credits back")
    parser.add_argument("--reason", required=True)

"""``tryon-gateway admin keys list|create|disable|enable|rotate|rotate-webhook-secret``.

A key is printed by its prefix; the plaintext key (and webhook secret) only by ``create`` and
``rotate``, once.
"""

from __future__ import annotations

import argparse
from datetime import datetime
from typing import Any

from gateway.admin.accounts import key_out
from gateway.admin.commands import CommandContext, command, group
from ledger.errors import InvalidRequest


def _when(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidRequest(
            "not an ISO 8601 date-time, e.g. 2027-01-31T00:00:00Z", field="expires_at"
        ) from None
    if moment.tzinfo is None:
        raise InvalidRequest("give a time zone, e.g. 2027-01-31T00:00:00Z", field="expires_at")
    return moment


async def list_keys(ctx: CommandContext, args: argparse.Namespace) -> Any:
    return [key_out(key) for key in await ctx.runtime.accounts.keys(args.account_id)]


async def create(ctx: CommandContext, args: argparse.Namespace) -> Any:
    async with ctx.runtime.db.transaction():
        minted = await ctx.runtime.accounts.mint_key(
            ctx.actor, args.account_id, mode=args.mode, name=args.name, expires_at=_when(args.expires_at)
        )
    return {
        "id": minted.record.id,
        "key": minted.plaintext,
        "mode": minted.record.mode,
        "webhook_secret": minted.webhook_secret,
        "expires_at": minted.record.expires_at,
        "note": "shown once",
    }


async def disable(ctx: CommandContext, args: argparse.Namespace) -> Any:
    async with ctx.runtime.db.transaction():
        key = await ctx.runtime.accounts.set_key_disabled(
            ctx.actor, args.key_id, disabled=True, reason=args.reason
        )
    await ctx.runtime.callers.invalidate(key_ids=[args.key_id])  # after the commit
    return key_out(key)


async def enable(ctx: CommandContext, args: argparse.Namespace) -> Any:
    async with ctx.runtime.db.transaction():
        key = await ctx.runtime.accounts.set_key_disabled(
            ctx.actor, args.key_id, disabled=False, reason=args.reason
        )
    await ctx.runtime.callers.invalidate(key_ids=[args.key_id])
    return key_out(key)


async def rotate(ctx: CommandContext, args: argparse.Namespace) -> Any:
    async with ctx.runtime.db.transaction():
        rotated = await ctx.runtime.accounts.rotate(ctx.actor, args.key_id, args.grace_seconds)
    await ctx.runtime.callers.invalidate(key_ids=[args.key_id])
    return {
        "id": rotated.record.id,
        "key": rotated.plaintext,
        "prefix": rotated.record.key_hint,
        "previous_valid_until": rotated.previous_valid_until,
        "note": "shown once",
    }


async def rotate_webhook_secret(ctx: CommandContext, args: argparse.Namespace) -> Any:
    async with ctx.runtime.db.transaction():
        rotated = await ctx.runtime.accounts.rotate_webhook_secret(ctx.actor, args.key_id, args.grace_seconds)
    await ctx.runtime.callers.invalidate(key_ids=[args.key_id])
    return {
        "id": rotated.record.id,
        "webhook_secret": rotated.webhook_secret,
        "previous_valid_until": rotated.previous_valid_until,
        "note": "shown once",
    }


def register(groups: Any) -> None:
    keys = group(groups, "keys", "API keys")
    parser = command(keys, "list", "an account's keys (prefixes, never the keys)", list_keys)
    parser.add_argument("account_id", type=int)
    parser = command(keys, "create", "mint a key for an account and print it once", create)
    parser.add_argument("account_id", type=int)
    parser.add_argument("--mode", default="live", choices=("live", "test"))
    parser.add_argument("--name", default="")
    parser.add_argument("--expires-at", default=None, help="ISO 8601, e.g. 2027-01-31T00:00:00Z")
    parser = command(keys, "disable", "disable a key", disable)
    parser.add_argument("key_id", type=int)
    parser.add_argument("--reason", required=True)
    parser = command(keys, "enable", "enable a key again", enable)
    parser.add_argument("key_id", type=int)
    parser.add_argument("--reason", default="")
    parser = command(keys, "rotate", "a new secret for the key, printed once", rotate)
    parser.add_argument("key_id", type=int)
    parser.add_argument(
        "--grace-seconds",
        type=int,
        required=True,
        help="how long the old secret keeps working (0: not at all)",
    )
    parser = command(
        keys, "rotate-webhook-secret", "a new whsec_ for a FitInView key, printed once", rotate_webhook_secret
    )
    parser.add_argument("key_id", type=int)
    parser.add_argument(
        "--grace-seconds", type=int, required=True, help="how long deliveries carry both signatures"
    )

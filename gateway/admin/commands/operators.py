"""``tryon-gateway admin operators create|list|disable``."""

from __future__ import annotations

import argparse
from typing import Any

from gateway.admin.commands import CommandContext, command, group


async def create(ctx: CommandContext, args: argparse.Namespace) -> Any:
    async with ctx.runtime.db.transaction():
        operator, token = await ctx.runtime.operators.create(ctx.actor, name=args.name, role=args.role)
    return {"name": operator.name, "role": operator.role, "token": token, "note": "shown once"}


async def list_operators(ctx: CommandContext, _: argparse.Namespace) -> Any:
    return await ctx.runtime.operators.list()


async def disable(ctx: CommandContext, args: argparse.Namespace) -> Any:
    async with ctx.runtime.db.transaction():
        return await ctx.runtime.operators.set_disabled(
            ctx.actor, args.name, disabled=True, reason=args.reason
        )


def register(groups: Any) -> None:
    operators = group(groups, "operators", "named operators and their roles")
    parser = command(operators, "create", "create an operator and print its token once", create)
    parser.add_argument("name")
    parser.add_argument("--role", required=True, choices=("viewer", "support", "admin"))
    command(operators, "list", "list operators", list_operators)
    parser = command(operators, "disable", "disable an operator's token", disable)
    parser.add_argument("name")
    parser.add_argument("--reason", required=True)

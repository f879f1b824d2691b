"""``tryon-gateway admin …``: the admin API's operations from a shell.

Each command calls the same service function as its admin route, in a transaction owned
here, with the audit trail under the operator named by ``--operator`` (default ``root``).
Output is a readable table (or ``key: value`` lines) by default and JSON with ``--json``.
The database, Redis and S3 come from the production settings or a ``dev`` deployment
(:mod:`gateway.locate`); when they can't be reached the command says so in one line and
exits 2. Each area is a module with ``register(groups)`` adding its sub-commands; a command's
handler is ``async (ctx, args) -> result``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import asyncpg
import msgspec
from redis.exceptions import RedisError

from engine.context import new_request_id
from engine.runtime import Runtime
from gateway.locate import NotReachable, cli_settings, redacted
from ledger.errors import DomainError, InsufficientCredits
from ledger.models import Actor


class CommandContext(msgspec.Struct, kw_only=True):
    runtime: Runtime
    actor: Actor


Handler = Callable[[CommandContext, argparse.Namespace], Awaitable[Any]]


def command(groups: Any, name: str, help: str, handler: Handler) -> argparse.ArgumentParser:
    """Add a sub-command whose work is ``handler``."""
    parser: argparse.ArgumentParser = groups.add_parser(name, help=help)
    parser.set_defaults(admin_handler=handler)
    return parser


def group(groups: Any, name: str, help: str) -> Any:
    """A command group (``accounts``, ``keys`` …) and its sub-command collection."""
    parser = groups.add_parser(name, help=help)
    return parser.add_subparsers(dest=f"{name}_command", required=True)


# output -----------------------------------------------------------------------------------
def _plain(value: Any) -> Any:
    return msgspec.to_builtins(value)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    if isinstance(value, dict | list):
        return msgspec.json.encode(value).decode()
    return str(value)


def render_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "(none)"
    columns = list(rows[0])
    cells = [[_cell(row.get(column)) for column in columns] for row in rows]
    widths = [max(len(column), *(len(line[index]) for line in cells)) for index, column in enumerate(columns)]
    lines = ["  ".join(column.upper().ljust(width) for column, width in zip(columns, widths, strict=True))]
    lines += [
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)) for line in cells
    ]
    return "\n".join(line.rstrip() for line in lines)


def render(result: Any, as_json: bool) -> str:
    if as_json:
        return msgspec.json.encode(result).decode()
    plain = _plain(result)
    if isinstance(plain, list):
        return render_table([row if isinstance(row, dict) else {"value": row} for row in plain])
    if isinstance(plain, dict):
        lists = {  # lists of records become tables; lists of plain values stay one JSON cell
            key: value
            for key, value in plain.items()
            if isinstance(value, list) and value and all(isinstance(item, dict) for item in value)
        }
        width = max((len(key) for key in plain), default=0)
        head = "\n".join(
            f"{key.ljust(width)}  {_cell(value)}" for key, value in plain.items() if key not in lists
        )
        parts = [head, *(f"\n{key}:\n{render_table(value)}" for key, value in lists.items())]
        return "\n".join(part for part in parts if part)
    return _cell(plain)


# running ----------------------------------------------------------------------------------
async def _run(handler: Handler, args: argparse.Namespace) -> Any:
    from engine.worker import make_broker
    from gateway.wiring import build_runtime

    with cli_settings(args.data_dir) as settings:
        runtime = build_runtime(settings)
        try:
            await runtime.start(listen_for_completions=False)
        except (OSError, asyncpg.PostgresError) as exc:
            raise NotReachable(
                f"cannot reach PostgreSQL at {redacted(settings.database_url)} ({exc});"
                " set TRYON_DATABASE_URL, or pass --data-dir DIR of a dev deployment"
            ) from None
        broker = make_broker(runtime)
        try:
            context = CommandContext(
                runtime=runtime, actor=Actor(operator=args.operator, request_id="cli-" + new_request_id())
            )
            return await handler(context, args)
        except RedisError as exc:
            raise NotReachable(
                f"cannot reach Redis at {redacted(settings.redis_url)} ({exc}); set TRYON_REDIS_URL"
            ) from None
        finally:
            broker.close()
            await runtime.close()


def run_admin(args: argparse.Namespace) -> int:
    try:
        result = asyncio.run(_run(args.admin_handler, args))
    except DomainError as exc:
        field = getattr(exc, "field", None)
        message = exc.message
        if isinstance(exc, InsufficientCredits):
            message = f"balance {exc.available} does not cover {exc.required}"
        print(f"tryon-gateway admin: {field + ': ' if field else ''}{message}", file=sys.stderr)
        return 1
    print(render(result, args.json))
    return 0


def add_admin_parser(commands: Any) -> None:
    from gateway.admin.commands import accounts, credits, health, jobs, keys, operators

    admin = commands.add_parser("admin", help="ops tools: accounts, keys, credits, jobs, operators")
    admin.add_argument("--operator", default="root", help="who the audit trail names (default root)")
    admin.add_argument("--json", action="store_true", help="print JSON instead of a table")
    admin.add_argument("--data-dir", default=None, help="a dev deployment's data directory (default .tryon)")
    admin.set_defaults(func=run_admin)
    groups = admin.add_subparsers(dest="admin_group", required=True)
    for area in (accounts, keys, credits, operators, jobs, health):
        area.register(groups)

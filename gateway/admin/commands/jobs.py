"""``tryon-gateway admin jobs list|show|cancel|refund|rerun``: the admin API's job routes.

Same service functions (:mod:`engine.operations`) and the same output shapes as
``/admin/jobs``; a job is named by its ``job_…`` id or its integer order id.
"""

from __future__ import annotations

import argparse
from datetime import datetime
from typing import Any

from engine import operations
from engine.models import JobFilter
from gateway.admin.commands import CommandContext, command, group
from gateway.admin.jobs import detail_out, job_out
from ledger.errors import InvalidRequest


def _when(field: str, text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise InvalidRequest(f"not an ISO 8601 date-time: {text!r}", field=field) from None


async def list_jobs(ctx: CommandContext, args: argparse.Namespace) -> Any:
    if not 1 <= args.limit <= 200:
        raise InvalidRequest("must be 1 to 200", field="limit")
    page = await operations.search(
        ctx.runtime,
        JobFilter(
            account=args.account,
            api_key=args.key,
            dialect=args.dialect,
            kind=args.kind,
            status=args.status,
            error_code=args.error_code,
            backend=args.backend,
            since=_when("since", args.since),
            until=_when("until", args.until),
            limit=args.limit,
        ),
    )
    rows = [job_out(job) for job in page.jobs]
    if args.json:
        return {"jobs": rows, "next_cursor": page.next_cursor}
    return [
        {
            "job_id": row.job_id,
            "order": row.order_id,
            "account": row.account_id,
            "status": row.status,
            "error_code": row.error_code,
            "cost": row.cost_credits,
            "refunded": row.credits_refunded,
            "created_at": row.created_at,
        }
        for row in rows
    ]


async def show(ctx: CommandContext, args: argparse.Namespace) -> Any:
    return detail_out(await operations.detail(ctx.runtime, args.job))


async def cancel(ctx: CommandContext, args: argparse.Namespace) -> Any:
    return job_out(await operations.cancel(ctx.runtime, ctx.actor, args.job, args.reason))


async def refund(ctx: CommandContext, args: argparse.Namespace) -> Any:
    async with ctx.runtime.db.transaction():
        job = await operations.refund(ctx.runtime, ctx.actor, args.job, args.reason)
    return job_out(job)


async def rerun(ctx: CommandContext, args: argparse.Namespace) -> Any:
    return job_out(await operations.rerun(ctx.runtime, ctx.actor, args.job, args.reason))


def register(groups: Any) -> None:
    jobs = group(groups, "jobs", "find, explain, cancel, refund and re-run jobs")
    parser = command(jobs, "list", "search jobs, newest first", list_jobs)
    parser.add_argument("--account", type=int)
    parser.add_argument("--key", type=int, help="API key id")
    parser.add_argument("--dialect", choices=("fitinview", "ftmvai"))
    parser.add_argument("--kind", choices=("tryon", "catalog"))
    parser.add_argument("--status", choices=("queued", "running", "succeeded", "failed"))
    parser.add_argument("--error-code")
    parser.add_argument("--backend", choices=("local", "gemini", "stock"))
    parser.add_argument("--since", help="ISO 8601 date-time")
    parser.add_argument("--until", help="ISO 8601 date-time")
    parser.add_argument("--limit", type=int, default=50)
    parser = command(jobs, "show", "the whole record of one job", show)
    parser.add_argument("job", help="job_… id or integer order id")
    for name, help_text, handler in (
        ("cancel", "end a queued or running job as cancelled (refunded)", cancel),
        ("refund", "a goodwill refund of a finished job, once", refund),
        ("rerun", "run a failed job again as a new, free job", rerun),
    ):
        parser = command(jobs, name, help_text, handler)
        parser.add_argument("job", help="job_… id or integer order id")
        parser.add_argument("--reason", required=True)

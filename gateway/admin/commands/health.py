"""``tryon-gateway admin health``: what ``GET /admin/health`` reports, from a shell."""

from __future__ import annotations

import argparse
from typing import Any

from engine.health import health_report
from gateway.admin.commands import CommandContext, command


async def health(ctx: CommandContext, args: argparse.Namespace) -> Any:
    report = await health_report(ctx.runtime)
    if args.json:
        return report
    last = report.retention.last_run
    queue = report.queue
    return {
        "status": report.status,
        **report.services,
        "ledger": report.ledger.status,
        "ledger_checked_at": report.ledger.checked_at,
        "ledger_problems": report.ledger.problems or None,
        "queued": None if queue is None else queue.queued,
        "running": None if queue is None else queue.running,
        "oldest_queued_at": None if queue is None else queue.oldest_queued_at,
        "retention_days": report.retention.days,
        "retention_last_run": None if last is None else last.finished_at,
        "retention_last_purged": None if last is None else last.jobs_purged,
        "retention_last_error": None if last is None else last.error,
    }


def register(groups: Any) -> None:
    command(groups, "health", "services, the scheduled ledger check, the queue and retention", health)

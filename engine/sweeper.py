"""Heals what crashes leave behind.

- A job committed but never sent (the process died between commit and send, or
  Redis was down) stays ``queued``: it is sent again. Sending twice is harmless
  because running starts with a conditional claim.
- A job ``running`` past its deadline (its worker died, or it hung) is failed
  with ``internal_error`` and refunded per the rule, exactly once.

It also runs the scheduled chores, each at its own interval and once per interval across all
workers, each isolated so one failing never stops the healing above: the retention purge
(:mod:`engine.retention`) and the ledger check (:mod:`engine.health`).
"""

from __future__ import annotations

import logging

import msgspec

from engine import health, key_usage, payments, retention, webhooks
from engine.execution import fail_job
from engine.runtime import Runtime

log = logging.getLogger(__name__)


class SweepReport(msgspec.Struct, frozen=True, kw_only=True):
    requeued: list[int]
    expired: list[int]


async def sweep(runtime: Runtime) -> SweepReport:
    requeued = await runtime.jobs.stale_queued(runtime.config.requeue_after_seconds)
    for job_id in requeued:
        runtime.enqueue_job(job_id)
    expired: list[int] = []
    for job_id in await runtime.jobs.past_deadline():
        if await fail_job(runtime, job_id, code="internal_error", message="worker lost or deadline exceeded"):
            expired.append(job_id)
    resent_webhooks = await webhooks.stalled_events(runtime)
    await payments.resend_unprocessed(runtime)
    await key_usage.flush(runtime)  # api_keys.last_used_at, batched (never a write per request)
    if resent_webhooks:
        log.warning("sweeper re-sent %d stalled webhook event(s)", len(resent_webhooks))
    if requeued or expired:
        log.warning(
            "sweeper re-sent %d queued job(s), expired %d running job(s)", len(requeued), len(expired)
        )
    await _scheduled(runtime)
    return SweepReport(requeued=requeued, expired=expired)


async def _scheduled(runtime: Runtime) -> None:
    try:
        await retention.purge_if_due(runtime)
    except Exception:
        log.exception("could not schedule the retention purge; trying again next sweep")
    try:
        await health.check_ledger_if_due(runtime)
    except Exception:
        log.exception("scheduled ledger check failed; trying again next sweep")

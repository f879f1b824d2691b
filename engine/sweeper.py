"""Heals what crashes leave behind.

- A job committed but never sent (the process died between commit and send, or
  Redis was down) stays ``queued``: it is sent again. Sending twice is harmless
  because running starts with a conditional claim.
- A job ``running`` past its deadline (its worker died, or it hung) is failed
  with ``internal_error`` and refunded per the rule, exactly once.
"""

from __future__ import annotations

import logging

import msgspec

from engine import payments, webhooks
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
    if resent_webhooks:
        log.warning("sweeper re-sent %d stalled webhook event(s)", len(resent_webhooks))
    if requeued or expired:
        log.warning(
            "sweeper re-sent %d queued job(s), expired %d running job(s)", len(requeued), len(expired)
        )
    return SweepReport(requeued=requeued, expired=expired)

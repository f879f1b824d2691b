"""Automatic suspension of keys that keep sending content the model refuses.

FitInView's content policy: "Repeated content_blocked events on a key may trigger
automatic suspension." Each ``content_blocked`` failure is counted per key in
Redis over ``content_blocked_window_seconds``; at ``content_blocked_suspend_after``
(0 turns this off) the key is disabled with a recorded reason. Ops re-enable it
with ``POST /admin/keys/{id}/enable``.
"""

from __future__ import annotations

import logging

from redis.exceptions import RedisError

from engine.runtime import Runtime

log = logging.getLogger(__name__)


async def note_content_blocked(runtime: Runtime, api_key_id: int) -> bool:
    """Count one refusal for the key; disable it when the threshold is reached. True if disabled now."""
    config = runtime.config
    if config.content_blocked_suspend_after <= 0:
        return False
    counter = f"{config.redis_namespace}:content-blocked:{api_key_id}"
    try:
        async with runtime.redis.pipeline(transaction=True) as pipe:
            pipe.incr(counter)
            pipe.expire(counter, config.content_blocked_window_seconds, nx=True)
            count, _ = await pipe.execute()
    except RedisError:
        log.warning("could not count a content_blocked refusal for key %d", api_key_id)
        return False
    if count < config.content_blocked_suspend_after:
        return False
    reason = (
        f"suspended automatically: {count} content_blocked refusals within "
        f"{config.content_blocked_window_seconds} s"
    )
    async with runtime.db.transaction():
        await runtime.ledger.set_key_disabled(api_key_id, disabled=True, reason=reason)
    await runtime.callers.invalidate(key_ids=[api_key_id])  # after the commit: every API process
    await runtime.redis.delete(counter)
    log.warning("key %d %s", api_key_id, reason)
    return True

"""Erasure of an account for a privacy request: what it stored goes, what it paid stays.

:func:`erase` runs in the caller's transaction, under the account's row lock (which also
holds back new submissions, :meth:`ledger.service.LedgerService.lock_account`):

1. every key of the account is disabled (``account erased``), so nothing new arrives;
2. the account's jobs lose what the customer wrote: ``params.prompt``, ``negative_prompt`` and
   ``style_hint`` become null, ``metadata`` and ``webhook_url`` null, and the job is marked
   purged (the dialects then show no result links); their remembered Idempotency-Keys are
   deleted; their webhook events lose the receiver's URL and every attempt its response excerpt
   (an event body carries only the job id, status, error words and a result link — no prompt
   or metadata — so it stays as it was sent);
3. the account's name becomes ``erased account <id>``, its email is cleared and ``erased_at``
   set (the row and its id stay: the ledger points at it);
4. every stored object under ``accounts/<id>/`` is deleted from S3, in batches; a storage
   failure raises and rolls the whole erasure back, so the operator simply runs it again;
5. one ``account.erase`` audit entry records the reason and what was done (counts and ids,
   never the erased values: the audit log is append-only and would keep them for good).

Ledger entries keep their amounts (financial records), and so does every job's money
(``cost_credits``, ``credits_refunded``). Running it twice is safe: the second run finds
nothing left to disable, scrub or delete and says so in its own audit entry.

An account with queued or running jobs is refused (409): a job still generating would store
its result after the objects were deleted. Suspend the account first (its queued jobs finish,
nothing new is accepted), then erase.
"""

from __future__ import annotations

import msgspec

from engine.errors import Conflict, NotFound, ServiceUnavailable
from engine.runtime import Runtime
from ledger.audit import require_reason
from ledger.models import Actor
from storage.errors import StorageError

ERASED_KEY_REASON = "account erased"
SCRUBBED_PARAMS = ("prompt", "negative_prompt", "style_hint")


class ErasureReport(msgspec.Struct, frozen=True, kw_only=True):
    account_id: int
    erased_at: str
    keys_disabled: list[int]
    jobs_scrubbed: int
    idempotency_keys_deleted: int
    webhook_events_scrubbed: int
    objects_deleted: int


def account_prefix(account_id: int) -> str:
    """Where every stored object of the account lives (inputs and results of its jobs)."""
    return f"accounts/{account_id}/"


# --- queries (the engine's tables; the account's own rows go through the ledger) -------------


async def _unfinished_jobs(runtime: Runtime, account_id: int) -> int:
    row = await runtime.db.fetchrow(
        "SELECT count(*) AS n FROM jobs WHERE account = $1 AND status IN ('queued', 'running')",
        account_id,
    )
    return 0 if row is None else int(row["n"])


async def _scrub_jobs(runtime: Runtime, account_id: int) -> int:
    """Null the customer's words in the account's jobs; returns how many jobs still had some."""
    rows = await runtime.db.fetch(
        """UPDATE jobs SET
               params = COALESCE((SELECT jsonb_object_agg(
                                      e.k, CASE WHEN e.k = ANY($2::text[]) THEN 'null'::jsonb ELSE e.v END)
                                  FROM jsonb_each(jobs.params) AS e(k, v)), '{}'::jsonb),
               metadata = NULL, webhook_url = NULL, purged_at = COALESCE(purged_at, now())
           WHERE account = $1
             AND (metadata IS NOT NULL OR webhook_url IS NOT NULL OR purged_at IS NULL
                  OR EXISTS (SELECT 1 FROM jsonb_each(jobs.params) AS e(k, v)
                             WHERE e.k = ANY($2::text[]) AND e.v <> 'null'::jsonb))
           RETURNING id""",
        account_id,
        list(SCRUBBED_PARAMS),
    )
    return len(rows)


async def _delete_idempotency_keys(runtime: Runtime, account_id: int) -> int:
    rows = await runtime.db.fetch(
        """DELETE FROM idempotency_keys WHERE api_key IN (SELECT id FROM api_keys WHERE account = $1)
           RETURNING id""",
        account_id,
    )
    return len(rows)


async def _scrub_webhook_events(runtime: Runtime, account_id: int) -> int:
    rows = await runtime.db.fetch(
        """UPDATE webhook_events SET url = '' WHERE url <> ''
             AND job IN (SELECT id FROM jobs WHERE account = $1) RETURNING id""",
        account_id,
    )
    await runtime.db.fetch(
        """UPDATE webhook_attempts SET response_excerpt = NULL WHERE response_excerpt IS NOT NULL
             AND event IN (SELECT e.id FROM webhook_events e JOIN jobs j ON j.id = e.job
                           WHERE j.account = $1)""",
        account_id,
    )
    return len(rows)


# --- the operation --------------------------------------------------------------------------


async def erase(runtime: Runtime, actor: Actor, account_id: int, reason: str) -> ErasureReport:
    """Erase the account's personal data and stored objects (see the module docstring)."""
    reason = require_reason(reason)
    repo = runtime.ledger.repo
    account = await repo.account_for_update(account_id)
    if account is None:
        raise NotFound("Account not found")
    unfinished = await _unfinished_jobs(runtime, account_id)
    if unfinished:
        raise Conflict(
            f"Account has {unfinished} queued or running job(s); suspend it, let them finish, then erase"
        )
    keys_disabled = await repo.disable_account_keys(account_id, ERASED_KEY_REASON)
    jobs_scrubbed = await _scrub_jobs(runtime, account_id)
    idempotency_deleted = await _delete_idempotency_keys(runtime, account_id)
    events_scrubbed = await _scrub_webhook_events(runtime, account_id)
    erased = await repo.mark_erased(account_id, name=f"erased account {account_id}")
    try:
        objects_deleted = await runtime.store.delete_prefix(account_prefix(account_id))
    except StorageError as exc:
        raise ServiceUnavailable(f"object storage: {exc}; nothing was erased, run it again") from exc
    assert erased.erased_at is not None
    report = ErasureReport(
        account_id=account_id,
        erased_at=erased.erased_at.isoformat(),
        keys_disabled=keys_disabled,
        jobs_scrubbed=jobs_scrubbed,
        idempotency_keys_deleted=idempotency_deleted,
        webhook_events_scrubbed=events_scrubbed,
        objects_deleted=objects_deleted,
    )
    await runtime.audit.record(
        actor,
        "account.erase",
        target_type="account",
        target_id=account_id,
        account_id=account_id,
        reason=reason,
        before={"erased_at": account.erased_at},
        after=msgspec.structs.asdict(report),
    )
    return report

"""What the dialects ask of the engine: submit a job, read it, list them, wait for one.

``submit_tryon`` is the one place a job is born. Like an actor, it owns its
transaction, because it must commit before it enqueues and before a sync wait
begins. Its order is the contract's: validate (dialect) → fetch and check the
images → store them → in ONE transaction: remember the Idempotency-Key, create
the job, debit its price → commit → enqueue. A request rejected on the way costs
nothing and is not remembered.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import msgspec
from redis.exceptions import RedisError

from engine import prices
from engine.access import Caller
from engine.errors import (
    IdempotencyInProgress,
    IdempotencyMismatch,
    InsufficientCredits,
    InvalidRequest,
    NotFound,
    ServiceUnavailable,
)
from engine.execution import EXTENSIONS
from engine.inputs import InputImage, load_image_from_base64, load_image_from_url
from engine.models import (
    IdempotencyKey,
    ImageSource,
    JobPage,
    JobRecord,
    JobStatus,
    JobView,
    StoredImage,
    Submission,
    TryonCommand,
)
from engine.outbound import OutboundRefused, check_url
from engine.runtime import Runtime
from storage.errors import StorageError

log = logging.getLogger(__name__)


def new_public_id() -> str:
    return "job_" + secrets.token_hex(12)


def present(runtime: Runtime, job: JobRecord) -> JobView:
    """The job as dialects see it, with fresh presigned links for stored images."""
    ttl = runtime.config.presign_ttl_seconds
    result_urls = [runtime.store.presigned_url(image.key, ttl) for image in job.results]
    input_urls = [runtime.store.presigned_url(image.key, ttl) for image in job.inputs]
    return JobView(**msgspec.structs.asdict(job), result_urls=result_urls, input_urls=input_urls)


# reading --------------------------------------------------------------------------
async def get_job(runtime: Runtime, caller: Caller, public_id: str) -> JobView:
    job = await runtime.jobs.by_public_id(public_id)
    if job is None or job.api_key != caller.key.id:
        raise NotFound("Job not found")
    return present(runtime, job)


async def list_jobs(runtime: Runtime, caller: Caller, *, limit: int, cursor: str | None) -> JobPage:
    before_id: int | None = None
    if cursor:
        anchor = await runtime.jobs.by_public_id(cursor)
        if anchor is None or anchor.api_key != caller.key.id:
            raise InvalidRequest("cursor: unknown cursor", field="cursor")
        before_id = anchor.id
    rows = await runtime.jobs.page_for_key(caller.key.id, before_id=before_id, limit=limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    return JobPage(
        jobs=[present(runtime, row) for row in rows],
        next_cursor=rows[-1].public_id if more and rows else None,
    )


async def wait_for_job(runtime: Runtime, caller: Caller, public_id: str, timeout: float) -> JobView:
    """Block until the job finishes or ``timeout`` passes, driven by completion events."""

    async def read() -> JobRecord:
        job = await runtime.jobs.by_public_id(public_id)
        if job is None or job.api_key != caller.key.id:
            raise NotFound("Job not found")
        return job

    job = await runtime.hub.wait_until(
        public_id, read=read, is_finished=lambda row: row.status.finished, timeout=timeout
    )
    return present(runtime, job)


async def jobs_created(runtime: Runtime, caller: Caller) -> int:
    return await runtime.jobs.count_for_key(caller.key.id)


# submitting -----------------------------------------------------------------------
async def submit_tryon(
    runtime: Runtime,
    caller: Caller,
    command: TryonCommand,
    idempotency: IdempotencyKey | None,
    *,
    wait_seconds: float | None = None,
) -> Submission:
    """Accept a try-on; with ``wait_seconds``, also wait (events, not polling) for it to finish.

    A replayed Idempotency-Key returns the first request's job (and waits on that same job).
    """
    submission = await _accept_tryon(runtime, caller, command, idempotency)
    if wait_seconds is None or submission.job.status.finished:
        return submission
    job = await wait_for_job(runtime, caller, submission.job.public_id, wait_seconds)
    balance = await runtime.ledger.balance(caller.account.id)
    return Submission(job=job, credits_remaining=balance, replayed=submission.replayed)


async def _accept_tryon(
    runtime: Runtime, caller: Caller, command: TryonCommand, idempotency: IdempotencyKey | None
) -> Submission:
    if idempotency is not None:
        replay = await _replay(runtime, caller, idempotency)
        if replay is not None:
            return replay
    async with _idempotency_lock(runtime, caller, idempotency) as replay:
        if replay is not None:
            return replay
        if command.webhook_url is not None:
            _check_webhook_url(runtime, command.webhook_url)
        price = 0 if caller.is_test else prices.price(command.price_name, caller.account.prices)
        if not caller.is_test:
            balance = await runtime.ledger.balance(caller.account.id)
            if balance < price or balance < 0:
                raise InsufficientCredits(required=price, available=max(balance, 0))

        person = await _load(runtime, command.person)
        garments = await asyncio.gather(*(_load(runtime, source) for source in command.garments))
        public_id = new_public_id()
        stored = await _store_inputs(runtime, caller, public_id, person, list(garments))
        try:
            async with runtime.db.transaction():
                job = await runtime.jobs.insert(
                    public_id=public_id,
                    account_id=caller.account.id,
                    api_key_id=caller.key.id,
                    dialect=caller.key.dialect,
                    kind="tryon",
                    mode=caller.key.mode,
                    backend="stock" if caller.is_test else runtime.config.live_backend,
                    params={
                        "size_label": command.options.size_label,
                        "longest_side": command.options.longest_side,
                        "output_format": command.options.output_format,
                        "prompt": command.options.prompt,
                        "style_hint": command.options.style_hint,
                        "negative_prompt": command.options.negative_prompt,
                    },
                    inputs=stored,
                    cost_credits=price,
                    metadata=command.metadata,
                    seed=command.seed,
                    webhook_url=command.webhook_url,
                )
                if caller.is_test:
                    balance = await runtime.ledger.balance(caller.account.id)
                else:
                    balance = await runtime.ledger.debit_for_job(caller.account.id, job.id, price)
                if idempotency is not None:
                    await runtime.jobs.remember(
                        caller.key.id,
                        idempotency.key,
                        idempotency.fingerprint,
                        job.id,
                        runtime.config.idempotency_ttl_seconds,
                    )
        except asyncpg.UniqueViolationError:
            # Another request with the same Idempotency-Key committed first.
            if idempotency is not None:
                replay = await _replay(runtime, caller, idempotency)
                if replay is not None:
                    return replay
            raise
        _enqueue(runtime, job.id)
        return Submission(job=present(runtime, job), credits_remaining=balance)


def _check_webhook_url(runtime: Runtime, url: str) -> None:
    """At submit, a webhook URL must be well formed, https, and not a literal blocked address.

    Names are resolved and checked again when the webhook is sent.
    """
    try:
        check_url(url, runtime.config.outbound)
    except OutboundRefused as exc:
        raise InvalidRequest(f"invalid URL: webhook_url — {exc.reason}", field="webhook_url") from None


def _enqueue(runtime: Runtime, job_id: int) -> None:
    try:
        runtime.enqueue_job(job_id)
    except (RedisError, OSError):
        log.warning("could not enqueue job %d now; the sweeper will send it", job_id)


async def _replay(runtime: Runtime, caller: Caller, idempotency: IdempotencyKey) -> Submission | None:
    remembered = await runtime.jobs.remembered(
        caller.key.id, idempotency.key, runtime.config.idempotency_ttl_seconds
    )
    if remembered is None:
        return None
    fingerprint, job_id = remembered
    if fingerprint != idempotency.fingerprint:
        raise IdempotencyMismatch()
    job = await runtime.jobs.get(job_id)
    assert job is not None
    balance = await runtime.ledger.balance(caller.account.id)
    return Submission(job=present(runtime, job), credits_remaining=balance, replayed=True)


@asynccontextmanager
async def _idempotency_lock(
    runtime: Runtime, caller: Caller, idempotency: IdempotencyKey | None
) -> AsyncIterator[Submission | None]:
    """Hold a short Redis lock while a keyed request is being accepted (a retry meanwhile: 409)."""
    if idempotency is None:
        yield None
        return
    digest = hashlib.sha256(idempotency.key.encode()).hexdigest()
    lock_key = f"{runtime.config.redis_namespace}:idem-lock:{caller.key.id}:{digest}"
    token = secrets.token_hex(8)
    try:
        acquired = await runtime.redis.set(
            lock_key, token, nx=True, ex=runtime.config.idempotency_lock_seconds
        )
    except RedisError as exc:
        raise ServiceUnavailable("Idempotency store unavailable") from exc
    if not acquired:
        replay = await _replay(runtime, caller, idempotency)
        if replay is not None:
            yield replay
            return
        raise IdempotencyInProgress()
    try:
        yield None
    finally:
        try:
            if await runtime.redis.get(lock_key) == token.encode():
                await runtime.redis.delete(lock_key)
        except RedisError:
            log.warning("could not release idempotency lock %s; it expires by itself", lock_key)


async def _load(runtime: Runtime, source: ImageSource) -> InputImage:
    limits = runtime.config.image_limits
    if source.base64 is not None:
        return await load_image_from_base64(source.base64, source.field, limits)
    assert source.url is not None
    return await load_image_from_url(runtime.http, source.url, source.field, runtime.config.outbound, limits)


async def _store_inputs(
    runtime: Runtime, caller: Caller, public_id: str, person: InputImage, garments: list[InputImage]
) -> list[StoredImage]:
    prefix = f"accounts/{caller.account.id}/jobs/{public_id}"
    named = [("person", "person", person)] + [
        ("garment", f"garment-{index}", image) for index, image in enumerate(garments, start=1)
    ]
    stored: list[StoredImage] = []
    try:
        for role, name, image in named:
            key = f"{prefix}/{name}.{EXTENSIONS[image.content_type]}"
            await runtime.store.put(key, image.data, image.content_type)
            stored.append(
                StoredImage(
                    key=key,
                    role="person" if role == "person" else "garment",
                    content_type=image.content_type,
                    width=image.width,
                    height=image.height,
                )
            )
    except StorageError as exc:
        raise ServiceUnavailable("Object storage unavailable") from exc
    return stored


def is_finished(status: JobStatus) -> bool:
    return status.finished

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
import contextlib
import hashlib
import logging
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Literal

import asyncpg
import msgspec
from redis.exceptions import RedisError

from engine import context, metrics, prices
from engine.access import Caller
from engine.errors import (
    IdempotencyInProgress,
    IdempotencyMismatch,
    InsufficientCredits,
    InvalidRequest,
    NotFound,
    RateLimited,
    ServiceUnavailable,
)
from engine.execution import EXTENSIONS
from engine.inputs import InputImage, load_image_from_base64, load_image_from_url, load_images_from_base64
from engine.models import (
    CatalogCommand,
    FinishedEvent,
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
from engine.outage import as_unavailable
from engine.outbound import OutboundRefused, check_url
from engine.repository import NewJob
from engine.runtime import Runtime
from storage.errors import StorageError

log = logging.getLogger(__name__)


def new_public_id() -> str:
    return "job_" + secrets.token_hex(12)


def present(runtime: Runtime, job: JobRecord, *, input_links: bool = True) -> JobView:
    """The job as dialects see it, with presigned links for stored images.

    A purged job (retention deleted its images) gets no links at all: signing a deleted key
    would hand out a link that answers 404. ``input_links=False`` skips the inputs' links for a
    dialect that never shows them (signing is the costliest part of a poll).
    """
    if job.purged_at is not None:
        return JobView(**msgspec.structs.asdict(job), purged=True)
    ttl = runtime.config.presign_ttl_seconds
    result_urls = [runtime.store.presigned_url(image.key, ttl) for image in job.results]
    inputs = job.inputs if input_links else []
    input_urls = [runtime.store.presigned_url(image.key, ttl) for image in inputs]
    return JobView(**msgspec.structs.asdict(job), result_urls=result_urls, input_urls=input_urls)


# reading --------------------------------------------------------------------------
async def get_job(runtime: Runtime, caller: Caller, public_id: str, *, input_links: bool = True) -> JobView:
    job = await runtime.jobs.by_public_id(public_id, batch=True)  # a poll: may share its turn's read
    if job is None or job.api_key != caller.key.id:
        raise NotFound("Job not found")
    return present(runtime, job, input_links=input_links)


async def get_order(runtime: Runtime, caller: Caller, order_id: int) -> JobView:
    """A job by its integer order number; order numbers are not secret, so only the account's own."""
    job = await runtime.jobs.get(order_id, batch=True)  # a poll: may share its turn's read
    if job is None or job.account != caller.account.id:
        raise NotFound("Order not found")
    # FtmvAI shows the inputs' links only in a completed order's results: sign them only then
    return present(runtime, job, input_links=job.status is JobStatus.SUCCEEDED)


async def orders_created(runtime: Runtime, caller: Caller) -> tuple[int, int]:
    """(today in UTC, all time) jobs created by the caller's account."""
    return await runtime.jobs.created_counts(caller.account.id)


async def list_jobs(
    runtime: Runtime, caller: Caller, *, limit: int, cursor: str | None, input_links: bool = True
) -> JobPage:
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
        jobs=[present(runtime, row, input_links=input_links) for row in rows],
        next_cursor=rows[-1].public_id if more and rows else None,
    )


async def wait_for_submission(
    runtime: Runtime, caller: Caller, submission: Submission, timeout: float, *, input_links: bool = True
) -> Submission:
    """Hold until the submitted job finishes or ``timeout`` passes, driven by completion events.

    The event that wakes the wait carries the finished job and the balance (:mod:`engine.completion`),
    so a woken waiter answers without a database read; a lost or foreign event falls back to one.
    Nothing of the request (its images) needs to be held meanwhile: only the submission.
    """
    public_id = submission.job.public_id
    if submission.job.status.finished:
        return submission

    async def read() -> tuple[JobRecord, int | None]:
        job = await runtime.jobs.by_public_id(public_id)
        if job is None or job.api_key != caller.key.id:
            raise NotFound("Job not found")
        return job, None

    def from_event(payload: bytes) -> tuple[JobRecord, int | None] | None:
        try:
            event = msgspec.json.decode(payload, type=FinishedEvent)
        except msgspec.DecodeError:  # ValidationError is a DecodeError
            return None
        if event.job.public_id != public_id or event.job.api_key != caller.key.id:
            return None
        return event.job, event.balance

    try:
        job, balance = await runtime.hub.wait_until(
            public_id,
            read=read,
            is_finished=lambda found: found[0].status.finished,
            timeout=timeout,
            from_event=from_event,
        )
        if balance is None:
            balance = await runtime.ledger.balance(caller.account.id)
    except Exception as exc:
        if as_unavailable(exc) is None:
            raise
        # The job is accepted and paid for: answer it as it stands (a client then polls) rather than
        # 503, which would invite a retry that charges again.
        log.warning("sync wait for %s cut short by an outage: %r", public_id, exc)
        return submission
    return Submission(
        job=present(runtime, job, input_links=input_links),
        credits_remaining=balance,
        replayed=submission.replayed,
    )


async def jobs_created(runtime: Runtime, caller: Caller) -> int:
    return await runtime.jobs.count_for_key(caller.key.id)


# submitting -----------------------------------------------------------------------
class _JobSpec(msgspec.Struct, frozen=True, kw_only=True):
    """What every kind of job needs to be accepted, whatever the request looked like."""

    kind: str
    sources: tuple[tuple[Literal["person", "garment", "product"], str, ImageSource], ...]
    """(role, object name, source) for each input image, in order."""
    params: dict[str, Any]
    price_name: str
    metadata: dict[str, Any] | None = None
    seed: int | None = None
    webhook_url: str | None = None
    input_links: bool = True
    """Whether the submission's answer signs links to the inputs (not for a dialect that never shows them)."""


async def submit_tryon(
    runtime: Runtime,
    caller: Caller,
    command: TryonCommand,
    idempotency: IdempotencyKey | None,
    *,
    max_in_progress: int | None = None,
    input_links: bool = True,
) -> Submission:
    """Accept a try-on (a sync wait then is :func:`wait_for_submission`, once the caller has let go
    of the request's images).

    A replayed Idempotency-Key returns the first request's job (and a wait waits on that same job).
    ``input_links=False`` skips signing links to the inputs for a dialect that never shows them.
    """
    spec = _JobSpec(
        kind="tryon",
        sources=(
            ("person", "person", command.person),
            *(("garment", f"garment-{index}", source) for index, source in enumerate(command.garments, 1)),
        ),
        params={
            "size_label": command.options.size_label,
            "longest_side": command.options.longest_side,
            "output_format": command.options.output_format,
            "prompt": command.options.prompt,
            "style_hint": command.options.style_hint,
            "negative_prompt": command.options.negative_prompt,
        },
        price_name=command.price_name,
        metadata=command.metadata,
        seed=command.seed,
        webhook_url=command.webhook_url,
        input_links=input_links,
    )
    return await _accept(runtime, caller, spec, idempotency, max_in_progress)


async def submit_catalog(
    runtime: Runtime,
    caller: Caller,
    command: CatalogCommand,
    *,
    max_in_progress: int | None = None,
    input_links: bool = True,
) -> Submission:
    """Accept a product catalog of ``command.quantity`` shots (``input_links``: see :func:`submit_tryon`)."""
    spec = _JobSpec(
        kind="catalog",
        sources=(("product", "product", command.product),),
        params={
            "size_label": command.size_label,
            "longest_side": command.longest_side,
            "output_format": command.output_format,
            "quantity": command.quantity,
        },
        price_name=command.price_name,
        seed=command.seed,
        input_links=input_links,
    )
    return await _accept(runtime, caller, spec, None, max_in_progress)


async def _accept(
    runtime: Runtime,
    caller: Caller,
    spec: _JobSpec,
    idempotency: IdempotencyKey | None,
    max_in_progress: int | None,
) -> Submission:
    if idempotency is not None:
        replay = await _replay(runtime, caller, idempotency, input_links=spec.input_links)
        if replay is not None:
            return replay
    async with _idempotency_lock(runtime, caller, idempotency, input_links=spec.input_links) as replay:
        if replay is not None:
            return replay
        if spec.webhook_url is not None:
            _check_webhook_url(runtime, spec.webhook_url)
        price = 0 if caller.is_test else prices.price(spec.price_name, caller.account.prices)
        if not caller.is_test:
            balance = await runtime.ledger.balance(caller.account.id)
            if balance < price or balance < 0:
                raise InsufficientCredits(required=price, available=max(balance, 0))

        images = await _load_all(runtime, [source for _, _, source in spec.sources])
        public_id = new_public_id()
        committing = False  # past this, a failure may come from COMMIT: the job may exist after all
        try:
            stored = await _store_inputs(
                runtime,
                caller,
                public_id,
                [(role, name, image) for (role, name, _), image in zip(spec.sources, images, strict=True)],
            )
            # A test key's job without a concurrency limit or an Idempotency-Key is one INSERT (its
            # usage triggers run inside it): atomic and committed by itself, no BEGIN/COMMIT round
            # trips. A failure of that INSERT may come after its commit, as from COMMIT (committing).
            alone = caller.is_test and max_in_progress is None and idempotency is None
            committing = alone
            async with contextlib.nullcontext() if alone else runtime.db.transaction():
                row: NewJob = {
                    "public_id": public_id,
                    "account_id": caller.account.id,
                    "api_key_id": caller.key.id,
                    "dialect": caller.key.dialect,
                    "kind": spec.kind,
                    "mode": caller.key.mode,
                    "backend": "stock" if caller.is_test else runtime.config.live_backend,
                    "params": spec.params,
                    "inputs": stored,
                    "cost_credits": price,
                    "metadata": spec.metadata,
                    "seed": spec.seed,
                    "webhook_url": spec.webhook_url,
                }
                if max_in_progress is None:
                    job = await runtime.jobs.insert(**row)
                else:
                    job = await _admit(runtime, caller, max_in_progress, row)
                if idempotency is not None:
                    await runtime.jobs.remember(
                        caller.key.id,
                        idempotency.key,
                        idempotency.fingerprint,
                        job.id,
                        runtime.config.idempotency_ttl_seconds,
                    )
                # Last: the debit locks the account's balance row until COMMIT, and every submit of
                # the account waits for that row; the shorter it is held, the more of them per second.
                if caller.is_test:  # nothing moves: the balance authentication just read for this request
                    balance = caller.account.balance
                else:
                    balance = await runtime.ledger.debit_for_job(caller.account.id, job.id, price)
                committing = True
        except asyncpg.UniqueViolationError:
            # Another request with the same Idempotency-Key committed first.
            await _discard_inputs(runtime, caller, public_id, committing)
            if idempotency is not None:
                replay = await _replay(runtime, caller, idempotency, input_links=spec.input_links)
                if replay is not None:
                    return replay
            raise
        except BaseException:  # refused (402, 429, 503…), failed or cancelled: no job, no inputs
            await _discard_inputs(runtime, caller, public_id, committing)
            raise
        context.bind(**context.job_log_fields(job))
        metrics.job_submitted(dialect=job.dialect, kind=job.kind, backend=job.backend, mode=job.mode)
        metrics.credits_moved("debit", price)
        log.info("job.accepted", extra={"status": "queued", "credits": price})
        await _enqueue(runtime, job.id)
        return Submission(job=present(runtime, job, input_links=spec.input_links), credits_remaining=balance)


async def _admit(runtime: Runtime, caller: Caller, max_in_progress: int, row: NewJob) -> JobRecord:
    """Insert the job ``row``, or refuse it while the account already has ``max_in_progress``
    unfinished ones.

    Runs in the creating transaction after locking the account row, so concurrent
    submits of one account (in any process) are counted one after another. The count and the
    insert are one statement (:meth:`~engine.repository.JobRepository.insert_if_room`), after the
    lock's: its snapshot is taken once the lock is held.
    """
    await runtime.ledger.lock_account(caller.account.id)
    job = await runtime.jobs.insert_if_room(max_unfinished=max_in_progress, **row)
    if job is None:
        retry = runtime.config.concurrency_retry_after_seconds
        metrics.rate_limited(dialect=caller.dialect, scope="concurrent")
        raise RateLimited(
            retry_after=retry, limit=max_in_progress, reset=int(time.time()) + retry, scope="concurrent"
        )
    return job


def _check_webhook_url(runtime: Runtime, url: str) -> None:
    """At submit, a webhook URL must be well formed, https, and not a literal blocked address.

    Names are resolved and checked again when the webhook is sent.
    """
    try:
        check_url(url, runtime.config.outbound)
    except OutboundRefused as exc:
        raise InvalidRequest(f"invalid URL: webhook_url — {exc.reason}", field="webhook_url") from None


async def _enqueue(runtime: Runtime, job_id: int) -> None:
    """Send the committed job to the workers without blocking the event loop (a failure is healed by
    the sweeper). Shielded: a request cancelled meanwhile still sends it, as the blocking send did."""

    async def send() -> None:
        try:
            await runtime.send_job(job_id)
        except (RedisError, OSError, TimeoutError):
            log.warning("could not enqueue job %d now; the sweeper will send it", job_id)

    await asyncio.shield(asyncio.ensure_future(send()))


async def _replay(
    runtime: Runtime, caller: Caller, idempotency: IdempotencyKey, *, input_links: bool = True
) -> Submission | None:
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
    return Submission(
        job=present(runtime, job, input_links=input_links), credits_remaining=balance, replayed=True
    )


@asynccontextmanager
async def _idempotency_lock(
    runtime: Runtime, caller: Caller, idempotency: IdempotencyKey | None, *, input_links: bool
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
        replay = await _replay(runtime, caller, idempotency, input_links=input_links)
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


async def _load_all(runtime: Runtime, sources: list[ImageSource]) -> list[InputImage]:
    """The sources' images, validated, in order: base64 only (the common case) in one trip to the image
    pool (:func:`engine.inputs.load_images_from_base64`), else each on its own, fetched concurrently."""
    if all(source.base64 is not None for source in sources):
        fields = [(source.base64, source.field) for source in sources if source.base64 is not None]
        return await load_images_from_base64(fields, runtime.config.image_limits)
    return list(await asyncio.gather(*(_load(runtime, source) for source in sources)))


async def _load(runtime: Runtime, source: ImageSource) -> InputImage:
    limits = runtime.config.image_limits
    if source.base64 is not None:
        return await load_image_from_base64(source.base64, source.field, limits)
    assert source.url is not None
    return await load_image_from_url(runtime.http, source.url, source.field, runtime.config.outbound, limits)


async def _store_inputs(
    runtime: Runtime,
    caller: Caller,
    public_id: str,
    named: list[tuple[Literal["person", "garment", "product"], str, InputImage]],
) -> list[StoredImage]:
    """Upload the inputs side by side. Every upload has ended (stored or failed) before this returns
    or raises, so :func:`_discard_inputs` after a failure cannot race an upload still under way."""
    prefix = f"accounts/{caller.account.id}/jobs/{public_id}"
    stored = [
        StoredImage(
            key=f"{prefix}/{name}.{EXTENSIONS[image.content_type]}",
            role=role,
            content_type=image.content_type,
            width=image.width,
            height=image.height,
        )
        for role, name, image in named
    ]
    outcomes = await asyncio.gather(
        *(
            runtime.store.put(entry.key, image.data, image.content_type)
            for entry, (_, _, image) in zip(stored, named, strict=True)
        ),
        return_exceptions=True,
    )
    for outcome in outcomes:
        if isinstance(outcome, StorageError):
            raise ServiceUnavailable("Object storage unavailable") from outcome
        if isinstance(outcome, BaseException):
            raise outcome
    return stored


async def _discard_inputs(runtime: Runtime, caller: Caller, public_id: str, committing: bool) -> None:
    """Delete what a request stored when its job row did not commit (best effort).

    Inputs are stored before the transaction that creates the job and debits it, so a request
    refused inside it (a 402 race loser, the concurrency limit, a lost Idempotency-Key race, an
    outage, a cancellation) would otherwise leave objects no job refers to. The prefix is unique
    to this attempt (its new public id), so deleting all of it is safe. If the failure came from
    COMMIT itself the outcome is unknown: the objects stay unless no job row holds the id. The
    delete runs shielded, so a cancelled request still cleans up.
    """

    async def discard() -> None:
        try:
            if committing and await runtime.jobs.by_public_id(public_id) is not None:
                return
            await runtime.store.delete_prefix(f"accounts/{caller.account.id}/jobs/{public_id}/")
        except Exception as exc:  # best effort: the refusal itself must still go out
            log.warning("could not delete the inputs of refused request %s: %r", public_id, exc)

    await asyncio.shield(asyncio.ensure_future(discard()))

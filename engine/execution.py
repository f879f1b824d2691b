"""Running one job: claim it, load its inputs, call the backend, store the result.

Each step that ends the job (success or failure) is its own transaction, owned
here as the actor's; the completion event is published only after it commits.
Failures carry the words and refund rule of DECISIONS.md:
``generation_failed`` with ``content_blocked`` / ``no_image`` /
``quality_check_failed`` / ``model_unavailable``, ``storage_failed``, and
``internal_error``. Which of them refund is configuration (``refund_on``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
import weakref
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import msgspec

from engine import context, metrics, webhooks
from engine.backends.base import (
    Backend,
    CatalogInput,
    GeneratedImage,
    GenerationFailed,
    TransientBackendError,
    TryonInput,
)
from engine.backends.stock import is_shared_key, shared_key
from engine.completion import publish_finished
from engine.models import STAGE_PROGRESS, FinishedEvent, JobRecord, Stage, StoredImage
from engine.outage import as_unavailable
from engine.quality import check_result_async
from engine.runtime import Runtime
from engine.suspension import note_content_blocked
from storage.errors import StorageError
from storage.objects import ObjectStore

log = logging.getLogger(__name__)
T = TypeVar("T")

EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}


async def _announce(
    runtime: Runtime, job: JobRecord, webhook_event: int | None, *, balance: int | None = None
) -> None:
    """After the finishing commit: wake sync waiters, and send the job's webhook (if it has one).

    The event carries the job and the balance, read once per job (here, unless the finishing
    statement already returned it), so that thousands of waiters woken at once don't each read
    both (see :mod:`engine.completion`).
    """
    if balance is None:
        with contextlib.suppress(Exception):  # best effort: a waiter without it reads the balance itself
            balance = await runtime.ledger.balance(job.account)
    payload = msgspec.json.encode(FinishedEvent(job=job, balance=balance))
    await publish_finished(runtime.redis, runtime.config.redis_namespace, job.public_id, payload)
    if webhook_event is not None:
        webhooks.schedule(runtime, webhook_event)


def should_refund(runtime: Runtime, code: str, reason: str) -> bool:
    rules = runtime.config.refund_on
    return reason in rules or code in rules


FailHook = Callable[[JobRecord, int], Awaitable[None]]
"""Called inside the failing transaction with the failed job and the credits refunded."""


async def fail_job(
    runtime: Runtime,
    job_id: int,
    *,
    code: str,
    message: str,
    always_refund: bool = False,
    in_transaction: FailHook | None = None,
) -> JobRecord | None:
    """Fail a job that has not finished yet and refund it if the rule says so. Exactly once.

    Returns None if the job had already finished. An operator's cancel passes
    ``always_refund`` (a cancel is refunded whatever ``refund_on`` says) and an
    ``in_transaction`` hook that writes its audit entry in the same transaction; the
    completion event and the webhook go out only after the commit.
    """
    refunded = 0
    async with runtime.db.transaction():
        failed = await runtime.jobs.fail(job_id, code=code, message=message)
        if failed is None:
            return None
        job = failed
        if (
            job.mode == "live"
            and job.cost_credits > 0
            and (always_refund or should_refund(runtime, code, message))
        ):
            refunded = await runtime.ledger.refund_job(job.account, job.id, reason=f"{code}: {message}")
            if refunded:
                job = await runtime.jobs.record_refund(job.id, refunded)
        if in_transaction is not None:
            await in_transaction(job, refunded)
        event = await webhooks.record_event(runtime, job, None)
    metrics.job_finished(
        kind=job.kind, status="failed", error_code=code, message=message, backend=job.backend
    )
    metrics.credits_moved("refund", refunded)
    if code == "generation_failed" and message == "content_blocked" and job.mode == "live":
        # before the job is announced: a client that sees it failed must find the key suspended
        await note_content_blocked(runtime, job.api_key)
    await _announce(runtime, job, event)
    log.info(
        "job.failed",
        extra={
            **context.job_log_fields(job),
            "status": "failed",
            "error_code": code,
            "reason": message,
            "credits_refunded": refunded,
            "duration_ms": job.duration_ms,
        },
    )
    return job


async def _stage(runtime: Runtime, job_id: int, stage: Stage) -> None:
    await runtime.jobs.set_stage(job_id, stage, STAGE_PROGRESS[stage])


async def _with_retries(runtime: Runtime, job: JobRecord, call: Callable[[], Awaitable[T]]) -> T:
    """Call the backend, retrying transient failures with backoff; then ``model_unavailable``."""
    attempts = runtime.config.job_max_retries + 1
    delay = runtime.config.job_retry_min_backoff_ms / 1000
    for attempt in range(1, attempts + 1):
        try:
            return await call()
        except TransientBackendError as exc:
            if attempt == attempts:
                raise GenerationFailed("model_unavailable") from exc
            log.warning("job %s: backend hiccup (%s), retry %d in %.1fs", job.public_id, exc, attempt, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, runtime.config.job_retry_max_backoff_ms / 1000)
    raise AssertionError("unreachable")


async def run_job(runtime: Runtime, job_id: int) -> None:
    # one conditional UPDATE: atomic by itself, so no BEGIN/COMMIT round trips around it
    job = await runtime.jobs.claim(job_id, deadline_seconds=runtime.config.job_deadline_seconds)
    if job is None:
        return  # already running elsewhere, or finished: nothing to do
    context.bind(**context.job_log_fields(job))
    waited = (job.started_at - job.created_at).total_seconds() if job.started_at else 0.0
    metrics.queue_wait(waited)
    log.info("job.claimed", extra={"status": "running", "queue_wait_ms": int(waited * 1000)})
    started = time.monotonic()
    try:
        await _run_claimed(runtime, job)
        return
    except GenerationFailed as exc:
        code, message = exc.code, exc.reason
    except StorageError as exc:
        # Callers get the contract's short words; the client library's detail (hosts, ports,
        # object keys) goes to the log and the job's ops report (GET /admin/jobs/{id}).
        step = exc.step if isinstance(exc, _StorageStepFailed) else "storage failed"
        log.warning("job %s: %s: %s", job.public_id, step, exc.__cause__ or exc)
        with contextlib.suppress(Exception):  # ops detail only: never in the way of the refund
            await runtime.jobs.add_report(job.id, {"failure_detail": str(exc)[:2000]})
        code, message = "storage_failed", step
    except Exception as exc:
        code = "internal_error"
        if as_unavailable(exc) is not None:
            log.warning("job %s: cut off by a service outage (%r)", job.public_id, exc)
            message = "interrupted by a service outage"
        else:
            log.exception("job %s crashed", job.public_id)
            message = f"{type(exc).__name__}"[:200]
    finally:
        log.debug("job %s handled in %.2fs", job.public_id, time.monotonic() - started)
    await _fail_once_reachable(runtime, job, code=code, message=message)


OUTAGE_RETRY_MAX_DELAY = 2.0
"""How long at most between two tries to fail a job cut off by a database outage: the job is failed
and refunded within about this long of the database coming back."""


async def _fail_once_reachable(runtime: Runtime, job: JobRecord, *, code: str, message: str) -> None:
    """Fail the job; if the database is down (an outage is often what cut the job off), keep trying
    until it is back, so the job is failed and refunded then, not at its deadline minutes later.
    Past the deadline the sweeper owns the job (it fails it the same way, once)."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + runtime.config.job_deadline_seconds
    delay = 0.25
    while True:
        try:
            await fail_job(runtime, job.id, code=code, message=message)
            return
        except Exception as exc:
            if as_unavailable(exc) is None or loop.time() + delay > give_up:
                raise
            log.warning("job %s: cannot record its failure yet (%r); retrying", job.public_id, exc)
        await asyncio.sleep(delay)
        delay = min(delay * 2, OUTAGE_RETRY_MAX_DELAY)


class _StorageStepFailed(StorageError):
    """A storage call of a job failed; ``step`` is what callers are told (DECISIONS.md's words)."""

    def __init__(self, step: str, cause: StorageError) -> None:
        super().__init__(f"{step}: {cause}")
        self.step = step


async def _read_inputs(runtime: Runtime, job: JobRecord, role: str) -> list[bytes]:
    try:
        return [await runtime.store.get(image.key) for image in job.inputs if image.role == role]
    except StorageError as exc:
        raise _StorageStepFailed("reading inputs failed", exc) from exc


class _Inputs(msgspec.Struct, frozen=True, kw_only=True):
    person: bytes | None = None
    garments: tuple[bytes, ...] = ()
    product: bytes | None = None


async def _load_inputs(runtime: Runtime, job: JobRecord) -> _Inputs:
    """The job's stored inputs. A test-key job's are not read: the stock backend answers the same
    picture whatever they show, and its quality gate has no person to compare (``_gate``); they
    were validated and stored at submit, like a live job's."""
    if job.mode == "test":
        return _Inputs(person=b"", product=b"")
    if job.kind == "catalog":
        (product,) = await _read_inputs(runtime, job, "product")
        return _Inputs(product=product)
    (person,) = await _read_inputs(runtime, job, "person")
    return _Inputs(person=person, garments=tuple(await _read_inputs(runtime, job, "garment")))


def derived_seed(seed: int | None, attempt: int) -> int | None:
    """The seed for a quality retry: derived from the caller's, which stays the one echoed."""
    if attempt == 1:
        return seed
    digest = hashlib.sha256(f"{seed if seed is not None else 'none'}:{attempt}".encode()).digest()
    return int.from_bytes(digest[:4], "big") % 2**31


async def _generate(
    runtime: Runtime, job: JobRecord, backend: Backend, inputs: _Inputs, seed: int | None
) -> list[GeneratedImage]:
    """Ask the job's backend for every result image."""
    params = job.params
    if job.kind == "catalog":
        assert inputs.product is not None
        catalog = CatalogInput(
            product=inputs.product,
            quantity=int(params["quantity"]),
            longest_side=int(params["longest_side"]),
            output_format=params["output_format"],
            seed=seed,
        )
        images = await _with_retries(runtime, job, lambda: backend.catalog(catalog))
        if len(images) != catalog.quantity:
            raise GenerationFailed("no_image")
        return images
    assert inputs.person is not None
    tryon = TryonInput(
        person=inputs.person,
        garments=inputs.garments,
        longest_side=int(params["longest_side"]),
        output_format=params.get("output_format", "png"),
        seed=seed,
        prompt=params.get("prompt"),
        style_hint=params.get("style_hint"),
        negative_prompt=params.get("negative_prompt"),
    )
    return [await _with_retries(runtime, job, lambda: backend.tryon(tryon))]


def _backend_report(backend: Backend) -> dict[str, Any]:
    """What the backend said about its last call (model version, tokens, latency), if anything."""
    if backend.name != "gemini":
        return {"backend": backend.name}
    from engine.backends.gemini import LAST_REPORT

    report = LAST_REPORT.get()
    return {"backend": backend.name, **(msgspec.structs.asdict(report) if report is not None else {})}


async def _gate(
    runtime: Runtime, job: JobRecord, inputs: _Inputs, images: list[GeneratedImage]
) -> str | None:
    """The first quality-gate failure among the results (None: all pass)."""
    stock = job.mode == "test"
    for index, image in enumerate(images, start=1):
        verdict = await check_result_async(
            image.data,
            longest_side=int(job.params["longest_side"]),
            person=None if stock else inputs.person,
            content=not stock,
            thresholds=runtime.config.quality,
        )
        if not verdict.ok:
            return verdict.reason if len(images) == 1 else f"image {index}: {verdict.reason}"
    return None


async def _before_deadline(runtime: Runtime, job: JobRecord, call: Awaitable[T]) -> T:
    """The model call, abandoned shortly before the job's deadline as ``model_unavailable``.

    A model slower than the deadline (its per-attempt timeout and retries add up to more) would
    otherwise hold this worker thread long after the sweeper failed the job; stopping a little
    before ``deadline_at`` frees the thread and fails the job with the true reason first.
    """
    if job.deadline_at is None:
        return await call
    margin = min(2.0, runtime.config.job_deadline_seconds / 10)
    remaining = (job.deadline_at - datetime.now(UTC)).total_seconds() - margin
    try:
        async with asyncio.timeout(max(remaining, 0.0)) as budget:
            return await call
    except TimeoutError:
        if not budget.expired():
            raise
        log.warning("job %s: the model did not answer before the job's deadline", job.public_id)
        raise GenerationFailed("model_unavailable") from None


def _attempt_report(attempt: int, seed: int | None, started: float, backend: Backend) -> dict[str, Any]:
    seconds = round(time.monotonic() - started, 3)
    return {"attempt": attempt, "seed": seed, "seconds": seconds} | _backend_report(backend)


async def _generate_passing(
    runtime: Runtime, job: JobRecord
) -> tuple[list[GeneratedImage], list[dict[str, Any]]]:
    """Generate, check every result, and try once more with a derived seed if the check fails.

    Returns the passing images and the generation report. Stages a poll can see are written
    (``model_called`` once the inputs are loaded: loading takes milliseconds, the model seconds;
    not for the stock backend, which answers from memory); the report is written when an attempt
    fails, and for the passing one by the caller with the next stage (one UPDATE instead of two
    per attempt).
    """
    inputs = await _load_inputs(runtime, job)
    backend = runtime.backend("stock" if job.mode == "test" else job.backend)
    if job.mode != "test":  # the stock answer is in memory: no poll could see this stage
        await _stage(runtime, job.id, Stage.MODEL_CALLED)
    attempts: list[dict[str, Any]] = []
    for attempt in (1, 2):
        seed = derived_seed(job.seed, attempt)
        started = time.monotonic()
        try:
            images = await _before_deadline(runtime, job, _generate(runtime, job, backend, inputs, seed))
            seconds = time.monotonic() - started
            metrics.generation(
                backend=backend.name,
                kind=job.kind,
                longest_side=int(job.params["longest_side"]),
                seconds=seconds,
            )
            log.info("job.generated", extra={"attempt": attempt, "duration_ms": int(seconds * 1000)})
        except BaseException:  # the call failed: its report is written now
            attempts.append(_attempt_report(attempt, seed, started, backend))
            with contextlib.suppress(Exception):  # ops data: never hides the call's own error
                await runtime.jobs.add_report(job.id, {"generations": attempts})
            raise
        attempts.append(_attempt_report(attempt, seed, started, backend))
        if not images or any(not image.data for image in images):
            await runtime.jobs.add_report(job.id, {"generations": attempts})
            raise GenerationFailed("no_image")
        gate_started = time.monotonic()
        failure = await _gate(runtime, job, inputs, images)
        metrics.quality_verdict(failure)
        log.info("job.quality_gate", extra={"attempt": attempt, "verdict": failure or "passed"})
        attempts[-1]["quality"] = failure or "passed"
        attempts[-1]["gate_seconds"] = round(time.monotonic() - gate_started, 3)
        if failure is None:
            return images, attempts
        await runtime.jobs.add_report(job.id, {"generations": attempts})
        log.warning(
            "job %s: result failed the quality gate (%s), attempt %d", job.public_id, failure, attempt
        )
    raise GenerationFailed("quality_check_failed")


async def _store_results(
    runtime: Runtime, job: JobRecord, images: list[GeneratedImage], generations: list[dict[str, Any]]
) -> list[StoredImage]:
    """Upload the job's results under its own prefix."""
    prefix = f"accounts/{job.account}/jobs/{job.public_id}"
    results: list[StoredImage] = []
    for index, image in enumerate(images, start=1):
        name = "result" if len(images) == 1 else f"result-{index}"
        key = f"{prefix}/{name}.{EXTENSIONS[image.content_type]}"
        await _put_result(runtime, job, key, image, generations)
        results.append(_stored(key, image))
    return results


async def _put_result(
    runtime: Runtime, job: JobRecord, key: str, image: GeneratedImage, generations: list[dict[str, Any]]
) -> None:
    """Upload one result; if that fails, keep the generations in the job's report, then fail the step."""
    try:
        await runtime.store.put(key, image.data, image.content_type)
    except StorageError as exc:
        with contextlib.suppress(Exception):  # ops detail only: never in the way of the refund
            await runtime.jobs.add_report(job.id, {"generations": generations})
        raise _StorageStepFailed("storing the result failed", exc) from exc


def _stored(key: str, image: GeneratedImage) -> StoredImage:
    return StoredImage(
        key=key, role="result", content_type=image.content_type, width=image.width, height=image.height
    )


SHARED_REFRESH_SECONDS = 3600.0
"""How long a process trusts a stock picture it uploaded to still be there before uploading it again
(a bucket lifecycle rule, or an operator cleaning the bucket, could have removed it)."""

_shared_uploads: weakref.WeakKeyDictionary[ObjectStore, dict[str, float]] = weakref.WeakKeyDictionary()


async def _share_stock_results(
    runtime: Runtime, job: JobRecord, images: list[GeneratedImage], generations: list[dict[str, Any]]
) -> list[StoredImage]:
    """A test-key job's results: the stock pictures, stored once (per process, refreshed hourly)
    under ``stock/`` and referenced by every job answered with them, instead of one upload per job.

    The bytes are the stock backend's fixed answer for the size and format, so a copy per job held
    nothing of the job's own; the shared objects are outside every account's prefix and are never
    deleted by a job's purge or cancel (:func:`engine.backends.stock.is_shared_key`). A link to
    one is signed like any result link.
    """
    uploaded = _shared_uploads.setdefault(runtime.store, {})
    now = time.monotonic()
    results: list[StoredImage] = []
    for image in images:
        key = shared_key(image)
        if now - uploaded.get(key, -SHARED_REFRESH_SECONDS) >= SHARED_REFRESH_SECONDS:
            await _put_result(runtime, job, key, image, generations)
            uploaded[key] = now
        results.append(_stored(key, image))
    return results


async def _run_claimed(runtime: Runtime, job: JobRecord) -> None:
    images, generations = await _generate_passing(runtime, job)
    stock = job.mode == "test"
    report: dict[str, Any] = {"generations": generations}
    if stock:
        # Two statements for a stock job (the claim and this success, which writes the report):
        # its run takes about a millisecond, so no poll could see a ``result_stored`` stage.
        results = await _share_stock_results(runtime, job, images, generations)
    else:
        results = await _store_results(runtime, job, images, generations)
        await runtime.jobs.set_stage_and_report(
            job.id, Stage.RESULT_STORED, STAGE_PROGRESS[Stage.RESULT_STORED], report
        )
    with_report = report if stock else None
    event = None
    if job.webhook_url:  # the event is recorded in the succeeding transaction
        async with runtime.db.transaction():
            succeeded = await runtime.jobs.succeed(job.id, results, report=with_report)
            if succeeded is not None:
                result_url = runtime.store.presigned_url(results[0].key, runtime.config.presign_ttl_seconds)
                event = await webhooks.record_event(runtime, succeeded[0], result_url)
    else:  # one conditional UPDATE: atomic by itself
        succeeded = await runtime.jobs.succeed(job.id, results, report=with_report)
    if succeeded is not None:
        finished, balance = succeeded
        metrics.job_finished(
            kind=finished.kind, status="succeeded", error_code=None, message=None, backend=finished.backend
        )
        await _announce(runtime, finished, event, balance=balance)
        log.info("job.succeeded", extra={"status": "succeeded", "duration_ms": finished.duration_ms})
    else:
        if stock:  # ops data, written whatever the job's status (as set_stage_and_report does)
            with contextlib.suppress(Exception):
                await runtime.jobs.add_report(job.id, report)
        await _discard(runtime, job, results)


async def _discard(runtime: Runtime, job: JobRecord, results: list[StoredImage]) -> None:
    """The job ended meanwhile (an operator cancelled it, or the sweeper failed it): it never
    succeeds after that, so the result just stored is deleted rather than left unreferenced
    (a test-key job stored none of its own: the shared stock pictures stay)."""
    log.info("job.discarded", extra={"status": "discarded", "results": len(results)})
    for image in results:
        if is_shared_key(image.key):  # a stock picture other jobs reference, not this job's own
            continue
        try:
            await runtime.store.delete(image.key)
        except StorageError as exc:
            log.warning("job %s: could not delete discarded result %s: %s", job.public_id, image.key, exc)

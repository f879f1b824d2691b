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
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from engine.backends.base import (
    CatalogInput,
    GeneratedImage,
    GenerationFailed,
    TransientBackendError,
    TryonInput,
)
from engine.completion import publish_finished
from engine.models import STAGE_PROGRESS, JobRecord, Stage, StoredImage
from engine.runtime import Runtime
from storage.errors import StorageError

log = logging.getLogger(__name__)
T = TypeVar("T")

EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}


def should_refund(runtime: Runtime, code: str, reason: str) -> bool:
    rules = runtime.config.refund_on
    return reason in rules or code in rules


async def fail_job(runtime: Runtime, job_id: int, *, code: str, message: str) -> JobRecord | None:
    """Fail a job that has not finished yet and refund it if the rule says so. Exactly once."""
    async with runtime.db.transaction():
        failed = await runtime.jobs.fail(job_id, code=code, message=message)
        if failed is None:
            return None
        job = failed
        if job.mode == "live" and job.cost_credits > 0 and should_refund(runtime, code, message):
            refunded = await runtime.ledger.refund_job(job.account, job.id, reason=f"{code}: {message}")
            if refunded:
                job = await runtime.jobs.record_refund(job.id, refunded)
    await publish_finished(runtime.redis, runtime.config.redis_namespace, job.public_id)
    log.info("job %s failed: %s / %s", job.public_id, code, message)
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
    async with runtime.db.transaction():
        job = await runtime.jobs.claim(job_id, deadline_seconds=runtime.config.job_deadline_seconds)
    if job is None:
        return  # already running elsewhere, or finished: nothing to do
    started = time.monotonic()
    try:
        await _run_claimed(runtime, job)
    except GenerationFailed as exc:
        await fail_job(runtime, job.id, code=exc.code, message=exc.reason)
    except StorageError as exc:
        await fail_job(runtime, job.id, code="storage_failed", message=f"storage: {exc}"[:500])
    except Exception as exc:
        log.exception("job %s crashed", job.public_id)
        await fail_job(runtime, job.id, code="internal_error", message=f"{type(exc).__name__}"[:200])
    finally:
        log.info("job %s handled in %.2fs", job.public_id, time.monotonic() - started)


async def _read_inputs(runtime: Runtime, job: JobRecord, role: str) -> list[bytes]:
    try:
        return [await runtime.store.get(image.key) for image in job.inputs if image.role == role]
    except StorageError as exc:
        raise StorageError(f"reading inputs failed: {exc}") from exc


async def _generate(runtime: Runtime, job: JobRecord) -> list[GeneratedImage]:
    """Load the job's inputs and ask its backend for every result image."""
    params = job.params
    backend = runtime.backend("stock" if job.mode == "test" else job.backend)
    if job.kind == "catalog":
        (product,) = await _read_inputs(runtime, job, "product")
        await _stage(runtime, job.id, Stage.INPUTS_LOADED)
        catalog = CatalogInput(
            product=product,
            quantity=int(params["quantity"]),
            longest_side=int(params["longest_side"]),
            output_format=params["output_format"],
            seed=job.seed,
        )
        await _stage(runtime, job.id, Stage.MODEL_CALLED)
        images = await _with_retries(runtime, job, lambda: backend.catalog(catalog))
        if len(images) != catalog.quantity:
            raise GenerationFailed("no_image")
        return images
    (person,) = await _read_inputs(runtime, job, "person")
    garments = await _read_inputs(runtime, job, "garment")
    await _stage(runtime, job.id, Stage.INPUTS_LOADED)
    tryon = TryonInput(
        person=person,
        garments=tuple(garments),
        longest_side=int(params["longest_side"]),
        output_format=params.get("output_format", "png"),
        seed=job.seed,
        prompt=params.get("prompt"),
        style_hint=params.get("style_hint"),
        negative_prompt=params.get("negative_prompt"),
    )
    await _stage(runtime, job.id, Stage.MODEL_CALLED)
    return [await _with_retries(runtime, job, lambda: backend.tryon(tryon))]


async def _run_claimed(runtime: Runtime, job: JobRecord) -> None:
    images = await _generate(runtime, job)
    if not images or any(not image.data for image in images):
        raise GenerationFailed("no_image")
    prefix = f"accounts/{job.account}/jobs/{job.public_id}"
    results: list[StoredImage] = []
    for index, image in enumerate(images, start=1):
        name = "result" if len(images) == 1 else f"result-{index}"
        key = f"{prefix}/{name}.{EXTENSIONS[image.content_type]}"
        try:
            await runtime.store.put(key, image.data, image.content_type)
        except StorageError as exc:
            raise StorageError(f"writing the result failed: {exc}") from exc
        results.append(
            StoredImage(
                key=key,
                role="result",
                content_type=image.content_type,
                width=image.width,
                height=image.height,
            )
        )
    await _stage(runtime, job.id, Stage.RESULT_STORED)
    async with runtime.db.transaction():
        finished = await runtime.jobs.succeed(job.id, results)
    if finished is not None:
        await publish_finished(runtime.redis, runtime.config.redis_namespace, finished.public_id)

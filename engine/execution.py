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

from engine.backends.base import GeneratedImage, GenerationFailed, TransientBackendError, TryonInput
from engine.completion import publish_finished
from engine.models import STAGE_PROGRESS, JobRecord, Stage, StoredImage
from engine.runtime import Runtime
from storage.errors import StorageError

log = logging.getLogger(__name__)

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


async def _generate_with_retries(runtime: Runtime, job: JobRecord, request: TryonInput) -> GeneratedImage:
    backend = runtime.backend("stock" if job.mode == "test" else job.backend)
    attempts = runtime.config.job_max_retries + 1
    delay = runtime.config.job_retry_min_backoff_ms / 1000
    for attempt in range(1, attempts + 1):
        try:
            return await backend.tryon(request)
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


async def _run_claimed(runtime: Runtime, job: JobRecord) -> None:
    person_key = next(image.key for image in job.inputs if image.role == "person")
    garment_keys = [image.key for image in job.inputs if image.role == "garment"]
    try:
        person = await runtime.store.get(person_key)
        garments = tuple([await runtime.store.get(key) for key in garment_keys])
    except StorageError as exc:
        raise StorageError(f"reading inputs failed: {exc}") from exc
    await _stage(runtime, job.id, Stage.INPUTS_LOADED)

    params = job.params
    output_format = params.get("output_format", "png")
    request = TryonInput(
        person=person,
        garments=garments,
        longest_side=int(params["longest_side"]),
        output_format=output_format,
        seed=job.seed,
        prompt=params.get("prompt"),
        style_hint=params.get("style_hint"),
        negative_prompt=params.get("negative_prompt"),
    )
    await _stage(runtime, job.id, Stage.MODEL_CALLED)
    image = await _generate_with_retries(runtime, job, request)
    if not image.data:
        raise GenerationFailed("no_image")

    content_type = image.content_type
    key = f"accounts/{job.account}/jobs/{job.public_id}/result.{EXTENSIONS[content_type]}"
    try:
        await runtime.store.put(key, image.data, content_type)
    except StorageError as exc:
        raise StorageError(f"writing the result failed: {exc}") from exc
    await _stage(runtime, job.id, Stage.RESULT_STORED)

    result = StoredImage(
        key=key, role="result", content_type=content_type, width=image.width, height=image.height
    )
    async with runtime.db.transaction():
        finished = await runtime.jobs.succeed(job.id, [result])
    if finished is not None:
        await publish_finished(runtime.redis, runtime.config.redis_namespace, finished.public_id)

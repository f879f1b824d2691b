"""The operations of both dialects as I/O-describing generators (see :mod:`tryon_client._core`)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, Optional, Union

import msgspec

from tryon_client import _core
from tryon_client._core import Config, Notify, Op, ProgressCallback, Sleep
from tryon_client._inputs import ImageInput, b64, image_bytes, is_url
from tryon_client.errors import InvalidInputError, JobFailedError, WaitTimeoutError
from tryon_client.models import Account, FtmvAccount, Job, JobPage, Order, ProgressEvent, Purchase

OUTPUT_SIZES = ("1K", "2K", "4K")
CATALOG_COUNTS = (6, 12)
QUALITIES = ("standard", "high")
FORMATS = ("jpg", "png")


# --- FitInView -------------------------------------------------------------------------------------


def tryon_body(
    person: ImageInput,
    garments: Sequence[ImageInput],
    *,
    output_size: str,
    prompt: Optional[str],
    seed: Optional[int],
    metadata: Optional[dict[str, Any]],
    wait: bool,
    webhook_url: Optional[str],
    negative_prompt: Optional[str],
) -> dict[str, Any]:
    if isinstance(garments, (str, bytes)) or not 1 <= len(garments) <= 3:
        raise InvalidInputError("garments: give a list of 1 to 3 images")
    size = output_size.upper()
    if size not in OUTPUT_SIZES:
        raise InvalidInputError(f"output_size must be one of {', '.join(OUTPUT_SIZES)}, not {output_size!r}")
    body: dict[str, Any] = {"output_size": size, "wait": wait}
    if is_url(person):
        body["person_url"] = person
    else:
        body["person_image_b64"] = b64(image_bytes(person, "person"))
    urls = [garment for garment in garments if is_url(garment)]
    encoded = [
        b64(image_bytes(garment, f"garment {n}"))
        for n, garment in enumerate(garments, start=1)
        if not is_url(garment)
    ]
    if urls:
        body["garment_urls"] = urls
    if encoded:
        body["garment_images_b64"] = encoded
    for name, value in (
        ("prompt", prompt),
        ("seed", seed),
        ("metadata", metadata),
        ("webhook_url", webhook_url),
        ("negative_prompt", negative_prompt),
    ):
        if value is not None:
            body[name] = value
    return body


def tryon(
    config: Config,
    body: dict[str, Any],
    *,
    idempotency_key: Optional[str],
    wait_timeout: Optional[float],
    on_progress: Optional[ProgressCallback],
) -> Op[Job]:
    key = idempotency_key or f"tryon-client-{uuid.uuid4().hex}"
    response = yield from _core.request(config, "POST", "/api/v1/tryon", json=body, idempotency_key=key)
    job = _core.decode(response, Job)
    if not body["wait"]:
        return job
    if not job.done:  # the sync wait ran out on the server: poll from here
        job = yield from wait_for(config, job, timeout=wait_timeout, on_progress=on_progress)
    if job.failed:
        raise _job_failed(job)
    return job


def get(config: Config, job_id: str) -> Op[Job]:
    response = yield from _core.request(config, "GET", f"/api/v1/tryon/{job_id}")
    return _core.decode(response, Job)


def list_page(config: Config, cursor: Optional[str], limit: int) -> Op[JobPage]:
    params = {"limit": str(limit)}
    if cursor:
        params["cursor"] = cursor
    response = yield from _core.request(config, "GET", "/api/v1/tryon", params=params)
    return _core.decode(response, JobPage)


def account(config: Config) -> Op[Account]:
    response = yield from _core.request(config, "GET", "/api/v1/account")
    return _core.decode(response, Account)


def purchase_credits(config: Config, pack: str, token: str) -> Op[Purchase]:
    # The gateway is idempotent on (API key, token): a retry never grants twice.
    response = yield from _core.request(
        config,
        "POST",
        "/api/v1/credits/purchase",
        json={"pack_slug": pack, "shared_payment_granted_token": token},
        idempotent=True,
    )
    return _core.decode(response, Purchase)


def wait_for(
    config: Config,
    job: Union[Job, str],
    *,
    timeout: Optional[float],
    on_progress: Optional[ProgressCallback],
    raise_on_failure: bool = False,
) -> Op[Job]:
    """Poll until the job ends, with a growing interval (0.5 s, growing by half up to 5 s)."""
    job_id = job if isinstance(job, str) else job.job_id
    start = _core.now()
    budget = config.wait_timeout if timeout is None else timeout
    interval = config.poll_interval
    current = job if isinstance(job, Job) else None
    while True:
        if current is None or not current.done:
            current = yield from get(config, job_id)
        elapsed = _core.now() - start
        if on_progress is not None:
            yield Notify(on_progress, ProgressEvent(id=job_id, status=current.status, elapsed=elapsed))
        if current.done:
            if raise_on_failure and current.failed:
                raise _job_failed(current)
            return current
        if elapsed + interval > budget:
            raise WaitTimeoutError(f"{job_id} still {current.status} after {elapsed:.0f} s", job_id=job_id)
        yield Sleep(interval)
        interval = _core.next_interval(config, interval)
        current = None


def _job_failed(job: Job) -> JobFailedError:
    return JobFailedError(
        f"{job.job_id} failed: {job.error_code or 'error'}: {job.error_message or 'no message'}",
        code=job.error_code,
        job=job,
    )


# --- FtmvAI ----------------------------------------------------------------------------------------


class _Created(msgspec.Struct, kw_only=True):
    order_id: int
    status: str
    credits_used: int = 0
    created_at: Optional[str] = None


class _OrderAnswer(msgspec.Struct, kw_only=True):
    order: Order


def _base64_input(config: Config, value: ImageInput, what: str) -> Op[str]:
    if is_url(value):
        assert isinstance(value, str)
        data = yield from _core.download(value, config.timeout)
        return b64(data)
    return b64(image_bytes(value, what))


def _options(quality: str, image_format: str) -> dict[str, str]:
    if quality not in QUALITIES:
        raise InvalidInputError(f"quality must be one of {', '.join(QUALITIES)}, not {quality!r}")
    fmt = "jpg" if image_format.lower() == "jpeg" else image_format.lower()
    if fmt not in FORMATS:
        raise InvalidInputError(f"format must be one of {', '.join(FORMATS)}, not {image_format!r}")
    return {"quality": quality, "format": fmt}


def generate(
    config: Config,
    *,
    person: ImageInput,
    clothing: ImageInput,
    quality: str,
    image_format: str,
    wait: bool,
    wait_timeout: Optional[float],
    on_progress: Optional[ProgressCallback],
) -> Op[Order]:
    options = _options(quality, image_format)
    body = {
        "style": "virtual_tryon",
        "person_image": (yield from _base64_input(config, person, "person")),
        "clothing_image": (yield from _base64_input(config, clothing, "clothing")),
        "options": options,
    }
    return (yield from _create_order(config, body, wait, wait_timeout, on_progress))


def catalog(
    config: Config,
    *,
    product: ImageInput,
    count: int,
    quality: str,
    image_format: str,
    wait: bool,
    wait_timeout: Optional[float],
    on_progress: Optional[ProgressCallback],
) -> Op[Order]:
    if count not in CATALOG_COUNTS:
        raise InvalidInputError(f"count must be 6 or 12, not {count!r}")
    options = _options(quality, image_format)
    body = {
        "style": "product_catalog",
        "product_image": (yield from _base64_input(config, product, "product")),
        "quantity": count,
        "options": options,
    }
    return (yield from _create_order(config, body, wait, wait_timeout, on_progress))


def _create_order(
    config: Config,
    body: dict[str, Any],
    wait: bool,
    wait_timeout: Optional[float],
    on_progress: Optional[ProgressCallback],
) -> Op[Order]:
    # FtmvAI has no Idempotency-Key: /generate is retried only when the gateway refused it unseen.
    response = yield from _core.request(config, "POST", "/api/v1/generate", json=body)
    created = _core.decode(response, _Created)
    order = Order(
        id_=created.order_id,
        status=created.status,
        credits_used=created.credits_used,
        created_at=created.created_at,
        progress=0,
    )
    if not wait:
        return order
    return (
        yield from wait_for_order(
            config, order.order_id, timeout=wait_timeout, on_progress=on_progress, raise_on_failure=True
        )
    )


def order(config: Config, order_id: Union[int, str]) -> Op[Order]:
    response = yield from _core.request(config, "GET", f"/api/v1/orders/{order_id}")
    return _core.decode(response, _OrderAnswer).order


def wait_for_order(
    config: Config,
    order_id: Union[int, str, Order],
    *,
    timeout: Optional[float],
    on_progress: Optional[ProgressCallback],
    raise_on_failure: bool = False,
) -> Op[Order]:
    """Poll until the order is ``completed`` or ``failed``, reporting its ``progress`` percent."""
    ident = order_id.order_id if isinstance(order_id, Order) else order_id
    start = _core.now()
    budget = config.wait_timeout if timeout is None else timeout
    interval = config.poll_interval
    while True:
        current = yield from order(config, ident)
        elapsed = _core.now() - start
        if on_progress is not None:
            event = ProgressEvent(
                id=current.id,
                status=current.status,
                elapsed=elapsed,
                percent=100 if current.succeeded else current.progress,
            )
            yield Notify(on_progress, event)
        if current.done:
            if raise_on_failure and current.failed:
                error = current.error
                raise JobFailedError(
                    f"order {current.id} failed: {error.code if error else 'error'}: "
                    f"{error.message if error else 'no message'}",
                    code=error.code if error else None,
                    job=current,
                )
            return current
        if elapsed + interval > budget:
            raise WaitTimeoutError(
                f"order {current.id} still {current.status} after {elapsed:.0f} s", job_id=current.id
            )
        yield Sleep(interval)
        interval = _core.next_interval(config, interval)


def ftmv_account(config: Config) -> Op[FtmvAccount]:
    response = yield from _core.request(config, "GET", "/api/v1/account")
    return _core.decode(response, FtmvAccount)

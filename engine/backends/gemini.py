"""``gemini``: Google's Gemini image models through the google-genai SDK (``TRYON_ENGINE=gemini``).

One :class:`google.genai.Client` per backend (the runtime keeps one backend per
process), using the async API ``client.aio.models.generate_content`` with
``response_modalities=["IMAGE"]``. A try-on request is one user turn: the person
image, then the garment images (inline parts), then the text from
:func:`engine.prompts.tryon_prompt`; the identity rules go out as the
``system_instruction``. Catalog orders make one request per shot, each with its
own shot description, with bounded concurrency; any failed shot fails the order.

The SDK retries 408/429/5xx and connection errors itself (``HttpRetryOptions``,
exponential backoff with jitter). It does not retry a connection lost in the middle of an
answer (aiohttp's ``ClientPayloadError``, httpx's read errors), so this module does, with the
same attempts and delays. Whatever still fails becomes
``GenerationFailed("model_unavailable")``; blocks become ``content_blocked``; an
answer without an image becomes ``no_image``.

Ops metadata (model version, token usage, latency, prompt version) cannot travel in
:class:`~engine.backends.base.GeneratedImage`, so each successful ``tryon()`` /
``catalog()`` stores a :class:`GenerationReport` in the context variable
:data:`LAST_REPORT`. The caller reads it right after awaiting the backend, in the
same task::

    image = await backend.tryon(request)
    report = LAST_REPORT.get()   # GenerationReport | None

(Awaiting directly shares the caller's context; a call wrapped in a new task, e.g.
``asyncio.create_task`` or ``asyncio.wait_for`` on 3.11, sets it in the task's copy
of the context instead, where the caller cannot see it.) The variable is reset to
``None`` at the start of every call, so an earlier call's report never leaks into a
later one. A try-on the model answered but that still failed (``content_blocked``,
``no_image``) keeps its report, since those tokens were spent; a call that got no
answer (``model_unavailable``) and a failed catalog leave ``None``.
"""

from __future__ import annotations

import asyncio
import contextvars
import io
import logging
import math
import time
from collections.abc import Sequence
from typing import Any

import aiohttp
import msgspec
from google import genai
from google.genai import errors as genai_errors
from google.genai import types
from PIL import Image

from engine import prompts
from engine.backends.base import CatalogInput, GeneratedImage, GenerationFailed, OutputFormat, TryonInput
from engine.imaging import fit_longest_side, open_image

log = logging.getLogger(__name__)

DEFAULT_MODEL = "gemini-3-pro-image-preview"
RETRY_STATUS_CODES = [408, 429, 500, 502, 503, 504]
ASPECT_RATIOS: tuple[str, ...] = ("1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9")

BLOCK_FINISH_REASONS = frozenset(
    {
        "SAFETY",
        "IMAGE_SAFETY",
        "PROHIBITED_CONTENT",
        "IMAGE_PROHIBITED_CONTENT",
        "BLOCKLIST",
        "SPII",
        "RECITATION",
        "IMAGE_RECITATION",
        "MODEL_ARMOR",
        "JAILBREAK",
    }
)
"""Finish reasons that mean the model refused on content grounds (→ ``content_blocked``)."""

try:  # the SDK falls back to httpx when aiohttp is not usable; map its errors too
    import httpx

    _HTTPX_ERRORS: tuple[type[Exception], ...] = (httpx.TransportError,)
    _HTTPX_DROPPED: tuple[type[Exception], ...] = (httpx.RemoteProtocolError, httpx.ReadError)
except ImportError:  # pragma: no cover - httpx is a dependency of google-genai
    _HTTPX_ERRORS = ()
    _HTTPX_DROPPED = ()

UNREACHABLE_ERRORS: tuple[type[Exception], ...] = (TimeoutError, aiohttp.ClientError, *_HTTPX_ERRORS)
DROPPED_ERRORS: tuple[type[Exception], ...] = (aiohttp.ClientPayloadError, *_HTTPX_DROPPED)
"""The connection was lost mid-answer: worth another attempt, which the SDK does not make."""


class GeminiConfig(msgspec.Struct, frozen=True, kw_only=True):
    api_key: str
    model: str = DEFAULT_MODEL
    base_url: str | None = None
    """Optional endpoint override (tests point it at a local fake server)."""
    api_version: str = "v1beta"
    timeout_seconds: float = 120.0
    """Per HTTP attempt."""
    retry_attempts: int = 4
    """Total attempts per request, including the first (1 = no retry)."""
    retry_initial_delay: float = 1.0
    retry_max_delay: float = 30.0
    catalog_concurrency: int = 4


class GenerationReport(msgspec.Struct, frozen=True, kw_only=True):
    """What ops want recorded on the job for one backend call (summed over a catalog's shots)."""

    model_version: str | None
    prompt_token_count: int | None
    candidates_token_count: int | None
    total_token_count: int | None
    latency_ms: int
    prompt_version: str
    requests: int = 1
    """Model requests made (successful SDK calls; one per catalog shot)."""


LAST_REPORT: contextvars.ContextVar[GenerationReport | None] = contextvars.ContextVar(
    "engine.backends.gemini.LAST_REPORT", default=None
)


def image_size_for(longest_side: int) -> str:
    if longest_side <= 1024:
        return "1K"
    if longest_side <= 2048:
        return "2K"
    return "4K"


def nearest_aspect_ratio(width: int, height: int) -> str:
    """The supported aspect ratio closest (in log scale) to ``width``:``height``."""
    target = math.log(width / height)

    def distance(ratio: str) -> float:
        w, h = (int(part) for part in ratio.split(":"))
        return abs(math.log(w / h) - target)

    return min(ASPECT_RATIOS, key=distance)


def _inspect(data: bytes) -> tuple[str, tuple[int, int]]:
    """The MIME type and size of a (validated) input image, from its header."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return Image.MIME.get(image.format or "", "image/png"), image.size
    except OSError as exc:
        raise GenerationFailed(f"undecodable input: {exc}", code="internal_error") from exc


def _enum_name(value: Any) -> str | None:
    if value is None:
        return None
    return str(getattr(value, "value", value)).upper()


def _last_image(response: types.GenerateContentResponse) -> bytes | None:
    """The last non-thought inline image part of the first candidate."""
    if not response.candidates:
        return None
    content = response.candidates[0].content
    found: bytes | None = None
    for part in (content.parts if content is not None else None) or []:
        if part.thought:
            continue
        blob = part.inline_data
        if blob is not None and blob.data and (blob.mime_type or "").lower().startswith("image/"):
            found = blob.data
    return found


def _check_blocked(response: types.GenerateContentResponse) -> None:
    feedback = response.prompt_feedback
    block = _enum_name(feedback.block_reason) if feedback is not None else None
    if block and block != "BLOCKED_REASON_UNSPECIFIED":
        log.info("gemini: prompt blocked (%s)", block)
        raise GenerationFailed("content_blocked")
    if response.candidates:
        finish = _enum_name(response.candidates[0].finish_reason)
        if finish in BLOCK_FINISH_REASONS:
            log.info("gemini: answer blocked (finish reason %s)", finish)
            raise GenerationFailed("content_blocked")


def _reencode(data: bytes, longest_side: int, fmt: OutputFormat) -> GeneratedImage:
    try:
        image = fit_longest_side(open_image(data), longest_side)
    except OSError as exc:
        log.warning("gemini: undecodable image in the answer: %s", exc)
        raise GenerationFailed("no_image") from exc
    return GeneratedImage.encoded(image, fmt)


class _Shot(msgspec.Struct, frozen=True, kw_only=True):
    image: GeneratedImage
    report: GenerationReport


class GeminiBackend:
    name = "gemini"

    def __init__(self, config: GeminiConfig) -> None:
        if not config.api_key:
            raise ValueError("the gemini backend needs an API key")
        self.config = config
        self.http_options = types.HttpOptions(
            base_url=config.base_url,
            api_version=config.api_version,
            timeout=max(1, round(config.timeout_seconds * 1000)),  # milliseconds
            retry_options=types.HttpRetryOptions(
                attempts=max(1, config.retry_attempts),
                initial_delay=config.retry_initial_delay,
                max_delay=config.retry_max_delay,
                http_status_codes=RETRY_STATUS_CODES,
            ),
        )
        self.client = genai.Client(vertexai=False, api_key=config.api_key, http_options=self.http_options)

    async def aclose(self) -> None:
        await self.client.aio.aclose()

    # try-on -----------------------------------------------------------------------
    async def tryon(self, request: TryonInput) -> GeneratedImage:
        LAST_REPORT.set(None)
        person_mime, (width, height) = _inspect(request.person)
        parts = [types.Part.from_bytes(data=request.person, mime_type=person_mime)]
        for garment in request.garments:
            parts.append(types.Part.from_bytes(data=garment, mime_type=_inspect(garment)[0]))
        text = prompts.tryon_prompt(
            len(request.garments), request.prompt, request.style_hint, request.negative_prompt
        )
        parts.append(types.Part.from_text(text=text))
        shot = await self._generate(
            parts,
            system_instruction=prompts.SYSTEM_INSTRUCTION,
            aspect_ratio=nearest_aspect_ratio(width, height),
            longest_side=request.longest_side,
            output_format=request.output_format,
            seed=request.seed,
            prompt_version=prompts.PROMPT_VERSION,
            record=True,
        )
        return shot.image

    # catalog ----------------------------------------------------------------------
    async def catalog(self, request: CatalogInput) -> list[GeneratedImage]:
        LAST_REPORT.set(None)
        if not 0 < request.quantity <= len(prompts.CATALOG_SHOTS):
            raise GenerationFailed(f"unsupported catalog quantity {request.quantity}", code="internal_error")
        product_mime, (width, height) = _inspect(request.product)
        product_ratio = nearest_aspect_ratio(width, height)
        limit = asyncio.Semaphore(max(1, self.config.catalog_concurrency))
        started = time.monotonic()

        async def one(index: int) -> _Shot:
            async with limit:
                return await self._generate(
                    [
                        types.Part.from_bytes(data=request.product, mime_type=product_mime),
                        types.Part.from_text(text=prompts.catalog_prompt(index)),
                    ],
                    system_instruction=prompts.CATALOG_SYSTEM_INSTRUCTION,
                    aspect_ratio=prompts.CATALOG_SHOT_ASPECT_RATIOS.get(index, product_ratio),
                    longest_side=request.longest_side,
                    output_format=request.output_format,
                    seed=None if request.seed is None else request.seed + index,
                    prompt_version=prompts.CATALOG_PROMPT_VERSION,
                )

        try:
            async with asyncio.TaskGroup() as group:  # the first failure cancels the other shots
                tasks = [group.create_task(one(index)) for index in range(request.quantity)]
        except BaseExceptionGroup as failures:
            raise _first_failure(failures) from None
        shots = [task.result() for task in tasks]
        LAST_REPORT.set(_combine([shot.report for shot in shots], time.monotonic() - started))
        return [shot.image for shot in shots]

    # one model request ------------------------------------------------------------------
    async def _generate(
        self,
        parts: list[types.Part],
        *,
        system_instruction: str,
        aspect_ratio: str,
        longest_side: int,
        output_format: OutputFormat,
        seed: int | None,
        prompt_version: str,
        record: bool = False,
    ) -> _Shot:
        """One model request. ``record``: store its report in :data:`LAST_REPORT` once answered."""
        config = types.GenerateContentConfig(
            system_instruction=system_instruction,
            response_modalities=["IMAGE"],
            image_config=types.ImageConfig(
                image_size=image_size_for(longest_side), aspect_ratio=aspect_ratio
            ),
            seed=seed,
        )
        started = time.monotonic()
        try:
            response = await self._ask(parts, config)
        except genai_errors.APIError as exc:
            if exc.code in RETRY_STATUS_CODES or (exc.code or 0) >= 500:
                log.warning("gemini: unavailable after retries: %s %s", exc.code, exc.status)
            else:
                log.error(
                    "gemini: request rejected (%s %s: %s) - check the API key, model name and request",
                    exc.code,
                    exc.status,
                    exc.message,
                )
            raise GenerationFailed("model_unavailable") from exc
        except UNREACHABLE_ERRORS as exc:
            log.warning("gemini: unreachable or timed out: %s", type(exc).__name__)
            raise GenerationFailed("model_unavailable") from exc
        latency = time.monotonic() - started
        usage = response.usage_metadata
        report = GenerationReport(
            model_version=response.model_version,
            prompt_token_count=usage.prompt_token_count if usage is not None else None,
            candidates_token_count=usage.candidates_token_count if usage is not None else None,
            total_token_count=usage.total_token_count if usage is not None else None,
            latency_ms=round(latency * 1000),
            prompt_version=prompt_version,
        )
        if record:
            LAST_REPORT.set(report)
        log.info(
            "gemini: %s answered in %d ms (tokens %s/%s/%s, prompts %s)",
            report.model_version or self.config.model,
            report.latency_ms,
            report.prompt_token_count,
            report.candidates_token_count,
            report.total_token_count,
            prompt_version,
        )
        _check_blocked(response)
        data = _last_image(response)
        if data is None:
            log.info("gemini: answer without an image (finish reason %s)", _finish(response))
            raise GenerationFailed("no_image")
        image = await asyncio.to_thread(_reencode, data, longest_side, output_format)
        return _Shot(image=image, report=report)

    async def _ask(
        self, parts: list[types.Part], config: types.GenerateContentConfig
    ) -> types.GenerateContentResponse:
        """The SDK call, made again (up to ``retry_attempts`` in all) when the answer is cut off."""
        attempts = max(1, self.config.retry_attempts)
        for attempt in range(1, attempts + 1):
            try:
                return await self.client.aio.models.generate_content(
                    model=self.config.model, contents=[types.Content(role="user", parts=parts)], config=config
                )
            except DROPPED_ERRORS as exc:
                if attempt == attempts:
                    raise
                delay = min(self.config.retry_initial_delay * 2 ** (attempt - 1), self.config.retry_max_delay)
                log.warning(
                    "gemini: answer cut off (%s); attempt %d in %.1fs", type(exc).__name__, attempt + 1, delay
                )
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")


def _finish(response: types.GenerateContentResponse) -> str | None:
    return _enum_name(response.candidates[0].finish_reason) if response.candidates else None


def _first_failure(group: BaseExceptionGroup[Any]) -> BaseException:
    """The failure to report for a catalog: the first GenerationFailed, else the first error."""
    flat: list[BaseException] = []

    def walk(error: BaseException) -> None:
        if isinstance(error, BaseExceptionGroup):
            for inner in error.exceptions:
                walk(inner)
        else:
            flat.append(error)

    walk(group)
    for error in flat:
        if isinstance(error, GenerationFailed):
            return error
    return flat[0]


def _sum(values: Sequence[int | None]) -> int | None:
    known = [value for value in values if value is not None]
    return sum(known) if known else None


def _combine(reports: Sequence[GenerationReport], elapsed: float) -> GenerationReport:
    return GenerationReport(
        model_version=next((r.model_version for r in reports if r.model_version), None),
        prompt_token_count=_sum([r.prompt_token_count for r in reports]),
        candidates_token_count=_sum([r.candidates_token_count for r in reports]),
        total_token_count=_sum([r.total_token_count for r in reports]),
        latency_ms=round(elapsed * 1000),
        prompt_version=reports[0].prompt_version if reports else prompts.CATALOG_PROMPT_VERSION,
        requests=len(reports),
    )

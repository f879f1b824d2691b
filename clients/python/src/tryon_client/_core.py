"""The SDK's logic, written once for the sync and the async client.

Every operation is a generator that *describes* its I/O: it yields :class:`Send` (an HTTP
request; the driver sends back the response or throws the transport error in), :class:`Sleep`
and :class:`Notify` (call a progress or retry callback), and returns its result. The sync client
drives it with ``httpx.Client`` and ``time.sleep``, the async client with ``httpx.AsyncClient``
and ``asyncio.sleep``; retries, backoff, polling and decoding are therefore the same code.

Retries: a request that cannot do its work twice — a ``GET``, or a ``POST`` carrying an
Idempotency-Key — is retried on transport errors, 409, 429 and 5xx with the same body and key.
Any request is retried when the gateway refused it before doing anything: a connection that
never opened, 429 and 503. Transport errors and 5xx count against ``max_retries``; 429s (and
409s: the first request with that key is still being accepted) are waited out (``Retry-After``,
else backoff) up to ``max_rate_limit_wait`` seconds in all; a longer ``Retry-After`` raises
:class:`~tryon_client.errors.RateLimitError` at once, so a script is never parked for an hour by
a daily quota.
"""

from __future__ import annotations

import os
import random
import re
import time
from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, TypeVar, Union

import httpx
import msgspec

from tryon_client.errors import (
    APIConnectionError,
    InvalidInputError,
    RateLimitError,
    TryonError,
    error_class,
)
from tryon_client.models import ProgressEvent, RateLimit

T = TypeVar("T")

DEFAULT_BASE_URL = "http://127.0.0.1:8000"
FITINVIEW = "fitinview"
FTMVAI = "ftmvai"
_HEX_KEY = re.compile(r"^[0-9a-f]{64}$")


def dialect_of(api_key: str) -> str:
    """``fitinview`` for ``fiv_…`` keys, ``ftmvai`` for 64 lowercase hex characters."""
    if api_key.startswith("fiv_"):
        return FITINVIEW
    if _HEX_KEY.match(api_key):
        return FTMVAI
    raise InvalidInputError(
        "unrecognised API key: FitInView keys start with 'fiv_', FtmvAI keys are 64 lowercase hex characters"
    )


@dataclass
class RetryEvent:
    """Passed to ``on_retry`` before the client sleeps and sends the same request again."""

    method: str
    path: str
    attempt: int
    """1 for the first retry."""
    delay: float
    reason: str
    """``"transport: …"`` or ``"HTTP 429"`` etc."""


@dataclass
class Send:
    method: str
    url: str
    headers: dict[str, str]
    content: Optional[bytes] = None
    params: Optional[dict[str, str]] = None
    timeout: Optional[float] = None


@dataclass
class Sleep:
    seconds: float


@dataclass
class Notify:
    callback: Callable[[Any], Any]
    event: Any


Action = Union[Send, Sleep, Notify]
Op = Generator[Action, Any, T]

ProgressCallback = Callable[[ProgressEvent], Any]
"""Called after every poll of a wait; the async client awaits it if it returns an awaitable."""


@dataclass
class Config:
    api_key: str
    base_url: str
    timeout: float = 120.0
    """Per request; must exceed the gateway's sync wait (90 s) for ``wait=True`` try-ons."""
    max_retries: int = 4
    backoff_base: float = 0.5
    backoff_max: float = 8.0
    max_rate_limit_wait: float = 60.0
    poll_interval: float = 0.5
    poll_max_interval: float = 5.0
    wait_timeout: float = 600.0
    on_retry: Optional[Callable[[RetryEvent], Any]] = None
    rate_limit: Optional[RateLimit] = field(default=None)
    """The last ``X-RateLimit-*`` headers seen (FtmvAI answers them on every request)."""

    def headers(self, *, json_body: bool = False) -> dict[str, str]:
        headers = {
            "Authorization": f"Bearer {self.api_key}",
            "Accept": "application/json",
            "User-Agent": f"tryon-client/{_version()} python",
        }
        if json_body:
            headers["Content-Type"] = "application/json"
        return headers


def make_config(
    api_key: Optional[str],
    base_url: Optional[str],
    **options: Any,
) -> Config:
    key = api_key or os.environ.get("TRYON_API_KEY", "")
    if not key:
        raise InvalidInputError("no API key: pass api_key= or set TRYON_API_KEY")
    url = (base_url or os.environ.get("TRYON_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
    return Config(api_key=key, base_url=url, **{k: v for k, v in options.items() if v is not None})


def _version() -> str:
    from tryon_client import __version__

    return __version__


def backoff(config: Config, attempt: int) -> float:
    """Exponential backoff with jitter: ~0.5 s, 1 s, 2 s … capped at ``backoff_max``."""
    ceiling = min(config.backoff_max, config.backoff_base * (2.0**attempt))
    return ceiling / 2 + random.uniform(0, ceiling / 2)


def retry_after(headers: Mapping[str, str]) -> Optional[float]:
    raw = headers.get("retry-after")
    if raw is None:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        return None


def note_rate_limit(config: Config, headers: Mapping[str, str]) -> None:
    try:
        config.rate_limit = RateLimit(
            limit=int(headers["x-ratelimit-limit"]),
            remaining=int(headers["x-ratelimit-remaining"]),
            reset=int(headers["x-ratelimit-reset"]),
        )
    except (KeyError, ValueError):
        pass


def error_from_response(response: httpx.Response) -> TryonError:
    """The exception for an error answer, in either dialect's shape."""
    status = response.status_code
    body: Any = None
    try:
        body = response.json()
    except ValueError:
        body = response.text
    code: Optional[str] = None
    message = f"HTTP {status}"
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):  # FtmvAI: {"success": false, "error": {code, message, details}}
            code = str(error.get("code")) if error.get("code") else None
            message = str(error.get("message") or message)
        elif isinstance(body.get("detail"), str):  # FitInView: {"detail": "..."}
            message = body["detail"]
    elif isinstance(body, str) and body.strip():
        message = body.strip()[:500]
    cls = error_class(status)
    kwargs: dict[str, Any] = {
        "status": status,
        "code": code,
        "request_id": response.headers.get("x-request-id"),
        "body": body,
        "headers": response.headers,
    }
    if cls is RateLimitError:
        return RateLimitError(message, retry_after=retry_after(response.headers), **kwargs)
    return cls(message, **kwargs)


def request(
    config: Config,
    method: str,
    path: str,
    *,
    json: Any = None,
    params: Optional[dict[str, str]] = None,
    idempotency_key: Optional[str] = None,
    idempotent: bool = False,
) -> Op[httpx.Response]:
    """Send one API request with the retry policy of the module docstring; return a 2xx answer."""
    content = msgspec.json.encode(json) if json is not None else None
    headers = config.headers(json_body=content is not None)
    if idempotency_key is not None:
        headers["Idempotency-Key"] = idempotency_key
    safe = idempotent or method == "GET" or idempotency_key is not None
    send = Send(method, config.base_url + path, headers, content, params, config.timeout)
    attempt = 0
    rate_limited_for = 0.0
    while True:
        try:
            response: httpx.Response = yield send
        except httpx.TransportError as exc:
            never_sent = isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout))
            if not (safe or never_sent) or attempt >= config.max_retries:
                raise APIConnectionError(f"{method} {path}: {type(exc).__name__}: {exc}") from exc
            attempt += 1
            delay = backoff(config, attempt - 1)
            yield from _announce(config, method, path, attempt, delay, f"transport: {type(exc).__name__}")
            yield Sleep(delay)
            continue
        note_rate_limit(config, response.headers)
        status = response.status_code
        if status < 400:
            return response
        if status == 429 or (status == 409 and safe):
            # "come back later": the key is busy (429) or its first request is still being
            # accepted (409); waited out within one budget, never counted as failed attempts
            wait = retry_after(response.headers)
            wait = backoff(config, min(attempt, 3)) if wait is None else wait
            if rate_limited_for + wait <= config.max_rate_limit_wait:
                rate_limited_for += wait
                yield from _announce(config, method, path, attempt + 1, wait, f"HTTP {status}")
                yield Sleep(wait)
                continue
        elif (status == 503 or (safe and status >= 500)) and attempt < config.max_retries:
            attempt += 1
            wait = retry_after(response.headers) or backoff(config, attempt - 1)
            yield from _announce(config, method, path, attempt, wait, f"HTTP {status}")
            yield Sleep(min(wait, config.backoff_max))
            continue
        raise error_from_response(response)


def _announce(config: Config, method: str, path: str, attempt: int, delay: float, reason: str) -> Op[None]:
    if config.on_retry is not None:
        yield Notify(config.on_retry, RetryEvent(method, path, attempt, delay, reason))


def download(url: str, timeout: float) -> Op[bytes]:
    """GET an image URL without the API key (FtmvAI inputs given as URLs)."""
    try:
        response: httpx.Response = yield Send("GET", url, {"User-Agent": f"tryon-client/{_version()}"}, None)
    except httpx.TransportError as exc:
        raise InvalidInputError(f"could not download {url}: {type(exc).__name__}: {exc}") from exc
    if response.status_code >= 400:
        raise InvalidInputError(f"could not download {url}: HTTP {response.status_code}")
    return response.content


def decode(response: httpx.Response, kind: type[T]) -> T:
    return msgspec.json.decode(response.content, type=kind)


def next_interval(config: Config, interval: float) -> float:
    return min(config.poll_max_interval, interval * 1.5)


def now() -> float:
    return time.monotonic()

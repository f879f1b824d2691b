"""What the gateway answers, as typed objects, and the downloads of their results.

Field names are the dialects' own (``job_id``, ``result_url``, ``credits_used`` …), so the API
documents stay the reference. Results live behind presigned URLs that need no API key, so
``save``/``image``/``download`` work on any job or order, whichever client produced it; the
``a…`` variants do the same without blocking an event loop.
"""

from __future__ import annotations

import io
import posixpath
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Union
from urllib.parse import urlsplit

import httpx
import msgspec

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

__all__ = [
    "Account",
    "FtmvAccount",
    "FtmvAccountInfo",
    "Job",
    "JobPage",
    "Order",
    "OrderError",
    "ProgressEvent",
    "Purchase",
    "RateLimit",
    "Result",
]

DOWNLOAD_TIMEOUT = 120.0


class _Downloads(msgspec.Struct):
    """Result downloads shared by jobs and orders (subclasses define ``id`` and ``result_urls``)."""

    @property
    def id(self) -> str:
        raise NotImplementedError

    @property
    def result_urls(self) -> list[str]:
        raise NotImplementedError

    def _urls(self) -> list[str]:
        urls = self.result_urls
        if not urls:
            raise ValueError(f"{self.id} has no result to download (status {getattr(self, 'status', '?')})")
        return urls

    def _targets(self, path: Union[str, Path], urls: list[str]) -> list[Path]:
        target = Path(path)
        if len(urls) == 1 and not target.is_dir() and not str(path).endswith(("/", "\\")):
            return [target]
        target.mkdir(parents=True, exist_ok=True)
        if len(urls) == 1:
            return [target / f"{self.id}{_suffix(urls[0])}"]
        return [target / f"{self.id}_{n:02d}{_suffix(url)}" for n, url in enumerate(urls, start=1)]

    def download(self) -> list[bytes]:
        """The result images' bytes (one for a try-on, 6 or 12 for a catalog)."""
        with httpx.Client(timeout=DOWNLOAD_TIMEOUT, follow_redirects=True) as http:
            return [_checked(http.get(url)) for url in self._urls()]

    async def adownload(self) -> list[bytes]:
        async with httpx.AsyncClient(timeout=DOWNLOAD_TIMEOUT, follow_redirects=True) as http:
            return [_checked(await http.get(url)) for url in self._urls()]

    def save(self, path: Union[str, Path]) -> list[Path]:
        """Write the result(s): a file path for one result, else a directory (created if needed).

        One result saved to an existing directory (or a path ending in ``/``) is named after the
        job; several are named ``<id>_01.jpg``, ``<id>_02.jpg`` …. Returns the files written.
        """
        urls = self._urls()
        targets = self._targets(path, urls)
        for target, data in zip(targets, self.download()):
            target.write_bytes(data)
        return targets

    async def asave(self, path: Union[str, Path]) -> list[Path]:
        urls = self._urls()
        targets = self._targets(path, urls)
        for target, data in zip(targets, await self.adownload()):
            target.write_bytes(data)
        return targets

    def image(self) -> PILImage:
        """The first result as a Pillow image (needs ``pillow``)."""
        return _open_image(self.download()[0])

    async def aimage(self) -> PILImage:
        return _open_image((await self.adownload())[0])


def _suffix(url: str) -> str:
    suffix = posixpath.splitext(urlsplit(url).path)[1].lower()
    return suffix if suffix in (".png", ".jpg", ".jpeg", ".webp") else ".png"


def _checked(response: httpx.Response) -> bytes:
    response.raise_for_status()
    return response.content


def _open_image(data: bytes) -> PILImage:
    try:
        from PIL import Image
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("result.image() needs Pillow: pip install 'tryon-client[pil]'") from exc
    image: PILImage = Image.open(io.BytesIO(data))
    image.load()
    return image


class Job(_Downloads, kw_only=True):
    """A FitInView try-on job: the submit answer or a poll (``GET /api/v1/tryon/{job_id}``)."""

    job_id: str
    status: str
    """``running``, ``succeeded`` or ``failed``."""
    result_url: Optional[str] = None
    error_code: Optional[str] = None
    error_message: Optional[str] = None
    cost_credits: Optional[int] = None
    duration_ms: Optional[int] = None
    created_at: Optional[str] = None
    completed_at: Optional[str] = None
    metadata: Optional[dict[str, Any]] = None
    seed: Optional[int] = None
    credits_refunded: Optional[int] = None
    credits_remaining: Optional[int] = None
    """Only on submit answers: the balance when the answer was sent."""
    message: Optional[str] = None
    """Only on submit answers: set when the sync wait ran out."""

    @property
    def id(self) -> str:
        return self.job_id

    @property
    def done(self) -> bool:
        return self.status in ("succeeded", "failed")

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"

    @property
    def failed(self) -> bool:
        return self.status == "failed"

    @property
    def result_urls(self) -> list[str]:
        return [self.result_url] if self.result_url else []


class JobPage(msgspec.Struct, kw_only=True):
    jobs: list[Job]
    next_cursor: Optional[str] = None


class Account(msgspec.Struct, kw_only=True):
    """FitInView's ``GET /api/v1/account``."""

    name: str
    credits_remaining: int
    rate_limit_per_min: int
    total_calls: int
    tryon_cost_credits: dict[str, int]


class Purchase(msgspec.Struct, kw_only=True):
    """FitInView's ``POST /api/v1/credits/purchase`` answer."""

    payment_intent_id: str
    status: str
    pack_slug: str
    credits_added: int
    credits_remaining: int
    next_action: Optional[dict[str, Any]] = None


class OrderError(msgspec.Struct, kw_only=True):
    code: str
    message: str


class Order(_Downloads, kw_only=True):
    """An FtmvAI order (``GET /api/v1/orders/{id}``; a fresh ``/generate`` answer is ``pending``)."""

    id_: int = msgspec.field(name="id")
    status: str
    """``pending``, ``in_progress``, ``completed`` or ``failed``."""
    credits_used: int = 0
    progress: Optional[int] = None
    results: Optional[dict[str, Any]] = None
    error: Optional[OrderError] = None
    created_at: Optional[str] = None
    estimated_completion: Optional[str] = None
    completed_at: Optional[str] = None
    processing_time: Optional[int] = None
    credits_refunded: Optional[int] = None

    @property
    def id(self) -> str:
        return str(self.id_)

    @property
    def order_id(self) -> int:
        return self.id_

    @property
    def done(self) -> bool:
        return self.status in ("completed", "failed")

    @property
    def succeeded(self) -> bool:
        return self.status == "completed"

    @property
    def failed(self) -> bool:
        return self.status == "failed"

    @property
    def result_urls(self) -> list[str]:
        results = self.results or {}
        if isinstance(results.get("catalog_images"), list):
            return [str(url) for url in results["catalog_images"]]
        url = results.get("result_url")
        return [str(url)] if url else []


class RateLimit(msgspec.Struct, kw_only=True):
    """FtmvAI's ``X-RateLimit-*`` headers (or ``rate_limit`` in ``/account``)."""

    limit: int
    remaining: int
    reset: int
    """Unix seconds when the window resets."""


class FtmvAccountInfo(msgspec.Struct, kw_only=True):
    user_id: int
    credits_remaining: int
    api_calls_today: int
    api_calls_total: int
    plan: str


class FtmvAccount(msgspec.Struct, kw_only=True):
    """FtmvAI's ``GET /api/v1/account``."""

    success: bool
    account: FtmvAccountInfo
    rate_limit: RateLimit

    @property
    def credits_remaining(self) -> int:
        return self.account.credits_remaining


class ProgressEvent(msgspec.Struct, kw_only=True):
    """What a wait reports after each poll: FtmvAI gives a percent, FitInView only a status."""

    id: str
    status: str
    elapsed: float
    """Seconds since the wait started."""
    percent: Optional[int] = None


Result = Union[Job, Order]

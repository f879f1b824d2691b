"""The clients: :class:`FitInView` / :class:`FtmvAI` (blocking) and their ``Async…`` twins.

:func:`Client` and :func:`AsyncClient` pick the class from the key's shape (``fiv_…`` →
FitInView, 64 hex → FtmvAI). Each class is a thin driver over the shared operations of
:mod:`tryon_client._ops`, so the sync and async surfaces behave identically.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from types import TracebackType
from typing import Any, Optional, TypeVar, Union

import httpx

from tryon_client import _ops
from tryon_client._core import (
    FITINVIEW,
    FTMVAI,
    Config,
    Notify,
    Op,
    ProgressCallback,
    RetryEvent,
    Send,
    Sleep,
    dialect_of,
    make_config,
)
from tryon_client._inputs import ImageInput
from tryon_client.errors import DialectError
from tryon_client.models import Account, FtmvAccount, Job, Order, Purchase, RateLimit

__all__ = ["AsyncClient", "AsyncFitInView", "AsyncFtmvAI", "Client", "FitInView", "FtmvAI", "RetryEvent"]

T = TypeVar("T")
PAGE_SIZE = 100


class _Base:
    dialect: str = ""

    def __init__(
        self,
        api_key: Optional[str] = None,
        *,
        base_url: Optional[str] = None,
        timeout: Optional[float] = None,
        max_retries: Optional[int] = None,
        max_rate_limit_wait: Optional[float] = None,
        wait_timeout: Optional[float] = None,
        poll_interval: Optional[float] = None,
        on_retry: Optional[Callable[[RetryEvent], Any]] = None,
    ) -> None:
        """``api_key`` defaults to ``$TRYON_API_KEY``, ``base_url`` to ``$TRYON_BASE_URL`` or
        ``http://127.0.0.1:8000`` (``tryon-gateway dev``). ``timeout`` is per request (120 s,
        above the gateway's 90 s sync wait); ``wait_timeout`` bounds a whole wait (600 s);
        ``max_rate_limit_wait`` is how long 429s are waited out in all (60 s)."""
        self._config: Config = make_config(
            api_key,
            base_url,
            timeout=timeout,
            max_retries=max_retries,
            max_rate_limit_wait=max_rate_limit_wait,
            wait_timeout=wait_timeout,
            poll_interval=poll_interval,
            on_retry=on_retry,
        )
        found = dialect_of(self._config.api_key)
        if found != self.dialect:
            raise DialectError(f"this is a {found} key; use the {found} client (or tryon_client.Client)")

    @property
    def base_url(self) -> str:
        return self._config.base_url

    @property
    def rate_limit(self) -> Optional[RateLimit]:
        """The last ``X-RateLimit-*`` headers the gateway sent (FtmvAI sends them on every answer)."""
        return self._config.rate_limit


class _Sync(_Base):
    def __init__(self, api_key: Optional[str] = None, **options: Any) -> None:
        super().__init__(api_key, **options)
        self._http = httpx.Client(timeout=self._config.timeout)

    def _run(self, op: Op[T]) -> T:
        value: Any = None
        error: Optional[BaseException] = None
        while True:
            try:
                action = op.throw(error) if error is not None else op.send(value)
            except StopIteration as stop:
                result: T = stop.value
                return result
            value, error = None, None
            if isinstance(action, Send):
                try:
                    value = self._http.request(
                        action.method,
                        action.url,
                        headers=action.headers,
                        content=action.content,
                        params=action.params,
                        timeout=action.timeout or self._config.timeout,
                    )
                except httpx.TransportError as exc:
                    error = exc
            elif isinstance(action, Sleep):
                time.sleep(action.seconds)
            elif isinstance(action, Notify):
                action.callback(action.event)

    def close(self) -> None:
        self._http.close()

    def __enter__(self: _S) -> _S:
        return self

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.close()


_S = TypeVar("_S", bound=_Sync)
_A = TypeVar("_A", bound="_Async")


class _Async(_Base):
    def __init__(self, api_key: Optional[str] = None, **options: Any) -> None:
        super().__init__(api_key, **options)
        self._http = httpx.AsyncClient(timeout=self._config.timeout)

    async def _run(self, op: Op[T]) -> T:
        value: Any = None
        error: Optional[BaseException] = None
        while True:
            try:
                action = op.throw(error) if error is not None else op.send(value)
            except StopIteration as stop:
                result: T = stop.value
                return result
            value, error = None, None
            if isinstance(action, Send):
                try:
                    value = await self._http.request(
                        action.method,
                        action.url,
                        headers=action.headers,
                        content=action.content,
                        params=action.params,
                        timeout=action.timeout or self._config.timeout,
                    )
                except httpx.TransportError as exc:
                    error = exc
            elif isinstance(action, Sleep):
                await asyncio.sleep(action.seconds)
            elif isinstance(action, Notify):
                outcome = action.callback(action.event)
                if inspect.isawaitable(outcome):
                    await outcome

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self: _A) -> _A:
        return self

    async def __aexit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        await self.aclose()


# --- FitInView ----------------------------------------------------------------------------------------


class FitInView(_Sync):
    """FitInView (``fiv_live_…`` / ``fiv_test_…`` keys): try-ons, jobs, account, credit packs."""

    dialect = FITINVIEW

    def tryon(
        self,
        *,
        person: ImageInput,
        garments: Sequence[ImageInput],
        output_size: str = "1K",
        prompt: Optional[str] = None,
        seed: Optional[int] = None,
        metadata: Optional[dict[str, Any]] = None,
        wait: bool = True,
        idempotency_key: Optional[str] = None,
        webhook_url: Optional[str] = None,
        negative_prompt: Optional[str] = None,
        wait_timeout: Optional[float] = None,
        on_progress: Optional[ProgressCallback] = None,
    ) -> Job:
        """Submit a try-on. ``person`` and each of the 1 to 3 ``garments`` is a path, bytes, a Pillow
        image or an http(s) URL. With ``wait`` (the default) returns the succeeded job — polling
        on if the gateway's sync wait runs out — or raises :class:`~tryon_client.JobFailedError`;
        without it returns the running job at once. The submit carries an Idempotency-Key
        (``idempotency_key`` or a generated one) and every retry reuses it, so it charges once."""
        body = _ops.tryon_body(
            person,
            garments,
            output_size=output_size,
            prompt=prompt,
            seed=seed,
            metadata=metadata,
            wait=wait,
            webhook_url=webhook_url,
            negative_prompt=negative_prompt,
        )
        return self._run(
            _ops.tryon(
                self._config,
                body,
                idempotency_key=idempotency_key,
                wait_timeout=wait_timeout,
                on_progress=on_progress,
            )
        )

    def get(self, job_id: str) -> Job:
        return self._run(_ops.get(self._config, job_id))

    def list(self, *, status: Optional[str] = None, page_size: int = PAGE_SIZE) -> Iterator[Job]:
        """Every job of the key, newest first, fetching pages as it goes (optionally one status)."""
        cursor: Optional[str] = None
        while True:
            page = self._run(_ops.list_page(self._config, cursor, page_size))
            for job in page.jobs:
                if status is None or job.status == status:
                    yield job
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    def wait_for(
        self,
        job: Union[Job, str],
        *,
        timeout: Optional[float] = None,
        on_progress: Optional[ProgressCallback] = None,
        raise_on_failure: bool = True,
    ) -> Job:
        """Poll a job until it ends (interval 0.5 s growing to 5 s); raise if it failed."""
        return self._run(
            _ops.wait_for(
                self._config, job, timeout=timeout, on_progress=on_progress, raise_on_failure=raise_on_failure
            )
        )

    def account(self) -> Account:
        return self._run(_ops.account(self._config))

    def purchase_credits(self, pack: str, shared_payment_token: str) -> Purchase:
        """Buy a credit pack (``starter``, ``growth``, ``scale``) with a Stripe Shared Payment Token."""
        return self._run(_ops.purchase_credits(self._config, pack, shared_payment_token))


class AsyncFitInView(_Async):
    """:class:`FitInView` for asyncio: the same methods, awaited."""

    dialect = FITINVIEW

    async def tryon(
        self,
        *,
        person: ImageInput,
        garments: Sequence[ImageInput],
        output_size: str = "1K",
        prompt: Optional[str] = None,
        seed: Optional[int] = None,
        metadata: Optional[dict[str, Any]] = None,
        wait: bool = True,
        idempotency_key: Optional[str] = None,
        webhook_url: Optional[str] = None,
        negative_prompt: Optional[str] = None,
        wait_timeout: Optional[float] = None,
        on_progress: Optional[ProgressCallback] = None,
    ) -> Job:
        body = _ops.tryon_body(
            person,
            garments,
            output_size=output_size,
            prompt=prompt,
            seed=seed,
            metadata=metadata,
            wait=wait,
            webhook_url=webhook_url,
            negative_prompt=negative_prompt,
        )
        return await self._run(
            _ops.tryon(
                self._config,
                body,
                idempotency_key=idempotency_key,
                wait_timeout=wait_timeout,
                on_progress=on_progress,
            )
        )

    async def get(self, job_id: str) -> Job:
        return await self._run(_ops.get(self._config, job_id))

    async def list(self, *, status: Optional[str] = None, page_size: int = PAGE_SIZE) -> AsyncIterator[Job]:
        cursor: Optional[str] = None
        while True:
            page = await self._run(_ops.list_page(self._config, cursor, page_size))
            for job in page.jobs:
                if status is None or job.status == status:
                    yield job
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    async def wait_for(
        self,
        job: Union[Job, str],
        *,
        timeout: Optional[float] = None,
        on_progress: Optional[ProgressCallback] = None,
        raise_on_failure: bool = True,
    ) -> Job:
        return await self._run(
            _ops.wait_for(
                self._config, job, timeout=timeout, on_progress=on_progress, raise_on_failure=raise_on_failure
            )
        )

    async def account(self) -> Account:
        return await self._run(_ops.account(self._config))

    async def purchase_credits(self, pack: str, shared_payment_token: str) -> Purchase:
        return await self._run(_ops.purchase_credits(self._config, pack, shared_payment_token))


# --- FtmvAI -------------------------------------------------------------------------------------------


class FtmvAI(_Sync):
    """FtmvAI (64-hex keys): try-on orders, product catalogs, account; waits out 429s."""

    dialect = FTMVAI

    def generate(
        self,
        *,
        person: ImageInput,
        clothing: ImageInput,
        quality: str = "high",
        format: str = "jpg",
        wait: bool = True,
        wait_timeout: Optional[float] = None,
        on_progress: Optional[ProgressCallback] = None,
    ) -> Order:
        """Create a virtual try-on order (1 credit). URLs are downloaded here (FtmvAI takes base64).
        With ``wait`` returns the completed order or raises :class:`~tryon_client.JobFailedError`."""
        return self._run(
            _ops.generate(
                self._config,
                person=person,
                clothing=clothing,
                quality=quality,
                image_format=format,
                wait=wait,
                wait_timeout=wait_timeout,
                on_progress=on_progress,
            )
        )

    def catalog(
        self,
        *,
        product: ImageInput,
        count: int = 6,
        quality: str = "high",
        format: str = "jpg",
        wait: bool = True,
        wait_timeout: Optional[float] = None,
        on_progress: Optional[ProgressCallback] = None,
    ) -> Order:
        """Create a product catalog order of 6 (24 credits) or 12 (36 credits) images."""
        return self._run(
            _ops.catalog(
                self._config,
                product=product,
                count=count,
                quality=quality,
                image_format=format,
                wait=wait,
                wait_timeout=wait_timeout,
                on_progress=on_progress,
            )
        )

    def order(self, order_id: Union[int, str]) -> Order:
        return self._run(_ops.order(self._config, order_id))

    def wait_for_order(
        self,
        order_id: Union[int, str, Order],
        *,
        timeout: Optional[float] = None,
        on_progress: Optional[ProgressCallback] = None,
        raise_on_failure: bool = True,
    ) -> Order:
        return self._run(
            _ops.wait_for_order(
                self._config,
                order_id,
                timeout=timeout,
                on_progress=on_progress,
                raise_on_failure=raise_on_failure,
            )
        )

    def account(self) -> FtmvAccount:
        return self._run(_ops.ftmv_account(self._config))


class AsyncFtmvAI(_Async):
    """:class:`FtmvAI` for asyncio: the same methods, awaited."""

    dialect = FTMVAI

    async def generate(
        self,
        *,
        person: ImageInput,
        clothing: ImageInput,
        quality: str = "high",
        format: str = "jpg",
        wait: bool = True,
        wait_timeout: Optional[float] = None,
        on_progress: Optional[ProgressCallback] = None,
    ) -> Order:
        return await self._run(
            _ops.generate(
                self._config,
                person=person,
                clothing=clothing,
                quality=quality,
                image_format=format,
                wait=wait,
                wait_timeout=wait_timeout,
                on_progress=on_progress,
            )
        )

    async def catalog(
        self,
        *,
        product: ImageInput,
        count: int = 6,
        quality: str = "high",
        format: str = "jpg",
        wait: bool = True,
        wait_timeout: Optional[float] = None,
        on_progress: Optional[ProgressCallback] = None,
    ) -> Order:
        return await self._run(
            _ops.catalog(
                self._config,
                product=product,
                count=count,
                quality=quality,
                image_format=format,
                wait=wait,
                wait_timeout=wait_timeout,
                on_progress=on_progress,
            )
        )

    async def order(self, order_id: Union[int, str]) -> Order:
        return await self._run(_ops.order(self._config, order_id))

    async def wait_for_order(
        self,
        order_id: Union[int, str, Order],
        *,
        timeout: Optional[float] = None,
        on_progress: Optional[ProgressCallback] = None,
        raise_on_failure: bool = True,
    ) -> Order:
        return await self._run(
            _ops.wait_for_order(
                self._config,
                order_id,
                timeout=timeout,
                on_progress=on_progress,
                raise_on_failure=raise_on_failure,
            )
        )

    async def account(self) -> FtmvAccount:
        return await self._run(_ops.ftmv_account(self._config))


def Client(api_key: Optional[str] = None, **options: Any) -> Union[FitInView, FtmvAI]:
    """A blocking client for the key's dialect (``api_key`` defaults to ``$TRYON_API_KEY``)."""
    config = make_config(api_key, options.get("base_url"))
    cls = FitInView if dialect_of(config.api_key) == FITINVIEW else FtmvAI
    return cls(config.api_key, **options)


def AsyncClient(api_key: Optional[str] = None, **options: Any) -> Union[AsyncFitInView, AsyncFtmvAI]:
    """An asyncio client for the key's dialect."""
    config = make_config(api_key, options.get("base_url"))
    cls = AsyncFitInView if dialect_of(config.api_key) == FITINVIEW else AsyncFtmvAI
    return cls(config.api_key, **options)

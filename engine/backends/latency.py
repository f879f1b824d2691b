"""Simulated model latency for the offline backend (``TRYON_LOCAL_BACKEND_DELAY_SECONDS``).

Real models take seconds to minutes; a local composite takes milliseconds. A
delay makes the offline backend behave like a model for demos and lets tests
exercise sync-wait limits, mid-job crashes and deadlines with the real code.
"""

from __future__ import annotations

import asyncio

from engine.backends.base import Backend, CatalogInput, GeneratedImage, TryonInput


class DelayedBackend:
    def __init__(self, inner: Backend, delay_seconds: float) -> None:
        self.inner = inner
        self.name = inner.name
        self.delay_seconds = delay_seconds

    async def tryon(self, request: TryonInput) -> GeneratedImage:
        await asyncio.sleep(self.delay_seconds)
        return await self.inner.tryon(request)

    async def catalog(self, request: CatalogInput) -> list[GeneratedImage]:
        await asyncio.sleep(self.delay_seconds)
        return await self.inner.catalog(request)

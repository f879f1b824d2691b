"""``/healthz`` (the process answers) and ``/readyz`` (database, Redis and S3 answer)."""

from __future__ import annotations

import asyncio
from typing import Any

from litestar import Response, get
from litestar.di import NamedDependency

from engine.runtime import Runtime


@get("/healthz", include_in_schema=False)
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@get("/readyz", include_in_schema=False)
async def readyz(runtime: NamedDependency[Runtime]) -> Response[dict[str, Any]]:
    async def check(name: str, probe: Any) -> tuple[str, str]:
        try:
            await asyncio.wait_for(probe, timeout=3)
        except Exception as exc:
            return name, f"unavailable: {type(exc).__name__}"
        return name, "ok"

    results = dict(
        await asyncio.gather(
            check("database", runtime.db.ping()),
            check("redis", runtime.redis.ping()),
            check("storage", runtime.store.ping()),
        )
    )
    ready = all(value == "ok" for value in results.values())
    return Response(
        {"status": "ready" if ready else "unavailable", **results}, status_code=200 if ready else 503
    )

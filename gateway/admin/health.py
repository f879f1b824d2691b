"""``GET /admin/health``: services, the scheduled ledger check, the queue and retention.

Unlike ``/readyz`` (which load balancers read, and which stays green over a money problem so
the API keeps serving), this is for people: a ledger violation makes it say ``degraded`` and
lists the problems. It answers 200 whatever it reports; the body is the verdict.
"""

from __future__ import annotations

from litestar import get
from litestar.di import NamedDependency
from litestar.handlers import HTTPRouteHandler

from engine.health import HealthReport, health_report
from engine.runtime import Runtime


@get("/health", opt={"role": "viewer"})
async def admin_health(runtime: NamedDependency[Runtime]) -> HealthReport:
    return await health_report(runtime)


ROUTES: list[HTTPRouteHandler] = [admin_health]

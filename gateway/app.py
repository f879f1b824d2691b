"""The Litestar application: mounts each dialect's router, injects the caller and limits.

``create_app`` is used by ``serve`` (API only), by ``dev`` and by the tests
(``with_worker=True``: a Dramatiq worker and the sweeper run inside the same
process, on the server's own event loop).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import dramatiq
from litestar import Litestar, Request, Response
from litestar.connection import ASGIConnection
from litestar.di import NamedDependency, Provide
from litestar.exceptions import HTTPException
from litestar.handlers.base import BaseRouteHandler

from dialects.fitinview import routes as fitinview
from dialects.ftmvai import openapi as ftmvai_openapi
from dialects.ftmvai import routes as ftmvai
from engine import sweeper
from engine.access import Caller, RateVerdict
from engine.runtime import Runtime
from engine.worker import make_broker, start_worker, sweep_forever
from gateway import account, health
from gateway.admin.openapi import build_openapi_route
from gateway.admin.routes import build_admin_router, malformed_integer_id
from gateway.auth import authenticate, gate, one_guard, provide_caller
from gateway.body_drain import BodyDrain
from gateway.console.routes import build_console_router, template_config
from gateway.discovery import build_discovery_router
from gateway.observability import RequestObservability, build_metrics_route
from gateway.ratelimit import (
    PLANS,
    Window,
    apply_plan_limits,
    counted,
    hit,
    per_key_limits,
    plan_limits,
    release_reserved_order,
)
from gateway.settings import Settings
from gateway.shutdown import drain_sync_waits_on_signals
from gateway.stripe_webhook import build_stripe_router
from gateway.wiring import DEV_ENGINE, build_runtime

log = logging.getLogger(__name__)


def _host_dialects(settings: Settings) -> dict[str, str]:
    pins: dict[str, str] = {}
    for entry in settings.host_dialects:
        host, _, dialect = entry.partition("=")
        if host and dialect:
            pins[host.strip().lower()] = dialect.strip()
    return pins


def _not_found_or_other(request: Request[Any, Any, Any], exc: HTTPException) -> Response[dict[str, str]]:
    if exc.status_code == 404 and request.url.path.startswith("/admin/"):
        field = malformed_integer_id(request.url.path)
        if field is not None:
            return Response({"detail": f"{field}: Expected a positive integer id"}, status_code=400)
    return Response({"detail": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers or {})


def create_app(
    settings: Settings,
    *,
    runtime: Runtime | None = None,
    with_worker: bool = False,
    worker_threads: int = 4,
    default_engine: str = DEV_ENGINE,
    drain_on_signals: bool = False,
) -> Litestar:
    runtime = runtime or build_runtime(settings, default_engine=default_engine)
    pins = _host_dialects(settings)
    windows = {
        "submit": Window(
            scope="submit", limit=settings.rate_limit_per_min, seconds=settings.rate_limit_window_seconds
        ),
        "read": Window(
            scope="read", limit=settings.read_rate_limit_per_min, seconds=settings.rate_limit_window_seconds
        ),
    }
    namespace = runtime.config.redis_namespace
    limits = per_key_limits(runtime.redis, namespace, windows)
    ftmvai_limits = plan_limits(runtime.redis, namespace, windows["read"])

    async def shared_limits(
        connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
    ) -> None:
        """The shared account route counts as a read in the caller's own dialect."""
        caller: Caller = connection.state.caller
        if caller.dialect == "fitinview":
            with counted(caller.dialect):
                connection.state.rate_verdict = await hit(
                    runtime.redis, namespace, str(caller.key.id), windows["read"], note_key_id=caller.key.id
                )
        else:
            await apply_plan_limits(runtime.redis, namespace, windows["read"], connection, "read")

    # Each provider takes the one before (runtime → caller → the rest) only so that Litestar
    # resolves them one after another: side by side they cost an anyio task group per request.
    def provide_rate_verdict(request: Request[Any, Any, Any], caller: NamedDependency[Caller]) -> RateVerdict:
        verdict: RateVerdict = request.state.rate_verdict
        return verdict

    def provide_max_in_progress(caller: NamedDependency[Caller]) -> int:
        return PLANS[caller.account.plan].concurrent

    fitinview_config = fitinview.FitInViewConfig(rate_limit_per_min=settings.rate_limit_per_min)

    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        await runtime.start()
        if drain_on_signals:
            drain_sync_waits_on_signals(runtime)
        loop = asyncio.get_running_loop()
        broker = make_broker(runtime, shared_loop=loop if with_worker else None)
        worker: dramatiq.Worker | None = None
        sweeping: asyncio.Task[None] | None = None
        if with_worker:
            worker = await asyncio.to_thread(start_worker, broker, threads=worker_threads)
            sweeping = asyncio.create_task(sweep_forever(runtime, sweeper.sweep), name="sweeper")
        try:
            yield
        finally:
            if sweeping is not None:
                sweeping.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sweeping
            if worker is not None:
                await asyncio.to_thread(worker.stop, int(settings.worker_shutdown_seconds * 1000))
            broker.close()
            await runtime.close()

    # The dialects' routers authenticate and count through a before_request hook (gate) rather than a
    # guard: same checks, without Litestar's copy of the route handler per guard and request.
    ftmvai_router = ftmvai.build_router(
        before_request=gate(authenticate(runtime, "ftmvai", pins), ftmvai_limits)
    )
    fitinview_router = fitinview.build_router(
        before_request=gate(authenticate(runtime, "fitinview", pins), limits), dependencies={}
    )

    app = Litestar(
        route_handlers=[
            fitinview_router,
            ftmvai_router,
            fitinview.build_public_router(),
            ftmvai_openapi.openapi_document,
            account.build_account_router([one_guard(authenticate(runtime, None, pins), shared_limits)], pins),
            health.healthz,
            health.readyz,
            build_metrics_route(runtime, settings.metrics_token),
            build_admin_router(settings.admin_token, runtime),
            build_openapi_route(build_admin_router(settings.admin_token, runtime, include_in_schema=True)),
            build_stripe_router(runtime),
            build_console_router(runtime, settings.admin_token, settings.console_session_seconds),
            build_discovery_router(
                settings,
                [
                    {
                        "slug": pack.slug,
                        "credits": pack.credits,
                        "price": pack.amount,
                        "currency": pack.currency,
                    }
                    for pack in runtime.config.payments.packs
                ],
            ),
        ],
        dependencies={
            "runtime": Provide(lambda: runtime, sync_to_thread=False),
            "fitinview_config": Provide(lambda: fitinview_config, sync_to_thread=False),
            "caller": Provide(provide_caller, sync_to_thread=False),
            "rate_verdict": Provide(provide_rate_verdict, sync_to_thread=False),
            "max_in_progress": Provide(provide_max_in_progress, sync_to_thread=False),
        },
        exception_handlers={HTTPException: _not_found_or_other},
        lifespan=[lifespan],
        after_exception=[release_reserved_order(runtime.redis)],
        openapi_config=None,
        template_config=template_config(),
        logging_config=None,  # the process's logging (gateway/logging_setup.py), not a second setup
        request_max_body_size=settings.max_body_bytes,
        debug=False,
    )
    app.state.runtime = runtime
    # Outermost, around routing and exception handling: every response gets its request id.
    # Inside it, an early refusal drains the unread upload first, so the client can read it.
    app.asgi_handler = RequestObservability(BodyDrain(app.asgi_handler, settings.max_body_bytes))
    return app

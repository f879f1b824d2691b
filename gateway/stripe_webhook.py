"""``POST /api/v1/stripe/webhook``: Stripe's events, verified and stored, processed by the engine.

No API key: the ``Stripe-Signature`` header (against ``TRYON_STRIPE_WEBHOOK_SECRET``)
is the authentication. The handler only verifies and stores the event, then answers
``{"received": true}``; the ``payment.event_received`` actor does the work. A bad
signature, a missing secret or a body that is not an event is a 400 ``{"detail"}``.
"""

from __future__ import annotations

import logging
from typing import Any

from litestar import Request, Response, Router, post
from litestar.exceptions import HTTPException

from engine import payments
from engine.errors import DomainError, InvalidRequest, ServiceUnavailable
from engine.runtime import Runtime

log = logging.getLogger(__name__)


def _error(_: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, str]]:
    if isinstance(exc, InvalidRequest):
        return Response({"detail": exc.message}, status_code=400)
    if isinstance(exc, ServiceUnavailable):
        return Response({"detail": exc.message}, status_code=503)
    if isinstance(exc, DomainError):
        return Response({"detail": exc.message}, status_code=400)
    if isinstance(exc, HTTPException):
        return Response({"detail": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers or {})
    log.exception("unhandled error on the Stripe webhook", exc_info=exc)
    return Response({"detail": "Internal server error"}, status_code=500)


def build_stripe_router(runtime: Runtime) -> Router:
    """The unauthenticated Stripe webhook route, bound to ``runtime``."""

    @post("/stripe/webhook", status_code=200, include_in_schema=False)
    async def stripe_webhook(request: Request[Any, Any, Any]) -> dict[str, bool]:
        await payments.receive_webhook(runtime, await request.body(), request.headers.get("stripe-signature"))
        return {"received": True}

    return Router(
        path="/api/v1",
        route_handlers=[stripe_webhook],
        exception_handlers={Exception: _error},
    )

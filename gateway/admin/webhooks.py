"""Admin routes for webhook events: see an event and its attempts, and send it again.

Mounted on the admin router (bearer ``TRYON_ADMIN_TOKEN``, ``{"detail"}`` errors):

* ``GET /admin/webhooks/{evt_…}`` — the event, its body and every attempt
* ``POST /admin/webhooks/{evt_…}/resend`` — 202; a fresh round of attempts, same event id
"""

from __future__ import annotations

from typing import Any

from litestar import get, post
from litestar.di import NamedDependency
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath

from engine import webhooks
from engine.runtime import Runtime


@get("/webhooks/{event_id:str}")
async def get_webhook_event(event_id: FromPath[str], runtime: NamedDependency[Runtime]) -> dict[str, Any]:
    return await webhooks.event_with_attempts(runtime, event_id)


@post("/webhooks/{event_id:str}/resend", status_code=202)
async def resend_webhook_event(event_id: FromPath[str], runtime: NamedDependency[Runtime]) -> dict[str, Any]:
    attempt = await webhooks.resend(runtime, event_id)
    return {"id": event_id, "status": "pending", "attempt": attempt}


def build_webhook_admin_routes() -> list[HTTPRouteHandler]:
    """The handlers to add to the admin router's ``route_handlers``."""
    return [get_webhook_event, resend_webhook_event]

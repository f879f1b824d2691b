"""Admin routes for webhook events: list them, see one and its attempts, and send it again.

* ``GET /admin/webhooks?status=&account=&cursor=&limit=`` (viewer) — events across jobs, newest first
* ``GET /admin/webhooks/{evt_…}`` (viewer) — the event, its body and every attempt
* ``POST /admin/webhooks/{evt_…}/resend`` (support) — 202; a fresh round of attempts, same event
  id, audited as ``webhook.resend`` (an optional ``{"reason": …}`` is kept in the audit entry)
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec
from litestar import get, post
from litestar.di import NamedDependency
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath, JSONBody, Parameter

from engine import webhooks
from engine.runtime import Runtime
from gateway.admin.params import Cursor, IdFilter, Limit, WebhookStatus, before_id
from gateway.admin.schemas import OptionalReason
from ledger.models import Actor

EventId = Annotated[str, Parameter(pattern=r"^evt_[0-9a-f]{1,64}$", max_length=68, description="evt_…")]


class WebhookEventOut(msgspec.Struct, kw_only=True):
    id: str
    job_id: str
    account_id: int
    url: str
    status: str
    attempts: int
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None
    next_attempt_at: datetime | None


class WebhookEventPage(msgspec.Struct, kw_only=True):
    events: list[WebhookEventOut]
    next_cursor: str | None


class Resent(msgspec.Struct, kw_only=True):
    id: str
    status: str
    attempt: int


@get("/webhooks", opt={"role": "viewer"})
async def list_webhook_events(
    runtime: NamedDependency[Runtime],
    status: WebhookStatus = None,
    account: IdFilter = None,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> WebhookEventPage:
    found = await webhooks.list_events(
        runtime,
        webhooks.EventFilter(status=status, account_id=account, before_id=before_id(cursor), limit=limit + 1),
    )
    page = found[:limit]
    return WebhookEventPage(
        events=[
            WebhookEventOut(**{name: getattr(event, name) for name in WebhookEventOut.__struct_fields__})
            for event in page
        ],
        next_cursor=str(page[-1].cursor_id) if len(found) > limit and page else None,
    )


@get("/webhooks/{event_id:str}", opt={"role": "viewer"})
async def get_webhook_event(event_id: FromPath[EventId], runtime: NamedDependency[Runtime]) -> dict[str, Any]:
    return await webhooks.event_with_attempts(runtime, event_id)


@post("/webhooks/{event_id:str}/resend", status_code=202, opt={"role": "support"})
async def resend_webhook_event(
    event_id: FromPath[EventId],
    runtime: NamedDependency[Runtime],
    actor: NamedDependency[Actor],
    data: JSONBody[OptionalReason | None] = None,
) -> Resent:
    async with runtime.db.transaction():
        row_id, attempt = await webhooks.mark_for_resend(
            runtime, event_id, actor, reason=(data.reason or "") if data else ""
        )
    webhooks.schedule(runtime, row_id, attempt)
    return Resent(id=event_id, status="pending", attempt=attempt)


ROUTES: list[HTTPRouteHandler] = [list_webhook_events, get_webhook_event, resend_webhook_event]

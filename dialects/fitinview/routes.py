"""FitInView's routes: decode, call one engine service function, encode.

The gateway builds this router with its gate (authentication, then rate limits, as a
``before_request`` hook) and dependencies (``caller``, ``runtime``); each handler declares
through ``opt["rate"]`` which limit its calls count against. The submit and the poll, the hot
routes, read the caller from the request's state and the runtime from the app's state instead
of having them injected, and answer pre-encoded JSON (issue 10, ``docs/performance.md``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec
from litestar import Request, Response, Router, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, FromQuery
from litestar.types import ASGIApp, BeforeRequestHookHandler, Guard

from dialects.fitinview import responses
from dialects.fitinview.errors import EXCEPTION_HANDLERS
from dialects.fitinview.openapi import OPENAPI_DOCUMENT
from dialects.fitinview.purchase import purchase_credits
from dialects.fitinview.requests import parse_tryon
from dialects.fitinview.schemas import AccountResponse, TryOnJobList
from dialects.json_answer import JsonAnswer
from dialects.text import is_storable, storable_text
from engine import prices, service
from engine.access import Caller
from engine.errors import InvalidRequest, NotFound
from engine.runtime import Runtime

DEFAULT_PAGE = 20
MAX_PAGE = 100


class FitInViewConfig(msgspec.Struct, frozen=True, kw_only=True):
    rate_limit_per_min: int = 20


@post("/tryon", status_code=200, opt={"rate": "submit"})
async def submit_tryon(request: Request[Any, Any, Any]) -> ASGIApp:
    """The submit (a ``TryOnSubmitResponse``). The caller comes from the gate's request state and the
    runtime from the app's state, and the answer is a pre-encoded :class:`~dialects.json_answer.JsonAnswer`,
    as for the poll: Litestar's injection and response building were a visible share of a submit's
    CPU (issue 10)."""
    runtime: Runtime = request.app.state.runtime
    caller: Caller = request.scope["state"]["caller"]
    # Streamed, not request.body(): that would keep the body cached on the request while it waits.
    parsed = parse_tryon(
        b"".join([chunk async for chunk in request.stream()]), request.headers.get("idempotency-key")
    )
    wait = parsed.wait
    submission = await service.submit_tryon(
        runtime,
        caller,
        parsed.command,
        parsed.idempotency,
        input_links=False,  # never shown
    )
    del parsed  # a held wait keeps nothing of the request's images: thousands may be held at once
    wait_seconds = runtime.config.sync_wait_seconds
    if wait:
        submission = await service.wait_for_submission(
            runtime, caller, submission, wait_seconds, input_links=False
        )
    return JsonAnswer(responses.submit_response(submission, waited=wait, wait_seconds=wait_seconds))


@get("/tryon", opt={"rate": "read"})
async def list_tryons(
    caller: NamedDependency[Caller],
    runtime: NamedDependency[Runtime],
    limit: FromQuery[str | None] = None,
    cursor: FromQuery[str | None] = None,
) -> TryOnJobList:
    cursor = storable_text("cursor", cursor) if cursor else None
    page = await service.list_jobs(
        runtime,
        caller,
        limit=_page_size(limit),
        cursor=cursor,
        input_links=False,  # never shown
    )
    return responses.job_list(page)


@get("/tryon/{job_id:str}", opt={"rate": "read"})
async def get_tryon(request: Request[Any, Any, Any], job_id: FromPath[str]) -> ASGIApp:
    """The poll (issue 10: its hottest route). The caller comes from the gate's request state and
    the runtime from the app's state rather than through injected dependencies, and the answer
    is a pre-encoded :class:`~dialects.json_answer.JsonAnswer` (a ``TryOnJobStatus``, as before):
    each of those was a visible share of a poll's CPU."""
    if not is_storable(job_id):  # no stored id holds such a character; the database would refuse it
        raise NotFound("Job not found")
    runtime: Runtime = request.app.state.runtime
    caller: Caller = request.scope["state"]["caller"]
    job = await service.get_job(runtime, caller, job_id, input_links=False)
    return JsonAnswer(responses.job_status(job))


def _page_size(raw: str | None) -> int:
    if raw is None or raw == "":
        return DEFAULT_PAGE
    try:
        value = int(raw)
    except ValueError:
        raise InvalidRequest("limit must be an integer", field="limit") from None
    if value < 1:
        raise InvalidRequest("limit must be at least 1", field="limit")
    return min(value, MAX_PAGE)


async def account(runtime: Runtime, caller: Caller, config: FitInViewConfig) -> AccountResponse:
    """The FitInView shape of the shared ``GET /api/v1/account``."""
    return responses.account(
        name=caller.key.name,
        credits_remaining=await runtime.ledger.balance(caller.account.id),
        rate_limit_per_min=config.rate_limit_per_min,
        total_calls=await service.jobs_created(runtime, caller),
        prices=prices.price_book("fitinview.tryon.", caller.account.prices),
    )


@get("/openapi.json", include_in_schema=False)
async def openapi_document() -> Response[bytes]:
    return Response(OPENAPI_DOCUMENT, media_type="application/json")


def build_router(
    *,
    guards: Sequence[Guard] = (),
    dependencies: dict[str, Provide],
    before_request: BeforeRequestHookHandler | None = None,
) -> Router:
    """The authenticated FitInView routes under ``/api/v1`` (authentication and limits as ``guards``
    or, cheaper, as a ``before_request`` hook: ``gateway.auth.gate``)."""
    return Router(
        path="/api/v1",
        route_handlers=[submit_tryon, list_tryons, get_tryon, purchase_credits],
        guards=list(guards),
        before_request=before_request,
        dependencies=dependencies,
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
    )


def build_public_router() -> Router:
    """FitInView's unauthenticated documents (``/openapi.json``)."""
    return Router(path="/", route_handlers=[openapi_document], exception_handlers=EXCEPTION_HANDLERS)  # type: ignore[arg-type]

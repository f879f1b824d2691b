"""FitInView's routes: decode, call one engine service function, encode.

The gateway builds this router with its guards (authentication, rate limits)
and dependencies (``caller``, ``runtime``); each handler declares through
``opt["rate"]`` which limit its calls count against.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec
from litestar import Request, Response, Router, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, FromQuery
from litestar.types import Guard

from dialects.fitinview import responses
from dialects.fitinview.errors import EXCEPTION_HANDLERS
from dialects.fitinview.openapi import OPENAPI_DOCUMENT
from dialects.fitinview.purchase import purchase_credits
from dialects.fitinview.requests import parse_tryon
from dialects.fitinview.schemas import AccountResponse, TryOnJobList, TryOnJobStatus, TryOnSubmitResponse
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
async def submit_tryon(
    request: Request[Any, Any, Any], caller: NamedDependency[Caller], runtime: NamedDependency[Runtime]
) -> TryOnSubmitResponse:
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
    return responses.submit_response(submission, waited=wait, wait_seconds=wait_seconds)


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
async def get_tryon(
    job_id: FromPath[str], caller: NamedDependency[Caller], runtime: NamedDependency[Runtime]
) -> TryOnJobStatus:
    if not is_storable(job_id):  # no stored id holds such a character; the database would refuse it
        raise NotFound("Job not found")
    return responses.job_status(await service.get_job(runtime, caller, job_id, input_links=False))


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


def build_router(*, guards: Sequence[Guard], dependencies: dict[str, Provide]) -> Router:
    """The authenticated FitInView routes under ``/api/v1``."""
    return Router(
        path="/api/v1",
        route_handlers=[submit_tryon, list_tryons, get_tryon, purchase_credits],
        guards=list(guards),
        dependencies=dependencies,
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
    )


def build_public_router() -> Router:
    """FitInView's unauthenticated documents (``/openapi.json``)."""
    return Router(path="/", route_handlers=[openapi_document], exception_handlers=EXCEPTION_HANDLERS)  # type: ignore[arg-type]

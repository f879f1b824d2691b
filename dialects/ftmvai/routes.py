"""FtmvAI's routes: decode, call one engine service function, encode.

The gateway builds this router with its guards (authentication, plan limits) and
injects ``caller``, ``runtime``, ``rate_verdict`` (the window closest to running
out, rendered as ``X-RateLimit-*``) and ``max_in_progress`` (the plan's orders in
progress at once).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from litestar import Request, Response, Router, get, post, route
from litestar.di import NamedDependency
from litestar.exceptions import MethodNotAllowedException
from litestar.params import FromPath
from litestar.types import Guard

from dialects.ftmvai import responses
from dialects.ftmvai.errors import EXCEPTION_HANDLERS
from dialects.ftmvai.requests import parse_generate
from dialects.ftmvai.schemas import AccountResponse, GenerateResponse, OrderResponse
from engine import service
from engine.access import Caller, RateVerdict
from engine.errors import NotFound
from engine.models import CatalogCommand
from engine.runtime import Runtime

MAX_ORDER_ID = 2**63 - 1


@post("/generate", status_code=202, opt={"rate": "order"})
async def generate(
    request: Request[Any, Any, Any],
    caller: NamedDependency[Caller],
    runtime: NamedDependency[Runtime],
    rate_verdict: NamedDependency[RateVerdict],
    max_in_progress: NamedDependency[int],
) -> Response[GenerateResponse]:
    command = parse_generate(await request.body())
    if isinstance(command, CatalogCommand):
        submission = await service.submit_catalog(runtime, caller, command, max_in_progress=max_in_progress)
    else:
        submission = await service.submit_tryon(
            runtime, caller, command, None, max_in_progress=max_in_progress
        )
    return Response(
        responses.generate_response(submission.job),
        status_code=202,
        headers=responses.rate_headers(rate_verdict),
    )


@get("/orders/{order_id:str}", opt={"rate": "read"})
async def get_order(
    order_id: FromPath[str],
    caller: NamedDependency[Caller],
    runtime: NamedDependency[Runtime],
    rate_verdict: NamedDependency[RateVerdict],
) -> Response[OrderResponse]:
    # ASCII digits only: "²" passes str.isdigit() but int() refuses it
    if not (order_id.isascii() and order_id.isdigit()) or not 0 < int(order_id) <= MAX_ORDER_ID:
        raise NotFound("Order not found")
    job = await service.get_order(runtime, caller, int(order_id))
    return Response(responses.order(job), headers=responses.rate_headers(rate_verdict))


@route("/generate", http_method=["GET", "PUT", "PATCH", "DELETE"], include_in_schema=False)
async def generate_other_methods() -> None:
    """Answered here rather than by the framework's router, so the 405 is in FtmvAI's envelope."""
    raise MethodNotAllowedException(headers={"Allow": "POST"})


@route("/orders/{order_id:str}", http_method=["POST", "PUT", "PATCH", "DELETE"], include_in_schema=False)
async def order_other_methods() -> None:
    """Answered here rather than by the framework's router, so the 405 is in FtmvAI's envelope."""
    raise MethodNotAllowedException(headers={"Allow": "GET"})


async def account(runtime: Runtime, caller: Caller, verdict: RateVerdict) -> Response[AccountResponse]:
    """The FtmvAI shape of the shared ``GET /api/v1/account``."""
    today, total = await service.orders_created(runtime, caller)
    body = responses.account(
        user_id=caller.account.id,
        credits_remaining=await runtime.ledger.balance(caller.account.id),
        calls_today=today,
        calls_total=total,
        plan=caller.account.plan,
        verdict=verdict,
    )
    return Response(body, headers=responses.rate_headers(verdict))


def build_router(*, guards: Sequence[Guard]) -> Router:
    """The authenticated FtmvAI routes under ``/api/v1``."""
    return Router(
        path="/api/v1",
        route_handlers=[generate, get_order, generate_other_methods, order_other_methods],
        guards=list(guards),
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
    )

"""FtmvAI's routes: decode, call one engine service function, encode.

The gateway builds this router with its gate (authentication, then plan limits, as a
``before_request`` hook), which leaves ``caller`` and ``rate_verdict`` (the window closest to
running out, rendered as ``X-RateLimit-*``) in the request's state, and injects
``max_in_progress`` (the plan's orders in progress at once). The submit and the poll, the hot
routes, read them from state and answer pre-encoded JSON (issue 10, ``docs/performance.md``);
the account route has them injected.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from litestar import Request, Response, Router, get, post, route
from litestar.di import NamedDependency
from litestar.exceptions import MethodNotAllowedException
from litestar.params import FromPath
from litestar.types import ASGIApp, BeforeRequestHookHandler, Guard

from dialects.ftmvai import responses
from dialects.ftmvai.errors import EXCEPTION_HANDLERS
from dialects.ftmvai.requests import parse_generate
from dialects.ftmvai.schemas import AccountResponse
from dialects.json_answer import JsonAnswer
from engine import service
from engine.access import Caller, RateVerdict
from engine.errors import NotFound
from engine.models import CatalogCommand
from engine.runtime import Runtime

MAX_ORDER_ID = 2**63 - 1


@post("/generate", status_code=202, opt={"rate": "order"})
async def generate(request: Request[Any, Any, Any], max_in_progress: NamedDependency[int]) -> ASGIApp:
    """The submit. The caller and the rate verdict come from the gate's request state and the runtime
    from the app's state, as for the poll: with them injected too, Litestar resolved the verdict
    beside ``max_in_progress`` in a task group on every submit (issue 10). The answer shows no
    input links, so none are signed; it goes out pre-encoded (a ``GenerateResponse`` with
    ``X-RateLimit-*``, as before: :class:`~dialects.json_answer.JsonAnswer`)."""
    runtime: Runtime = request.app.state.runtime
    state = request.scope["state"]
    caller: Caller = state["caller"]
    command = parse_generate(await request.body())
    if isinstance(command, CatalogCommand):
        submission = await service.submit_catalog(
            runtime, caller, command, max_in_progress=max_in_progress, input_links=False
        )
    else:
        submission = await service.submit_tryon(
            runtime, caller, command, None, max_in_progress=max_in_progress, input_links=False
        )
    return JsonAnswer(
        responses.generate_response(submission.job),
        status=202,
        headers=responses.rate_headers(state["rate_verdict"]),
    )


@get("/orders/{order_id:str}", opt={"rate": "read"})
async def get_order(request: Request[Any, Any, Any], order_id: FromPath[str]) -> ASGIApp:
    """The poll (issue 10: its hottest route). The caller and the rate verdict come from the gate's
    request state and the runtime from the app's state rather than through injected dependencies,
    and the answer is a pre-encoded :class:`~dialects.json_answer.JsonAnswer` (an
    ``OrderResponse`` with ``X-RateLimit-*``, as before): each of those was a visible share of a
    poll's CPU."""
    # ASCII digits only: "²" passes str.isdigit() but int() refuses it
    if not (order_id.isascii() and order_id.isdigit()) or not 0 < int(order_id) <= MAX_ORDER_ID:
        raise NotFound("Order not found")
    runtime: Runtime = request.app.state.runtime
    state = request.scope["state"]
    job = await service.get_order(runtime, state["caller"], int(order_id))
    return JsonAnswer(responses.order(job), headers=responses.rate_headers(state["rate_verdict"]))


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


def build_router(
    *, guards: Sequence[Guard] = (), before_request: BeforeRequestHookHandler | None = None
) -> Router:
    """The authenticated FtmvAI routes under ``/api/v1`` (authentication and limits as ``guards``
    or, cheaper, as a ``before_request`` hook: ``gateway.auth.gate``)."""
    return Router(
        path="/api/v1",
        route_handlers=[generate, get_order, generate_other_methods, order_other_methods],
        guards=list(guards),
        before_request=before_request,
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
    )

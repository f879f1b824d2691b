"""Who is calling the admin API, and whether their role allows the route.

Every admin route declares the role it needs in its ``opt`` (``{"role": "support"}``); a route
that forgets gets ``viewer`` for reads and ``admin`` for writes, so a missing declaration can
only ever be too strict. No token or an unknown one is 401; a known operator outside the role
is 403. The authenticated operator becomes the :class:`~ledger.models.Actor` of every write.
"""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.types import Guard

from engine.context import current_request_id, new_request_id, sane_request_id
from engine.runtime import Runtime
from gateway.auth import bearer_token
from ledger.models import Actor, OperatorRecord
from ledger.operators import require


def needed_role(handler: BaseRouteHandler) -> str:
    declared = handler.opt.get("role")
    if isinstance(declared, str):
        return declared
    methods: set[str] = set(getattr(handler, "http_methods", ()))
    return "viewer" if methods and methods <= {"GET", "HEAD"} else "admin"


def operator_guard(runtime: Runtime, root_token: str) -> Guard:
    async def guard(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
        operator = await runtime.operators.authenticate(bearer_token(connection), root_token)
        require(operator, needed_role(handler))
        connection.state.operator = operator

    return guard


def provide_operator(request: Request[Any, Any, Any]) -> OperatorRecord:
    operator: OperatorRecord = request.state.operator
    return operator


def provide_actor(request: Request[Any, Any, Any]) -> Actor:
    """The audit trail's actor: the operator, and the request id the response echoes."""
    operator: OperatorRecord = request.state.operator
    request_id = (
        current_request_id() or sane_request_id(request.headers.get("x-request-id")) or new_request_id()
    )
    return Actor(operator=operator.name, request_id=request_id)

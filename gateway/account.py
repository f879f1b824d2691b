"""``GET /api/v1/account``: one path, two dialects.

The answer's shape follows the dialect of the key that called (or of the host
name an operator pinned); errors raised before a key is resolved take the
FitInView shape for a ``fiv_…`` token and the FtmvAI shape otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from litestar import Request, Response, Router, get
from litestar.di import NamedDependency
from litestar.exceptions import HTTPException
from litestar.types import Guard

from dialects.fitinview import errors as fitinview_errors
from dialects.fitinview import routes as fitinview
from dialects.ftmvai import errors as ftmvai_errors
from dialects.ftmvai import routes as ftmvai
from engine.access import Caller, RateVerdict
from engine.errors import DomainError
from engine.runtime import Runtime
from gateway.auth import bearer_token, pinned_dialect


@get("/account", opt={"rate": "read"})
async def account(
    caller: NamedDependency[Caller],
    runtime: NamedDependency[Runtime],
    rate_verdict: NamedDependency[RateVerdict],
    fitinview_config: NamedDependency[fitinview.FitInViewConfig],
) -> Any:
    if caller.dialect == "fitinview":
        return await fitinview.account(runtime, caller, fitinview_config)
    return await ftmvai.account(runtime, caller, rate_verdict)


def _speaks_fitinview(request: Request[Any, Any, Any], host_dialects: dict[str, str]) -> bool:
    caller = request.state.get("caller") if hasattr(request.state, "get") else None
    if isinstance(caller, Caller):
        return caller.dialect == "fitinview"
    pinned = pinned_dialect(request, host_dialects)
    if pinned is not None:
        return pinned == "fitinview"
    return (bearer_token(request) or "").startswith("fiv_")


def build_account_router(guards: Sequence[Guard], host_dialects: dict[str, str]) -> Router:
    def domain_error(request: Request[Any, Any, Any], exc: DomainError) -> Response[Any]:
        if _speaks_fitinview(request, host_dialects):
            return fitinview_errors.error_response(exc)
        return ftmvai_errors.handle_domain_error(request, exc)

    def http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
        if _speaks_fitinview(request, host_dialects):
            return fitinview_errors.handle_http_error(request, exc)
        return ftmvai_errors.handle_http_error(request, exc)

    def unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
        """Outages answer 503 in the caller's dialect (and anything else its 500), never Litestar's shape."""
        if _speaks_fitinview(request, host_dialects):
            return fitinview_errors.handle_unexpected(request, exc)
        return ftmvai_errors.handle_unexpected(request, exc)

    return Router(
        path="/api/v1",
        route_handlers=[account],
        guards=list(guards),
        exception_handlers={DomainError: domain_error, HTTPException: http_error, Exception: unexpected},
    )

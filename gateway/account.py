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
from engine.access import Caller
from engine.errors import DomainError, Unauthenticated
from engine.runtime import Runtime


@get("/account", opt={"rate": "read"})
async def account(
    caller: NamedDependency[Caller],
    runtime: NamedDependency[Runtime],
    fitinview_config: NamedDependency[fitinview.FitInViewConfig],
) -> Any:
    if caller.dialect == "fitinview":
        return await fitinview.account(runtime, caller, fitinview_config)
    raise Unauthenticated("This key's dialect is not served yet")


def _error(request: Request[Any, Any, Any], exc: DomainError) -> Response[Any]:
    return fitinview_errors.error_response(exc)


def _http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    return fitinview_errors.handle_http_error(request, exc)


def build_account_router(guards: Sequence[Guard]) -> Router:
    return Router(
        path="/api/v1",
        route_handlers=[account],
        guards=list(guards),
        exception_handlers={DomainError: _error, HTTPException: _http_error},
    )

"""The admin API under ``/admin``: ops' hands on accounts, keys, money, jobs and operators.

Routes only translate, like a dialect: the operations live in the domain packages (money in
``ledger/``, jobs in ``engine/``), shared with the CLI and the console. Each area is a module
with a ``ROUTES`` list; the router adds the operator guard (roles, see
:mod:`gateway.admin.guard`), the ``{"detail"}`` error shape and the dependencies. Each write
runs in one transaction owned by its route, and its audit entry is part of it.
"""

from __future__ import annotations

import functools
import re

from litestar import Router
from litestar.di import Provide
from litestar.handlers import HTTPRouteHandler

from engine.runtime import Runtime
from gateway.admin import accounts, audit, health, jobs, money, operators, webhooks
from gateway.admin.errors import EXCEPTION_HANDLERS
from gateway.admin.guard import operator_guard, provide_actor, provide_operator

AREAS = (accounts, operators, audit, webhooks, money, health, jobs)


def admin_handlers() -> list[HTTPRouteHandler]:
    return [handler for area in AREAS for handler in area.ROUTES]


@functools.cache
def _integer_slots() -> list[re.Pattern[str]]:
    """Each admin route's path as a pattern whose ``{name:int}`` slots take any segment."""
    patterns = []
    for handler in admin_handlers():
        for path in handler.paths:
            if ":int}" not in path:
                continue
            pattern = re.sub(r"\\\{(\w+):int\\\}", r"(?P<\1>[^/]+)", re.escape("/admin" + path))
            patterns.append(re.compile(re.sub(r"\\\{\w+:\w+\\\}", "[^/]+", pattern)))
    return patterns


def malformed_integer_id(path: str) -> str | None:
    """The integer path parameter ``path`` fills with a non-number, when that is why no admin route
    matched (the router answers such paths 404; the admin API names the field with a 400)."""
    for pattern in _integer_slots():
        match = pattern.fullmatch(path)
        if match:
            for name, value in match.groupdict().items():
                if not value.lstrip("-").isdigit():
                    return name
    return None


def build_admin_router(admin_token: str, runtime: Runtime, *, include_in_schema: bool = False) -> Router:
    return Router(
        path="/admin",
        route_handlers=admin_handlers(),
        guards=[operator_guard(runtime, admin_token)],
        dependencies={
            "runtime": Provide(lambda: runtime, sync_to_thread=False),
            "admin_operator": Provide(provide_operator, sync_to_thread=False),
            "actor": Provide(provide_actor, sync_to_thread=False),
        },
        exception_handlers=EXCEPTION_HANDLERS,
        include_in_schema=include_in_schema,
    )

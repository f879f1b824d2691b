"""Every admin route x {no token, viewer, support, admin, root}: the guard, and only the guard.

The routes come from ``/admin/openapi.json`` (so a route added later is covered without editing
this file), each route's role from the handler's own ``opt["role"]``. Targets are ids that don't
exist and bodies that don't validate: a caller the guard lets through gets 400/404/409, never
401/403, and nothing on the shared gateway changes.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from gateway.admin.params import MAX_ID
from gateway.admin.routes import admin_handlers
from tests.gateway.admin.conftest import AdminClient
from tests.support.gateway import RunningGateway

RANK = {"viewer": 0, "support": 1, "admin": 2}
CALLERS = {"viewer": "viewer", "support": "support", "admin": "admin", "root": "admin"}
MISSING_STRINGS = {"name": "no-such-operator", "job_id": "job_" + "0" * 24, "event_id": "evt_nosuchevent"}


def openapi_path(handler_path: str) -> str:
    """``/accounts/{account_id:int}`` as the document writes it: ``/admin/accounts/{account_id}``."""
    return "/admin" + re.sub(r"\{(\w+):\w+\}", r"{\1}", handler_path)


def declared_roles() -> dict[tuple[str, str], str]:
    roles: dict[tuple[str, str], str] = {}
    for handler in admin_handlers():
        for path in handler.paths:
            for method in handler.http_methods:
                roles[(method, openapi_path(path))] = handler.opt["role"]
    return roles


def test_every_admin_handler_declares_its_role() -> None:
    undeclared = [
        f"{sorted(handler.http_methods)} {sorted(handler.paths)}"
        for handler in admin_handlers()
        if handler.opt.get("role") not in RANK
    ]
    assert not undeclared, f"admin routes without an explicit opt['role']: {undeclared}"


def concrete(path: str, operation: dict[str, Any]) -> str:
    for parameter in operation.get("parameters", []):
        if parameter["in"] != "path":
            continue
        name = parameter["name"]
        integer = parameter["schema"].get("type") == "integer"
        value = str(MAX_ID) if integer else MISSING_STRINGS.get(name, "x1")
        path = path.replace("{" + name + "}", value)
    return path


async def test_role_matrix_over_every_documented_route(
    gateway: RunningGateway, operators: dict[str, AdminClient]
) -> None:
    status, document, _ = await gateway.request("GET", "/admin/openapi.json")
    assert status == 200
    roles = declared_roles()
    documented = {
        (method.upper(), path): operation
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
    }
    assert set(documented) == {key for key in roles if key[0] != "HEAD"}, "the document and the router differ"
    assert len(documented) >= 10

    anonymous = AdminClient(gateway, None)
    wrong: list[str] = []
    for (method, path), operation in sorted(documented.items()):
        url = concrete(path, operation).removeprefix("/admin")
        body = {"role_matrix_probe": True} if "requestBody" in operation else None
        needed = RANK[roles[(method, path)]]
        status, answer, _ = await anonymous.call(method, url, body)
        if status != 401 or set(answer) != {"detail"}:
            wrong.append(f"no token {method} {url}: {status} {answer}")
        for caller, role in CALLERS.items():
            status, answer, _ = await operators[caller].call(method, url, body)
            if RANK[role] < needed:
                if status != 403 or set(answer) != {"detail"}:
                    wrong.append(f"{caller} {method} {url}: {status} (expected 403)")
            elif status in (401, 403) or status >= 500:
                wrong.append(f"{caller} {method} {url}: {status} {answer}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("caller", ["viewer", "support", "admin"])
async def test_a_role_reads_health(operators: dict[str, AdminClient], caller: str) -> None:
    assert (await operators[caller].ok("GET", "/health"))["services"]["database"] == "ok"

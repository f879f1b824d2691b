"""``GET /admin/openapi.json``: the admin API's own OpenAPI document, generated from its routes.

The document is built from the very handlers the admin router serves (their parameter and
body annotations carry every limit, :mod:`gateway.admin.params`), in a throwaway application
that exists only to render the schema, so it can never drift from what the API accepts.
It describes the API and holds no secrets, so it is served without a token.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Litestar, Response, Router, get
from litestar.handlers import HTTPRouteHandler
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme

DESCRIPTION = (
    "Ops' API: accounts, keys, credits, jobs, operators, audit, usage."
    " Bearer: an operator token (or the bootstrap TRYON_ADMIN_TOKEN)."
)


def render(admin_router: Router) -> bytes:
    app = Litestar(
        route_handlers=[admin_router],
        openapi_config=OpenAPIConfig(
            title="tryon-gateway admin API",
            version="1",
            description=DESCRIPTION,
            components=Components(security_schemes={"bearer": SecurityScheme(type="http", scheme="bearer")}),
            security=[{"bearer": []}],
            render_plugins=[],
        ),
    )
    schema: dict[str, Any] = app.openapi_schema.to_schema()
    return msgspec.json.encode(schema)


def build_openapi_route(schema_router: Router) -> HTTPRouteHandler:
    """The route serving the document of ``schema_router`` (a second admin router, schema-only)."""
    document: list[bytes] = []

    @get("/admin/openapi.json", include_in_schema=False)
    async def admin_openapi() -> Response[bytes]:
        if not document:
            document.append(render(schema_router))
        return Response(document[0], media_type="application/json")

    return admin_openapi

"""FtmvAI's OpenAPI document (``/ftmvai/openapi.json``): valid, public, and says what the code does.

Response components are generated from the msgspec structs, so they are compared with the
structs' own JSON Schemas; the request schema is checked against the parser both ways on a table
of bodies (tests/dialects/test_openapi_fuzz.py runs Schemathesis against the served document).
"""

from __future__ import annotations

import json
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import msgspec
import pytest

from dialects.ftmvai import openapi, schemas
from dialects.ftmvai.requests import parse_generate
from engine.errors import InvalidRequest
from tests.support.gateway import RunningGateway

DOC: dict[str, Any] = json.loads(openapi.OPENAPI_DOCUMENT)
OPERATIONS = {("/api/v1/generate", "post"), ("/api/v1/orders/{order_id}", "get"), ("/api/v1/account", "get")}


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _refs(value)]
    return []


async def test_the_document_is_served_without_a_key(gateway: RunningGateway) -> None:
    """First in the module: the gateway fixtures are set up before the tests that need none."""
    status, body, headers = await gateway.request("GET", "/ftmvai/openapi.json")
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    assert body == DOC


async def test_document_is_openapi_3_1_with_bearer_auth() -> None:
    assert DOC["openapi"].startswith("3.1.")
    assert DOC["info"]["title"] == "FtmvAI API"
    assert DOC["security"] == [{"bearerAuth": []}]
    assert DOC["components"]["securitySchemes"]["bearerAuth"] == {"type": "http", "scheme": "bearer"}
    served = {(path, method) for path, item in DOC["paths"].items() for method in item}
    assert served == OPERATIONS


async def test_every_ref_resolves() -> None:
    for ref in _refs(DOC):
        node: Any = DOC
        for part in ref.removeprefix("#/").split("/"):
            assert part in node, ref
            node = node[part]


@pytest.mark.parametrize(
    "struct",
    [schemas.GenerateResponse, schemas.OrderResponse, schemas.AccountResponse, schemas.ErrorResponse],
)
async def test_response_components_are_the_structs(struct: type[msgspec.Struct]) -> None:
    _, expected = msgspec.json.schema_components([struct], ref_template="#/components/schemas/{name}")
    for name, schema in expected.items():
        assert DOC["components"]["schemas"][name] == schema


async def test_every_answer_has_the_envelope_and_rate_headers() -> None:
    generate = DOC["paths"]["/api/v1/generate"]["post"]["responses"]
    assert set(generate) == {"202", "400", "401", "402", "403", "429", "500", "503"}
    assert set(generate["202"]["headers"]) == {
        "X-RateLimit-Limit",
        "X-RateLimit-Remaining",
        "X-RateLimit-Reset",
    }
    assert "Retry-After" in generate["429"]["headers"]
    for status, response in generate.items():
        if status != "202":
            assert response["content"]["application/json"]["schema"] == {
                "$ref": "#/components/schemas/ErrorResponse"
            }
    order = DOC["paths"]["/api/v1/orders/{order_id}"]["get"]
    assert order["parameters"][0]["schema"]["type"] == "integer"
    assert "404" in order["responses"]


IMAGE = "aGk="
GENERATE_BODIES: list[dict[str, Any]] = [
    {"person_image": IMAGE, "clothing_image": IMAGE},
    {"style": "", "person_image": IMAGE, "clothing_image": IMAGE},
    {"style": None, "person_image": IMAGE, "clothing_image": IMAGE},
    {"style": 0, "person_image": IMAGE, "clothing_image": IMAGE},
    {"style": True, "person_image": IMAGE, "clothing_image": IMAGE},
    {"style": "virtual_tryon", "person_image": IMAGE},
    {"style": "virtual_tryon", "person_image": "", "clothing_image": IMAGE},
    {"person_image": 5, "clothing_image": IMAGE},
    {"person_image": IMAGE, "clothing_image": IMAGE, "product_image": 5, "quantity": "many"},
    {"style": "product_catalog", "product_image": IMAGE, "quantity": 6},
    {"style": "product_catalog", "product_image": IMAGE, "quantity": 12, "person_image": 5},
    {"style": "product_catalog", "product_image": IMAGE, "quantity": 7},
    {"style": "product_catalog", "product_image": IMAGE, "quantity": True},
    {"style": "product_catalog", "product_image": IMAGE},
    {"style": "catalog", "product_image": IMAGE, "quantity": 6},
    {"person_image": IMAGE, "clothing_image": IMAGE, "options": {"quality": "STANDARD", "format": "Png"}},
    {"person_image": IMAGE, "clothing_image": IMAGE, "options": {"quality": "ultra"}},
    {"person_image": IMAGE, "clothing_image": IMAGE, "options": {"format": "gif"}},
    {"person_image": IMAGE, "clothing_image": IMAGE, "options": {"quality": None}},
    {"person_image": IMAGE, "clothing_image": IMAGE, "options": None},
    {"person_image": IMAGE, "clothing_image": IMAGE, "options": "high"},
]


@pytest.mark.parametrize("body", GENERATE_BODIES, ids=lambda body: json.dumps(body)[:60])
async def test_the_request_schema_accepts_what_the_parser_accepts(body: dict[str, Any]) -> None:
    try:
        parse_generate(json.dumps(body).encode())
        parsed = True
    except InvalidRequest:
        parsed = False
    validator = jsonschema.Draft202012Validator(DOC["components"]["schemas"]["GenerateRequest"])
    assert validator.is_valid(body) == parsed, (body, parsed)

"""The served OpenAPI document is valid and says what the code does.

Response components are compared field by field with the msgspec structs in
``dialects/fitinview/schemas.py`` (names, presence, nullability), so neither can
change without the other. Request limits and aliases are compared with
``dialects/fitinview/requests.py``, and the request schema is checked to accept and refuse
what the parser does (tests/dialects/test_openapi_fuzz.py runs Schemathesis against it).
"""

from __future__ import annotations

import json
import typing
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import msgspec
import pytest

from dialects.fitinview import openapi, requests, responses, schemas
from dialects.fitinview.purchase import parse_purchase
from engine.errors import InvalidRequest

DOC: dict[str, Any] = json.loads(openapi.OPENAPI_DOCUMENT)

OPERATIONS = {
    ("/api/v1/tryon", "post"),
    ("/api/v1/tryon", "get"),
    ("/api/v1/tryon/{job_id}", "get"),
    ("/api/v1/account", "get"),
    ("/api/v1/credits/purchase", "post"),
    ("/api/discovery", "get"),
}
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}

# msgspec struct -> component schema that documents it
STRUCTS: dict[str, type[msgspec.Struct]] = {
    "TryOnJobStatus": schemas.TryOnJobStatus,
    "TryOnSubmitResponse": schemas.TryOnSubmitResponse,
    "TryOnJobList": schemas.TryOnJobList,
    "Account": schemas.AccountResponse,
    "Error": schemas.ErrorResponse,
}


def _resolve(ref: str) -> Any:
    assert ref.startswith("#/"), f"only local $refs are used: {ref}"
    node: Any = DOC
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict) and part in node, f"unresolvable $ref {ref}"
        node = node[part]
    return node


def _flatten(schema: dict[str, Any]) -> tuple[dict[str, Any], set[str]]:
    """Properties and required names of a schema, following ``$ref`` and ``allOf``."""
    if "$ref" in schema:
        return _flatten(_resolve(schema["$ref"]))
    properties = dict(schema.get("properties", {}))
    required = set(schema.get("required", []))
    for part in schema.get("allOf", []):
        more_properties, more_required = _flatten(part)
        properties.update(more_properties)
        required |= more_required
    return properties, required


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _refs(value)]
    return []


def _types(schema: dict[str, Any]) -> set[str]:
    kind = schema.get("type")
    return set(kind) if isinstance(kind, list) else {kind} if kind else set()


def _schema_of(path: str, method: str, status: str) -> dict[str, Any]:
    response = DOC["paths"][path][method]["responses"][status]
    if "$ref" in response:
        response = _resolve(response["$ref"])
    return response["content"]["application/json"]["schema"]  # type: ignore[no-any-return]


def test_document_is_openapi_3_1() -> None:
    assert isinstance(DOC, dict)
    assert DOC["openapi"].startswith("3.1.")
    assert DOC["info"]["title"] and DOC["info"]["version"]
    assert DOC["servers"] == [{"url": "https://api.fitinview.com"}]


def test_paths_and_methods() -> None:
    served = {
        (path, method) for path, item in DOC["paths"].items() for method in item if method in HTTP_METHODS
    }
    assert served == OPERATIONS
    operation_ids = [DOC["paths"][path][method]["operationId"] for path, method in OPERATIONS]
    assert len(set(operation_ids)) == len(operation_ids)


def test_bearer_auth_everywhere_but_discovery() -> None:
    scheme = DOC["components"]["securitySchemes"]["bearerAuth"]
    assert scheme["type"] == "http" and scheme["scheme"] == "bearer"
    assert DOC["security"] == [{"bearerAuth": []}]
    for path, method in OPERATIONS:
        operation = DOC["paths"][path][method]
        if path == "/api/discovery":
            assert operation["security"] == []
        else:
            assert "security" not in operation


def test_every_ref_resolves() -> None:
    refs = _refs(DOC)
    assert refs
    for ref in refs:
        _resolve(ref)


@pytest.mark.parametrize("component", sorted(STRUCTS))
def test_component_matches_struct(component: str) -> None:
    struct = STRUCTS[component]
    properties, required = _flatten(DOC["components"]["schemas"][component])
    fields = {field.name: field for field in msgspec.structs.fields(struct)}
    assert set(properties) == set(fields), f"{component} and {struct.__name__} list different fields"
    # The code always writes every field (null where empty), so every field is required.
    assert required == set(fields)
    for name, field in fields.items():
        nullable = type(None) in typing.get_args(field.type)
        assert ("null" in _types(properties[name])) == nullable, f"{component}.{name} nullability differs"


def test_job_status_enum_matches_responses() -> None:
    status = DOC["components"]["schemas"]["TryOnJobStatus"]["properties"]["status"]
    assert set(status["enum"]) == {"running", "succeeded", "failed"}
    assert set(responses.STATUS_WORDS.values()) == set(status["enum"])


def test_account_prices_by_size() -> None:
    prices = DOC["components"]["schemas"]["Account"]["properties"]["tryon_cost_credits"]
    assert set(prices["properties"]) == set(prices["required"]) == {"1K", "2K", "4K"}


@pytest.mark.parametrize(
    ("path", "method", "status", "component"),
    [
        ("/api/v1/tryon", "post", "200", "TryOnSubmitResponse"),
        ("/api/v1/tryon", "get", "200", "TryOnJobList"),
        ("/api/v1/tryon/{job_id}", "get", "200", "TryOnJobStatus"),
        ("/api/v1/account", "get", "200", "Account"),
    ],
)
def test_success_responses_use_components(path: str, method: str, status: str, component: str) -> None:
    assert _schema_of(path, method, status) == {"$ref": f"#/components/schemas/{component}"}


def test_submit_error_responses() -> None:
    responses = DOC["paths"]["/api/v1/tryon"]["post"]["responses"]
    assert set(responses) == {"200", "400", "401", "402", "403", "409", "422", "429", "500", "503"}
    for status in set(responses) - {"200"}:
        assert _schema_of("/api/v1/tryon", "post", status) == {"$ref": "#/components/schemas/Error"}
    rate_limited = _resolve(responses["429"]["$ref"])
    assert "Retry-After" in rate_limited["headers"]
    assert _schema_of("/api/v1/tryon/{job_id}", "get", "404") == {"$ref": "#/components/schemas/Error"}


def test_submit_examples_have_every_field() -> None:
    fields = {field.name for field in msgspec.structs.fields(schemas.TryOnSubmitResponse)}
    content = DOC["paths"]["/api/v1/tryon"]["post"]["responses"]["200"]["content"]["application/json"]
    for example in content["examples"].values():
        assert set(example["value"]) == fields


def test_idempotency_key_header() -> None:
    parameters = DOC["paths"]["/api/v1/tryon"]["post"]["parameters"]
    (header,) = [p for p in parameters if p["in"] == "header" and p["name"] == "Idempotency-Key"]
    assert header["schema"]["maxLength"] == 200
    assert header["required"] is False


def test_list_query_parameters() -> None:
    parameters = {p["name"]: p for p in DOC["paths"]["/api/v1/tryon"]["get"]["parameters"]}
    assert set(parameters) == {"limit", "cursor"}
    limit = parameters["limit"]["schema"]
    # larger pages are clamped to 100, not refused: a maximum would promise a 400 that never comes
    assert (limit["default"], limit["minimum"], "maximum" in limit) == (20, 1, False)
    assert "clamped to 100" in parameters["limit"]["description"]


def test_request_schema_matches_parser() -> None:
    request = DOC["components"]["schemas"]["TryOnRequest"]["properties"]
    canonical = {
        "person_url",
        "person_image_b64",
        "garment_urls",
        "garment_images_b64",
        "output_size",
        "prompt",
        "style_hint",
        "wait",
        "metadata",
        "seed",
        "negative_prompt",
        "webhook_url",
    }
    assert canonical <= set(request)
    aliases = {
        "person_url": requests.PERSON_ALIASES,
        "garment_urls": requests.GARMENT_ALIASES,
        "output_size": requests.SIZE_ALIASES,
        "wait": ("mode",),
    }
    assert set(request) == canonical | {alias for names in aliases.values() for alias in names}
    for target, names in aliases.items():
        for alias in names:
            assert f"Alias of `{target}`" in request[alias]["description"]
    header = DOC["paths"]["/api/v1/tryon"]["post"]["parameters"][0]
    assert header["schema"]["maxLength"] == requests.MAX_IDEMPOTENCY_KEY


URL = "https://shop.example/a.jpg"
BASE = {"person_url": URL, "garment_urls": [URL]}
LONG = requests.MAX_METADATA_CHARS
TRYON_BODIES: list[dict[str, Any]] = [
    BASE,
    {"person_image_b64": "aGk=", "garment_images_b64": ["aGk="]},
    {"model_url": URL, "clothing": URL, "size": " 2k ", "mode": "ASYNC"},
    {"person_url": "", "input_url": URL, "garment_urls": [], "items": [URL, URL, URL]},
    {"person_image_b64": "aGk=", "person_url": 5, "garment_images_b64": "aGk="},
    {**BASE, "garment_urls": [URL, URL], "garment_images_b64": ["a"]},
    {**BASE, "garment_urls": [URL, URL], "garment_images_b64": ["a", "b"]},
    {**BASE, "garment_urls": [URL] * 4},
    {**BASE, "garment_urls": [URL, ""]},
    {**BASE, "garment_urls": URL, "garment_images_b64": ["a", "b", "c"]},
    {"person_url": URL},
    {"garment_urls": [URL]},
    {},
    {**BASE, "output_size": "4k"},
    {**BASE, "output_size": "8K"},
    {**BASE, "output_size": "", "resolution": "2K"},
    {**BASE, "output_size": 2},
    {**BASE, "wait": True, "mode": 7},
    {**BASE, "wait": None, "mode": "later"},
    {**BASE, "mode": ""},
    {**BASE, "wait": "yes"},
    {**BASE, "prompt": "p" * requests.MAX_PROMPT},
    {**BASE, "prompt": "p" * (requests.MAX_PROMPT + 1)},
    {**BASE, "prompt": "nul\x00"},
    {**BASE, "prompt": []},
    {**BASE, "prompt": "p", "style_hint": "s" * (requests.MAX_STYLE_HINT + 1)},
    {**BASE, "style_hint": "s" * requests.MAX_STYLE_HINT},
    {**BASE, "style_hint": "s" * (requests.MAX_STYLE_HINT + 1)},
    {**BASE, "negative_prompt": "n" * (requests.MAX_NEGATIVE_PROMPT + 1)},
    {**BASE, "metadata": {str(i): i for i in range(requests.MAX_METADATA_PAIRS)}},
    {**BASE, "metadata": {str(i): i for i in range(requests.MAX_METADATA_PAIRS + 1)}},
    {**BASE, "metadata": {"k" * LONG: "v" * LONG, "b": True, "n": None, "f": 1.5}},
    {**BASE, "metadata": {"k" * (LONG + 1): "v"}},
    {**BASE, "metadata": {"k": "v" * (LONG + 1)}},
    {**BASE, "metadata": {"k": {"nested": 1}}},
    {**BASE, "metadata": "k=v"},
    {**BASE, "seed": requests.MAX_SEED},
    {**BASE, "seed": requests.MAX_SEED + 1},
    {**BASE, "seed": -1},
    {**BASE, "seed": True},
    {**BASE, "seed": None},
    {**BASE, "webhook_url": ""},
    {**BASE, "unknown": {"ignored": True}},
]


def _validator(component: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator({**DOC["components"]["schemas"][component], "$defs": {}})


def _accepted(parse: Any, body: dict[str, Any]) -> bool:
    try:
        parse(json.dumps(body).encode())
    except InvalidRequest:
        return False
    return True


@pytest.mark.parametrize("body", TRYON_BODIES, ids=lambda body: json.dumps(body)[:60])
def test_the_request_schema_accepts_what_the_parser_accepts(body: dict[str, Any]) -> None:
    """Both ways: a generated client sends only what is accepted, and a fuzzer finds no request
    the document forbids but the API takes (image contents and URLs are the engine's to check)."""
    parsed = _accepted(lambda raw: requests.parse_tryon(raw, None), body)
    assert _validator("TryOnRequest").is_valid(body) == parsed, (body, parsed)


@pytest.mark.parametrize(
    "body",
    [
        {"pack_slug": "starter", "shared_payment_granted_token": "spt_1"},
        {"pack_slug": " starter ", "shared_payment_granted_token": "t" * 500},
        {"pack_slug": "starter", "shared_payment_granted_token": "t" * 501},
        {"pack_slug": "  ", "shared_payment_granted_token": "spt_1"},
        {"pack_slug": "starter"},
        {"pack_slug": 1, "shared_payment_granted_token": "spt_1"},
        {"pack_slug": "st\x00", "shared_payment_granted_token": "spt_1"},
    ],
)
def test_the_purchase_schema_accepts_what_the_parser_accepts(body: dict[str, Any]) -> None:
    assert _validator("CreditPurchaseRequest").is_valid(body) == _accepted(parse_purchase, body), body

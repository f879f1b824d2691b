"""The served OpenAPI document is valid and says what the code does.

Response components are compared field by field with the msgspec structs in
``dialects/fitinview/schemas.py`` (names, presence, nullability), so neither can
change without the other. Request limits and aliases are compared with
``dialects/fitinview/requests.py`` when that module imports.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import sys
import types
import typing
from pathlib import Path
from typing import Any

import msgspec
import pytest

FITINVIEW_DIR = Path(__file__).resolve().parents[3] / "dialects" / "fitinview"


def _load(module: str) -> types.ModuleType:
    """Import ``dialects.fitinview.<module>``, or load it by path if the package is mid-edit."""
    try:
        return importlib.import_module(f"dialects.fitinview.{module}")
    except Exception:
        spec = importlib.util.spec_from_file_location(f"_fitinview_{module}", FITINVIEW_DIR / f"{module}.py")
        assert spec is not None and spec.loader is not None
        loaded = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = loaded
        spec.loader.exec_module(loaded)
        return loaded


openapi = _load("openapi")
schemas = _load("schemas")

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
STRUCTS = {
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
    try:
        responses = importlib.import_module("dialects.fitinview.responses")
    except Exception:
        return  # the engine is mid-edit; the enum itself is still checked above
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
    assert (limit["default"], limit["maximum"]) == (20, 100)


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
    requests = importlib.import_module("dialects.fitinview.requests")
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
    assert request["prompt"]["maxLength"] == requests.MAX_PROMPT
    assert request["style_hint"]["maxLength"] == requests.MAX_STYLE_HINT
    assert request["negative_prompt"]["maxLength"] == requests.MAX_NEGATIVE_PROMPT
    assert request["garment_urls"]["maxItems"] == requests.MAX_GARMENTS
    assert request["garment_images_b64"]["maxItems"] == requests.MAX_GARMENTS
    assert request["metadata"]["maxProperties"] == requests.MAX_METADATA_PAIRS
    assert request["metadata"]["propertyNames"]["maxLength"] == requests.MAX_METADATA_CHARS
    assert request["seed"]["maximum"] == requests.MAX_SEED
    assert {size.upper() for size in request["output_size"]["enum"]} == set(requests.SIZES)
    header = DOC["paths"]["/api/v1/tryon"]["post"]["parameters"][0]
    assert header["schema"]["maxLength"] == requests.MAX_IDEMPOTENCY_KEY

"""Bad input on the admin API is a 400 ``{"detail"}`` naming the field, never a 500.

The parameter checks walk ``/admin/openapi.json`` (so routes added later are covered): every
query and path parameter gets values of its kind that must be refused — cursors with any bytes
including NUL, negative and oversized limits, ids of 2^63 and beyond, dates that don't parse,
unknown enum values — and every JSON body gets nesting 50,000 deep. The body-field checks name
the routes that exist today.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from tests.gateway.admin.conftest import AdminClient
from tests.support.gateway import RunningGateway

BEYOND_BIGINT = str(2**63)
CURSOR_BYTES = ["%00", "%00%C2%A7u2", "12%0034", "abc", "-1", "1" * 19, "%FF%FE", "1%20OR%201=1"]


def variants(schema: dict[str, Any]) -> list[str]:
    """Values (already URL-encoded) a parameter of this schema must refuse."""
    options = [schema, *schema.get("oneOf", [])]
    kinds: set[str] = set()
    for option in options:
        kind = option.get("type")
        kinds.update(kind if isinstance(kind, list) else [kind] if kind else [])
    formats = {option.get("format") for option in options}
    if "integer" in kinds:
        return ["-1", "0", BEYOND_BIGINT, "1" * 40, "abc", "1.5", "%00"]
    if "date-time" in formats:
        return ["yesterday", "2026-13-45T00:00:00Z", "%00"]
    if "date" in formats:
        return ["notadate", "2026-02-30", "%00"]
    if "enum" in schema:
        return ["bogus", "%00"]
    if schema.get("pattern") == "^[0-9]{1,18}$":
        return CURSOR_BYTES
    if "pattern" in schema or "maxLength" in schema:
        return ["%00", quote("x" * 1000)]
    return []


async def document(gateway: RunningGateway) -> dict[str, Any]:
    status, body, _ = await gateway.request("GET", "/admin/openapi.json")
    assert status == 200
    return dict(body)


def fill(path: str, operation: dict[str, Any], overrides: dict[str, str] | None = None) -> str:
    for parameter in operation.get("parameters", []):
        if parameter["in"] == "path":
            value = (overrides or {}).get(parameter["name"])
            if value is None:
                value = "1" if parameter["schema"].get("type") == "integer" else "x1"
            path = path.replace("{" + parameter["name"] + "}", value)
    return path.removeprefix("/admin")


def refused(status: int, body: Any, field: str) -> bool:
    return status == 400 and isinstance(body, dict) and set(body) == {"detail"} and field in body["detail"]


async def test_every_query_parameter_refuses_bad_values_by_name(
    gateway: RunningGateway, operators: dict[str, AdminClient]
) -> None:
    wrong: list[str] = []
    tried = 0
    for path, operations in (await document(gateway))["paths"].items():
        for method, operation in operations.items():
            if method != "get":
                continue
            for parameter in operation.get("parameters", []):
                if parameter["in"] != "query":
                    continue
                for value in variants(parameter["schema"]):
                    url = f"{fill(path, operation)}?{parameter['name']}={value}"
                    status, body, _ = await operators["root"].call("GET", url)
                    tried += 1
                    if not refused(status, body, parameter["name"]):
                        wrong.append(f"GET {url}: {status} {body!r:.200}")
    assert tried > 50
    assert not wrong, "\n".join(wrong)


async def test_every_path_parameter_refuses_bad_values_by_name(
    gateway: RunningGateway, operators: dict[str, AdminClient]
) -> None:
    wrong: list[str] = []
    for path, operations in (await document(gateway))["paths"].items():
        for method, operation in operations.items():
            body = {} if "requestBody" in operation else None
            for parameter in operation.get("parameters", []):
                if parameter["in"] != "path":
                    continue
                integer = parameter["schema"].get("type") == "integer"
                values = ["0", "-1", BEYOND_BIGINT, "abc", "1.5"] if integer else ["%00", "x" * 300, "%C2%A7"]
                for value in values:
                    url = fill(path, operation, {parameter["name"]: value})
                    status, answer, _ = await operators["root"].call(method.upper(), url, body)
                    if not refused(status, answer, parameter["name"]):
                        wrong.append(f"{method.upper()} {url[:80]}: {status} {answer!r:.200}")
    assert not wrong, "\n".join(wrong)


async def test_every_json_body_refuses_deep_nesting_and_broken_json(
    gateway: RunningGateway, operators: dict[str, AdminClient]
) -> None:
    nested_lists = ("[" * 50_000 + "]" * 50_000).encode()
    nested_objects = ('{"a":' * 50_000 + "1" + "}" * 50_000).encode()
    token = {"Authorization": f"Bearer {gateway.settings.admin_token}", "Content-Type": "application/json"}
    wrong: list[str] = []
    for path, operations in (await document(gateway))["paths"].items():
        for method, operation in operations.items():
            if "requestBody" not in operation:
                continue
            url = "/admin" + fill(path, operation)
            for raw in (nested_lists, nested_objects, b'{"reason": "x"', b"\x00", b'{"reason": "\xff\xfe"}'):
                status, answer, _ = await gateway.request(method.upper(), url, data=raw, headers=token)
                if status != 400 or set(answer or {}) != {"detail"}:
                    wrong.append(f"{method.upper()} {url} {raw[:20]!r}: {status} {answer!r:.200}")
    assert not wrong, "\n".join(wrong)


async def test_body_fields_out_of_range_are_named(
    gateway: RunningGateway, operators: dict[str, AdminClient]
) -> None:
    root = operators["root"]
    account_id = await gateway.new_account(credits=1)
    cases: list[tuple[str, str, dict[str, Any], str]] = [
        ("POST", "/accounts", {"name": "x" * 300, "dialect": "fitinview"}, "name"),
        ("POST", "/accounts", {"name": "a\x00b", "dialect": "fitinview"}, "name"),
        ("POST", "/accounts", {"name": "ok", "dialect": "klingon"}, "dialect"),
        ("PATCH", f"/accounts/{account_id}", {"name": "x" * 300}, "name"),
        ("PATCH", f"/accounts/{account_id}", {"name": "\x00"}, "name"),
        ("POST", f"/accounts/{account_id}/keys", {"mode": "live", "name": "n\x00"}, "name"),
        ("POST", f"/accounts/{account_id}/credits", {"amount": 2**31, "reason": "big"}, "amount"),
        ("POST", f"/accounts/{account_id}/credits", {"amount": 2**63, "reason": "big"}, "amount"),
        ("POST", f"/accounts/{account_id}/credits", {"amount": -(2**64), "reason": "big"}, "amount"),
        ("POST", f"/accounts/{account_id}/credits", {"amount": 1, "reason": "\x00"}, "reason"),
        ("POST", f"/accounts/{account_id}/credits", {"amount": 1, "reason": "x" * 501}, "reason"),
        ("POST", "/operators", {"name": "o" * 65, "role": "viewer"}, "name"),
        ("POST", "/operators", {"name": "o\x00", "role": "viewer"}, "name"),
        ("POST", "/operators", {"name": "ok-name", "role": "root"}, "role"),
    ]
    wrong = []
    for method, path, body, field in cases:
        status, answer, _ = await root.call(method, path, body)
        if not refused(status, answer, field):
            wrong.append(f"{method} {path} {str(body)[:60]}: {status} {answer}")
    assert not wrong, "\n".join(wrong)


async def test_a_balance_pushed_past_its_column_is_409_not_500(
    gateway: RunningGateway, operators: dict[str, AdminClient]
) -> None:
    account_id = await gateway.new_account(credits=1_000_000_000)
    grant = {"amount": 1_000_000_000, "reason": "boundary"}
    await operators["support"].ok("POST", f"/accounts/{account_id}/credits", grant)
    status, body, _ = await operators["support"].call("POST", f"/accounts/{account_id}/credits", grant)
    assert status == 409 and set(body) == {"detail"}, (status, body)
    balance = await gateway.runtime.ledger.balance(account_id)
    assert balance == 2_000_000_000

"""Every rejection answers in FitInView's ``{"detail"}`` shape with the documented status, and
costs nothing."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.gateway import RunningGateway, fixture_b64
from tests.support.image_host import ImageHost


def good(image_host: ImageHost) -> dict[str, Any]:
    return {"person_url": image_host.url("/person.png"), "garment_urls": [image_host.url("/shirt.png")]}


BAD_BODIES: list[tuple[str, Any, str]] = [
    ("no person", {"garment_urls": ["SHIRT"]}, "person_url or person_image_b64 is required"),
    ("no garment", {"person_url": "PERSON"}, "garment_urls or garment_images_b64 is required"),
    ("four garments", {"person_url": "PERSON", "garment_urls": ["SHIRT"] * 4}, "at most 3"),
    (
        "four garments mixed",
        {"person_url": "PERSON", "garment_urls": ["SHIRT"] * 2, "garment_images_b64": ["B64"] * 2},
        "together may hold at most 3",
    ),
    ("bad size", {"output_size": "8K"}, "output_size must be one of"),
    ("prompt too long", {"prompt": "x" * 1001}, "prompt must be at most 1000"),
    ("negative prompt too long", {"negative_prompt": "x" * 501}, "negative_prompt must be at most 500"),
    ("style hint too long", {"style_hint": "x" * 501}, "style_hint must be at most 500"),
    ("metadata not object", {"metadata": ["a"]}, "metadata must be an object"),
    ("metadata too many", {"metadata": {str(i): "v" for i in range(9)}}, "at most 8"),
    ("metadata value too long", {"metadata": {"k": "v" * 257}}, "at most 256"),
    ("seed negative", {"seed": -1}, "seed must be an integer"),
    ("seed too big", {"seed": 2**31}, "seed must be an integer"),
    ("seed float", {"seed": 1.5}, "seed must be an integer"),
    ("seed bool", {"seed": True}, "seed must be an integer"),
    ("wait not bool", {"wait": "maybe"}, "wait must be true or false"),
    ("bad mode", {"mode": "later"}, 'mode must be "sync" or "async"'),
    ("person url not string", {"person_url": 5}, "person_url must be a string"),
    ("webhook http", {"webhook_url": "ftp://example.com/hook"}, "invalid URL: webhook_url"),
    ("webhook private", {"webhook_url": "https://10.0.0.1/hook"}, "invalid URL: webhook_url"),
    (
        "private image url",
        {"person_url": "https://169.254.169.254/latest/meta-data"},
        "invalid URL: person_url",
    ),
    ("loopback image url", {"person_url": "https://127.0.0.1:1/x.png"}, "invalid URL: person_url"),
    ("not a url", {"person_url": "not a url"}, "invalid URL: person_url"),
    ("fetch 404", {"person_url": "/status/404"}, "image fetch failed: person_url"),
    ("too large stream", {"garment_urls": ["/huge"]}, "image too large: garment_urls[0]"),
    ("gif", {"garment_urls": ["/gif"]}, "unsupported image format: garment_urls[0]"),
    ("bomb", {"person_url": "/bomb.png"}, "image too large: person_url"),
    ("text", {"person_url": "/text"}, "unsupported image format: person_url"),
    ("bad base64", {"person_image_b64": "%%%not-base64%%%"}, "person_image_b64"),
]


def _materialise(value: Any, image_host: ImageHost) -> Any:
    if isinstance(value, list):
        return [_materialise(item, image_host) for item in value]
    if value == "PERSON":
        return image_host.url("/person.png")
    if value == "SHIRT":
        return image_host.url("/shirt.png")
    if value == "B64":
        return fixture_b64("garment-shirt-red-stripes.png")
    if isinstance(value, str) and value.startswith("/"):
        return image_host.url(value)
    return value


@pytest.mark.parametrize(("case", "changes", "expected"), BAD_BODIES, ids=[case for case, _, _ in BAD_BODIES])
async def test_bad_request_is_400_and_costs_nothing(
    gateway: RunningGateway, image_host: ImageHost, case: str, changes: dict[str, Any], expected: str
) -> None:
    account_id, key = await gateway.account_with_key(credits=100)
    if "person_url" in changes or "person_image_b64" in changes or case == "no person":
        request = {"garment_urls": [image_host.url("/shirt.png")]}
    else:
        request = good(image_host)
    if case == "no garment":
        request = {}
    request.update({name: _materialise(value, image_host) for name, value in changes.items()})
    status, answer, _ = await gateway.request("POST", "/api/v1/tryon", key=key, json=request)
    assert status == 400, (case, answer)
    assert set(answer) == {"detail"}
    assert expected in answer["detail"], answer["detail"]
    detail = await gateway.admin("GET", f"/accounts/{account_id}")
    assert detail["credits_remaining"] == 100 == detail["ledger_sum"]
    status, listing, _ = await gateway.request("GET", "/api/v1/tryon", key=key)
    assert listing["jobs"] == []


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(b"", "JSON object"), (b"{not json", "valid JSON"), (b"[1,2]", "JSON object"), (b"null", "JSON object")],
)
async def test_malformed_json_is_400(gateway: RunningGateway, raw: bytes, expected: str) -> None:
    _, key = await gateway.account_with_key()
    status, answer, _ = await gateway.request(
        "POST", "/api/v1/tryon", key=key, data=raw, headers={"Content-Type": "application/json"}
    )
    assert status == 400
    assert expected in answer["detail"]


async def test_body_over_the_limit_is_400_image_too_large(
    gateway_factory: Any, image_host: ImageHost
) -> None:
    small = await gateway_factory(max_body_bytes=50_000)
    _, key = await small.account_with_key()
    request = good(image_host) | {"person_image_b64": fixture_b64("person-astronaut.png")}
    status, answer, _ = await small.request("POST", "/api/v1/tryon", key=key, json=request)
    assert status == 400, answer
    assert answer["detail"].startswith("image too large")


async def test_image_over_the_byte_cap_is_400(gateway_factory: Any, image_host: ImageHost) -> None:
    capped = await gateway_factory(max_image_bytes=100_000)
    _, key = await capped.account_with_key()
    request = {
        "person_image_b64": fixture_b64("person-astronaut.png"),
        "garment_urls": [image_host.url("/shirt.png")],
    }
    status, answer, _ = await capped.request("POST", "/api/v1/tryon", key=key, json=request)
    assert status == 400
    assert answer["detail"].startswith("image too large: person_image_b64")


async def test_https_only_unless_allowed(gateway_factory: Any, image_host: ImageHost) -> None:
    strict = await gateway_factory(outbound_allow_http=False)
    _, key = await strict.account_with_key()
    status, answer, _ = await strict.request("POST", "/api/v1/tryon", key=key, json=good(image_host))
    assert status == 400
    assert answer["detail"].startswith("invalid URL: person_url")


async def test_missing_and_invalid_keys_are_401(gateway: RunningGateway, image_host: ImageHost) -> None:
    for key in (None, "fiv_live_" + "x" * 40, "nonsense"):
        status, answer, _ = await gateway.request("POST", "/api/v1/tryon", key=key, json=good(image_host))
        assert status == 401, answer
        assert set(answer) == {"detail"}
        status, answer, _ = await gateway.request("GET", "/api/v1/tryon", key=key)
        assert status == 401


async def test_ftmvai_key_on_fitinview_route_is_401(gateway: RunningGateway, image_host: ImageHost) -> None:
    _, key = await gateway.account_with_key(dialect="ftmvai")
    assert len(key) == 64 and all(c in "0123456789abcdef" for c in key)
    status, answer, _ = await gateway.request("POST", "/api/v1/tryon", key=key, json=good(image_host))
    assert status == 401
    assert set(answer) == {"detail"}


async def test_disabled_key_is_403_until_enabled(gateway: RunningGateway, image_host: ImageHost) -> None:
    account_id = await gateway.new_account()
    minted = await gateway.new_key(account_id)
    state = await gateway.admin("POST", f"/keys/{minted['id']}/disable", {"reason": "abuse report"})
    assert state == {"id": minted["id"], "mode": "live", "disabled": True, "disabled_reason": "abuse report"}
    status, answer, _ = await gateway.request(
        "POST", "/api/v1/tryon", key=minted["key"], json=good(image_host)
    )
    assert (status, answer) == (403, {"detail": "Key disabled"})
    status, answer, _ = await gateway.request("GET", "/api/v1/account", key=minted["key"])
    assert (status, answer) == (403, {"detail": "Key disabled"})
    await gateway.admin("POST", f"/keys/{minted['id']}/enable")
    status, _, _ = await gateway.request("GET", "/api/v1/account", key=minted["key"])
    assert status == 200


async def test_insufficient_credits_is_402_and_creates_nothing(
    gateway: RunningGateway, image_host: ImageHost
) -> None:
    account_id, key = await gateway.account_with_key(credits=7)
    status, answer, _ = await gateway.request("POST", "/api/v1/tryon", key=key, json=good(image_host))
    assert (status, answer) == (402, {"detail": "Insufficient credits"})
    _, listing, _ = await gateway.request("GET", "/api/v1/tryon", key=key)
    assert listing["jobs"] == []
    detail = await gateway.admin("GET", f"/accounts/{account_id}")
    assert detail["credits_remaining"] == 7 == detail["ledger_sum"]


async def test_unknown_route_answers_detail(gateway: RunningGateway) -> None:
    status, answer, _ = await gateway.request("GET", "/api/v1/nothing-here")
    assert status == 404
    assert "detail" in answer

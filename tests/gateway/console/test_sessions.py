"""Console sessions over plain HTTP: the cookie's flags, and a disabled operator's session ending."""

from __future__ import annotations

import re
import secrets

import aiohttp

from tests.gateway.admin.conftest import AdminClient
from tests.support.gateway import RunningGateway


async def sign_in(client: aiohttp.ClientSession, gateway: RunningGateway, token: str, proto: str) -> str:
    """Signs in like the form does; returns the session cookie's Set-Cookie header."""
    async with client.get(gateway.url("/console/login")) as page:
        assert page.status == 200
        csrf = re.search(r'name="_csrf_token" value="([^"]+)"', await page.text())
    assert csrf is not None
    async with client.post(
        gateway.url("/console/login"),
        data={"_csrf_token": csrf.group(1), "token": token, "next": "/console/audit"},
        headers={"X-Forwarded-Proto": proto},
        allow_redirects=False,
    ) as answer:
        assert answer.status in (302, 303), await answer.text()
        assert answer.headers["Location"] == "/console/audit"
        return next(
            value for value in answer.headers.getall("Set-Cookie") if value.startswith("tryon_console=")
        )


async def test_cookie_flags_and_a_disabled_operator_is_signed_out(gateway: RunningGateway) -> None:
    root = AdminClient(gateway, gateway.settings.admin_token)
    name = f"console-session-{secrets.token_hex(3)}"
    token = (await root.ok("POST", "/operators", {"name": name, "role": "viewer"}))["token"]
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as client:
        plain = await sign_in(client, gateway, token, "http")
        assert "HttpOnly" in plain and "samesite=strict" in plain.lower() and "Path=/console" in plain
        assert "Secure" not in plain
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as client:
        behind_https = await sign_in(client, gateway, token, "https")
        assert "Secure" in behind_https and "HttpOnly" in behind_https
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as client:
        await sign_in(client, gateway, token, "http")
        async with client.get(gateway.url("/console/audit"), allow_redirects=False) as page:
            assert page.status == 200
        await root.ok("POST", f"/operators/{name}/disable", {"reason": "left the team"})
        async with client.get(gateway.url("/console/audit"), allow_redirects=False) as page:
            assert page.status in (302, 303)
            assert page.headers["Location"].startswith("/console/login?next=")

"""A real browser (Debian's chromium driven by Playwright) and console operators of every role.

Playwright's own browser download is unreachable, so the tests launch the system ``chromium``
(``.ci/run`` installs it with apt when missing). Without it the tests skip locally and fail
under ``CI=true``, like every other missing service.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import AsyncIterator
from typing import Any

import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

from tests.gateway.admin.conftest import AdminClient
from tests.support.gateway import RunningGateway

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 30_000
"""Generous: a loaded 2-core CI machine renders slowly, and nothing here is timed."""


def chromium_path() -> str:
    path = shutil.which("chromium")
    if path is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("chromium is missing; .ci/run installs it with apt", pytrace=False)
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return path


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    executable = chromium_path()
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=executable, args=CHROMIUM_ARGS, timeout=TIMEOUT_MS
        )
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture(scope="module")
async def console_tokens(gateway: RunningGateway) -> dict[str, str]:
    """One operator token per role, created through the admin API as root would."""
    root = AdminClient(gateway, gateway.settings.admin_token)
    tokens = {"root": gateway.settings.admin_token}
    suffix = secrets.token_hex(3)
    for role in ("viewer", "support", "admin"):
        created = await root.ok("POST", "/operators", {"name": f"console-{role}-{suffix}", "role": role})
        tokens[role] = str(created["token"])
    return tokens


async def new_page(browser: Browser, *, width: int = 1280) -> tuple[BrowserContext, Page]:
    context = await browser.new_context(viewport={"width": width, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    return context, await context.new_page()


async def sign_in(page: Page, gateway: RunningGateway, token: str, target: str = "/console") -> Any:
    """Open ``target``; the console sends the browser to sign in and then back to ``target``."""
    await page.goto(gateway.url(target))
    assert "/console/login" in page.url, page.url
    await page.fill("input[name=token]", token)
    async with page.expect_navigation():
        await page.click("#sign-in")
    assert page.url == gateway.url(target), page.url

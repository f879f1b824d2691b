"""The console's account page in a real browser: its purchases, and editing the account (admin only)."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser

from tests.engine.test_payments import API_KEY, SECRET, buy, token
from tests.gateway.admin.conftest import AdminClient
from tests.gateway.console.conftest import new_page, sign_in
from tests.gateway.console.test_console import csrf_token, fits, shot
from tests.support.fake_stripe import FakeStripe, intent_id, serve_fake_stripe
from tests.support.gateway import RunningGateway


@pytest.fixture(scope="module")
async def fake() -> AsyncIterator[FakeStripe]:
    async with serve_fake_stripe(API_KEY) as server:
        yield server


@pytest.fixture(scope="module")
async def pay(gateway_factory: Any, fake: FakeStripe) -> RunningGateway:
    """A gateway that sells credit packs through the fake Stripe (its own database)."""
    gateway: RunningGateway = await gateway_factory(
        stripe_api_key=API_KEY, stripe_webhook_secret=SECRET, stripe_base_url=fake.base_url
    )
    return gateway


@pytest.fixture(scope="module")
async def tokens(pay: RunningGateway) -> dict[str, str]:
    root = AdminClient(pay, pay.settings.admin_token)
    found = {"root": pay.settings.admin_token}
    for role in ("viewer", "support", "admin"):
        created = await root.ok(
            "POST", "/operators", {"name": f"acct-{role}-{secrets.token_hex(3)}", "role": role}
        )
        found[role] = str(created["token"])
    return found


async def test_account_page_lists_purchases_and_an_admin_edits_the_account(
    pay: RunningGateway, browser: Browser, tokens: dict[str, str], tmp_path: Path
) -> None:
    account_id, key = await pay.account_with_key(credits=0)
    paid, declined = token("ok"), token("declined")
    assert (await buy(pay, key, paid))[0] == 200
    assert (await buy(pay, key, declined))[0] == 402
    page_path = f"/console/accounts/{account_id}"
    context, page = await new_page(browser)
    try:
        await sign_in(page, pay, tokens["admin"], page_path)
        rows = page.locator("#purchases tr", has_text=intent_id(paid))
        assert await rows.count() == 1
        assert "succeeded" in await rows.inner_text()
        assert await page.locator("#purchases tr", has_text="declined").count() == 1
        assert await page.locator("#balance").inner_text() == "1200"
        await shot(page, tmp_path, "account-admin")

        # suspending needs a reason, as on PATCH /admin/accounts/{id}: refused, nothing changes
        await page.fill("#edit-name", "Renamed GmbH")
        await page.check("#edit-suspended")
        async with page.expect_navigation():
            await page.click("#edit-button")
        assert await page.locator("#error").count() == 1
        assert "reason" in await page.locator("#error").inner_text()
        admin = AdminClient(pay, tokens["admin"])
        assert (await admin.ok("GET", f"/accounts/{account_id}"))["name"] != "Renamed GmbH"

        await page.goto(pay.url(page_path))
        await page.fill("#edit-name", "Renamed GmbH")
        await page.fill("#edit-email", "ops@renamed.example")
        await page.check("#edit-suspended")
        await page.fill("#edit-reason", "chargeback under review")
        async with page.expect_navigation():
            await page.click("#edit-button")
        assert page.url == pay.url(page_path)
        assert "Renamed GmbH" in await page.locator("h1").inner_text()
        assert await page.locator("text=suspended: chargeback under review").count() == 1
        account = await admin.ok("GET", f"/accounts/{account_id}")
        assert (account["name"], account["email"], account["suspended"]) == (
            "Renamed GmbH",
            "ops@renamed.example",
            True,
        )

        await page.goto(pay.url(f"/console/audit?account={account_id}"))
        actions = await page.locator("#audit td.action").all_inner_texts()
        assert "account.update" in actions and "account.suspend" in actions
        suspend = page.locator("#audit tr", has_text="account.suspend")
        assert "chargeback under review" in await suspend.inner_text()

        for width in (1280, 375):
            await page.set_viewport_size({"width": width, "height": 900})
            await page.goto(pay.url(page_path))
            await shot(page, tmp_path, f"account-edit-{width}")
            assert await fits(page)
    finally:
        await context.close()


async def test_viewer_and_support_see_purchases_but_cannot_edit(
    pay: RunningGateway, browser: Browser, tokens: dict[str, str], tmp_path: Path
) -> None:
    account_id, key = await pay.account_with_key(credits=0)
    assert (await buy(pay, key, token("ok")))[0] == 200
    edit = pay.url(f"/console/accounts/{account_id}/edit")
    for role in ("viewer", "support"):
        context, page = await new_page(browser, width=375)
        try:
            await sign_in(page, pay, tokens[role], f"/console/accounts/{account_id}")
            assert await page.locator("#purchases tr", has_text="succeeded").count() == 1
            assert await page.locator("#edit").count() == 0
            assert await page.locator("#edit-button").count() == 0
            await shot(page, tmp_path, f"account-{role}-375")
            assert await fits(page)
            forged = await context.request.post(
                edit,
                form={"_csrf_token": await csrf_token(context), "name": "forged", "reason": "forged"},
                max_redirects=0,
            )
            assert forged.status == 403, await forged.text()
            assert "admin role" in await forged.text()
        finally:
            await context.close()
    admin = AdminClient(pay, tokens["admin"])
    assert (await admin.ok("GET", f"/accounts/{account_id}"))["name"] != "forged"
    # and an admin's POST without the CSRF token is refused too
    context, page = await new_page(browser)
    try:
        await sign_in(page, pay, tokens["admin"], f"/console/accounts/{account_id}")
        tokenless = await context.request.post(edit, form={"name": "no token"}, max_redirects=0)
        assert tokenless.status == 403 and "CSRF" in await tokenless.text()
    finally:
        await context.close()
    assert (await admin.ok("GET", f"/accounts/{account_id}"))["name"] != "no token"

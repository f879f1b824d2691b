"""The ops console in a real browser: sign-in, finding a job, a refund and its audit entry, roles, CSRF."""

from __future__ import annotations

from pathlib import Path

from playwright.async_api import Browser, BrowserContext, Page

from tests.gateway.admin.conftest import AdminClient
from tests.gateway.admin.test_jobs import submit
from tests.gateway.console.conftest import new_page, sign_in
from tests.support.gateway import RunningGateway
from tests.support.image_host import ImageHost


async def shot(page: Page, folder: Path, name: str) -> None:
    """Keep a full-page screenshot as the test's artifact (and prove the page rendered)."""
    path = folder / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 0


async def fits(page: Page) -> bool:
    """No horizontal overflow: the page is no wider than the window (wide tables scroll in their box)."""
    return bool(await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"))


async def too_wide(page: Page) -> list[str]:
    """What sticks out past the window's right edge (for the failure message)."""
    return list(
        await page.evaluate(
            """() => [...document.querySelectorAll('body *')]
                .filter(e => e.getBoundingClientRect().right > window.innerWidth + 1
                    || (e.scrollWidth > window.innerWidth && getComputedStyle(e).overflowX === 'visible'))
                .slice(-5).map(e => e.tagName + '.' + e.className + ' ' + e.scrollWidth + ' '
                    + e.textContent.slice(0, 40))"""
        )
    )


async def images_loaded(page: Page) -> None:
    await page.wait_for_function("() => [...document.images].every(img => img.complete)")


async def csrf_token(context: BrowserContext) -> str:
    cookies = {cookie["name"]: cookie["value"] for cookie in await context.cookies()}
    return cookies["tryon_console_csrf"]


async def test_support_finds_a_job_refunds_it_and_sees_the_audit_entry(
    gateway: RunningGateway,
    browser: Browser,
    console_tokens: dict[str, str],
    image_host: ImageHost,
    tmp_path: Path,
) -> None:
    account_id, key = await gateway.account_with_key(credits=100)
    job_id = (await submit(gateway, key, image_host))["job_id"]
    context, page = await new_page(browser)
    try:
        await sign_in(page, gateway, console_tokens["support"])
        await shot(page, tmp_path, "overview")
        assert await page.locator("svg.chart").count() > 0

        await page.goto(gateway.url(f"/console/jobs?account={account_id}"))
        assert await page.locator(f"a[href='/console/jobs/{job_id}']").count() == 1
        # the row's person, garment and result thumbnails load through their presigned links, small
        thumbs = page.locator("img.thumb")
        assert await thumbs.count() >= 3
        await images_loaded(page)
        for index in range(await thumbs.count()):
            size = await thumbs.nth(index).evaluate(
                "img => [img.naturalWidth, img.clientWidth, img.clientHeight]"
            )
            assert size[0] > 0 and 0 < size[1] <= 64 and 0 < size[2] <= 64, size
        assert await page.locator("img.thumb[alt=result]").count() == 1
        await shot(page, tmp_path, "jobs")
        await page.fill("#job-id", job_id)
        async with page.expect_navigation():
            await page.click("#go")
        assert page.url == gateway.url(f"/console/jobs/{job_id}")
        result = page.locator("img.result").first
        await result.wait_for()
        await images_loaded(page)
        assert await result.evaluate("img => img.naturalWidth") > 0
        assert await page.locator("#refunded").inner_text() == "0"
        await shot(page, tmp_path, "job")

        await page.fill("#refund-reason", "customer disliked the fit")
        async with page.expect_navigation():
            await page.click("#refund-button")
        assert page.url == gateway.url(f"/console/jobs/{job_id}")
        assert int(await page.locator("#refunded").inner_text()) > 0

        await page.goto(gateway.url(f"/console/audit?target=job:{job_id}"))
        rows = page.locator("#audit tr", has_text="job.refund")
        assert await rows.count() == 1
        assert "customer disliked the fit" in await rows.inner_text()
        await shot(page, tmp_path, "audit")

        await page.goto(gateway.url(f"/console/accounts?q={account_id}"))
        await shot(page, tmp_path, "accounts")
        await page.goto(gateway.url(f"/console/accounts/{account_id}"))
        assert await page.locator("#balance").inner_text() == "100"
        assert await page.locator("text=goodwill: customer disliked the fit").count() == 1
        await shot(page, tmp_path, "account")
        statement = await context.request.get(gateway.url(f"/console/accounts/{account_id}/statement.csv"))
        assert statement.status == 200 and "goodwill" in await statement.text()
    finally:
        await context.close()


async def test_deep_link_returns_after_sign_in_and_phone_width_renders(
    gateway: RunningGateway, browser: Browser, console_tokens: dict[str, str], tmp_path: Path
) -> None:
    context, page = await new_page(browser, width=390)
    try:
        await page.goto(gateway.url("/console/audit?action=job.refund"))
        assert "/console/login?next=" in page.url
        await shot(page, tmp_path, "login")
        await page.fill("input[name=token]", "adm_not-a-real-token")
        await page.click("#sign-in")
        await page.wait_for_selector("text=Unknown token")
        await sign_in(page, gateway, console_tokens["root"], "/console/audit?action=job.refund")
        await shot(page, tmp_path, "audit-phone")
        # the page fits the phone's width (tables scroll inside their own box)
        assert await page.evaluate("document.documentElement.scrollWidth") <= 390 + 1
        # only console paths are followed after sign-in
        await context.clear_cookies()
        await page.goto(gateway.url("/console/login?next=//evil.example/x"))
        await page.fill("input[name=token]", console_tokens["viewer"])
        async with page.expect_navigation():
            await page.click("#sign-in")
        assert page.url == gateway.url("/console")
        async with page.expect_navigation():
            await page.click("#sign-out")
        assert "/console/login" in page.url
        await page.goto(gateway.url("/console/jobs"))
        assert "/console/login" in page.url
    finally:
        await context.close()


async def test_viewer_has_no_actions_and_forged_or_tokenless_posts_are_refused(
    gateway: RunningGateway,
    browser: Browser,
    console_tokens: dict[str, str],
    image_host: ImageHost,
    tmp_path: Path,
) -> None:
    _, key = await gateway.account_with_key(credits=100)
    job_id = (await submit(gateway, key, image_host))["job_id"]
    refund = gateway.url(f"/console/jobs/{job_id}/refund")
    viewer_context, viewer = await new_page(browser)
    support_context, support = await new_page(browser)
    try:
        await sign_in(viewer, gateway, console_tokens["viewer"], f"/console/jobs/{job_id}")
        assert await viewer.locator("#refund-button").count() == 0
        assert await viewer.locator("#actions").count() == 0
        await shot(viewer, tmp_path, "job-viewer")
        # a hand-made POST with the viewer's session and a valid CSRF token: the role decides
        forged = await viewer_context.request.post(
            refund,
            form={"_csrf_token": await csrf_token(viewer_context), "reason": "forged"},
            max_redirects=0,
        )
        assert forged.status == 403, await forged.text()
        assert "support role" in await forged.text()

        await sign_in(support, gateway, console_tokens["support"], f"/console/jobs/{job_id}")
        assert await support.locator("#refund-button").count() == 1
        tokenless = await support_context.request.post(refund, form={"reason": "no token"}, max_redirects=0)
        assert tokenless.status == 403, await tokenless.text()
        assert "CSRF" in await tokenless.text()
        wrong = await support_context.request.post(
            refund, form={"_csrf_token": "0" * 128, "reason": "bad token"}, max_redirects=0
        )
        assert wrong.status == 403

        # nothing was refunded, and the JSON admin API still needs no CSRF token
        admin = AdminClient(gateway, console_tokens["support"])
        detail = await admin.ok("GET", f"/jobs/{job_id}")
        assert detail["credits_refunded"] == 0
        page = await admin.ok("GET", f"/audit?target=job:{job_id}")
        assert page["entries"] == []
        refunded = await admin.ok("POST", f"/jobs/{job_id}/refund", {"reason": "via the API"})
        assert refunded["credits_refunded"] > 0
    finally:
        await viewer_context.close()
        await support_context.close()


async def test_every_page_fits_a_desktop_and_a_phone(
    gateway: RunningGateway,
    browser: Browser,
    console_tokens: dict[str, str],
    image_host: ImageHost,
    tmp_path: Path,
) -> None:
    """Each page at 1,280 px and 375 px: a screenshot, and no horizontal scrolling of the page."""
    account_id, key = await gateway.account_with_key(credits=100)
    job_id = (await submit(gateway, key, image_host))["job_id"]
    paths = {
        "overview": "/console",
        "jobs": f"/console/jobs?account={account_id}",
        "job": f"/console/jobs/{job_id}",
        "accounts": "/console/accounts",
        "account": f"/console/accounts/{account_id}",
        "audit": "/console/audit",
    }
    context, page = await new_page(browser)
    try:
        await sign_in(page, gateway, console_tokens["admin"])
        for width in (1280, 375):
            await page.set_viewport_size({"width": width, "height": 900})
            for name, path in paths.items():
                await page.goto(gateway.url(path))
                await images_loaded(page)
                await shot(page, tmp_path, f"{name}-{width}")
                assert await fits(page), (name, width, await too_wide(page))
    finally:
        await context.close()

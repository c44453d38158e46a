"""Logging in and out and switching language, in Chromium."""

from playwright.async_api import Browser

from luxfact.auth.roles import Role
from luxfact.db.engine import Database
from tests.browser.conftest import Screens, log_in, open_page, person
from tests.conftest import Hospital


async def test_log_in_switch_language_and_log_out(browser: Browser, desk_url: str,
                                                  owner_db: Database, screens: Screens,
                                                  two_hospitals: tuple[Hospital, Hospital],
                                                  ) -> None:
    clerk = await person(owner_db, two_hospitals[0], Role.clerk)
    page = await open_page(browser)
    await page.goto(f"{desk_url}/desk")
    assert "/login" in page.url  # not logged in: the login page
    await page.fill("#email", clerk.email)
    await page.fill("#password", "not-the-password")
    await page.select_option("#hospital", clerk.hospital.slug)
    await page.click("button[type=submit].primary")
    assert "pas correct" in await page.inner_text("#login-error")
    await screens.shot(page, "wrong password")

    await log_in(page, desk_url, clerk)
    assert await page.inner_text("h1") == "Bienvenue, Test clerk"
    assert await page.locator("nav a", has_text="Patients").count() == 1
    await screens.shot(page, "home of a clerk")
    # Keyboard: the skip link is the first thing Tab reaches.
    await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.className") == "skip"

    await page.select_option("#language-switch", "de")
    await page.click("form.lang button")
    await page.wait_for_load_state()
    assert await page.inner_text("h1") == "Willkommen, Test clerk"
    await page.reload()  # remembered
    assert await page.get_attribute("html", "lang") == "de"
    await screens.shot(page, "home in German")

    await page.click("text=Abmelden")
    await page.wait_for_url(f"{desk_url}/login")
    await page.goto(f"{desk_url}/desk")
    assert "/login" in page.url
    await page.context.close()

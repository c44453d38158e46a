"""The desk in a real browser: Debian's Chromium driven by Playwright, against a real
`luxfact serve` on this run's database. Screenshots of every step go to tests/artifacts/."""

import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright

from luxfact.auth.roles import Role
from luxfact.db.engine import Database
from luxfact.settings import Settings
from tests.conftest import Hospital, make_hospital
from tests.live import live_server
from tests.web.desk import PASSWORD, make_user

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
# As root, without a sandbox; no background traffic (this machine's network is closed).
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage"]

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(),
                                reason="Debian's chromium is not installed (make install "
                                       "installs it as root)")


@pytest.fixture(scope="session")
def desk_url(settings: Settings) -> Iterator[str]:
    with live_server(settings) as (url, _):
        yield url


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=str(CHROMIUM),
                                                    headless=True, args=ARGS)
        yield launched
        await launched.close()


@dataclass
class Person:
    hospital: Hospital
    role: Role
    email: str


@dataclass
class Screens:
    """Numbered screenshots of one test's steps, under tests/artifacts/<test>/."""

    folder: Path
    count: int = 0

    async def shot(self, page: Page, step: str) -> Path:
        self.count += 1
        path = self.folder / f"{self.count:02d}-{re.sub(r'[^a-z0-9]+', '-', step.lower())}.png"
        await page.screenshot(path=str(path), full_page=True)
        return path


@pytest.fixture
def screens(request: pytest.FixtureRequest) -> Screens:
    folder = ARTIFACTS / re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.png"):
        old.unlink()
    return Screens(folder)


async def person(db: Database, hospital: Hospital, role: Role, language: str = "fr") -> Person:
    return Person(hospital, role, await make_user(db, hospital, role, language))


@pytest.fixture
async def two_hospitals(owner_db: Database) -> tuple[Hospital, Hospital]:
    return await make_hospital(owner_db, "web"), await make_hospital(owner_db, "other")


async def open_page(browser: Browser, language: str = "fr-FR") -> Page:
    context = await browser.new_context(locale=language, viewport={"width": 1280,
                                                                    "height": 900})
    page = await context.new_page()
    page.set_default_timeout(10_000)
    return page


async def log_in(page: Page, base: str, who: Person) -> None:
    await page.goto(f"{base}/login")
    await page.select_option("#hospital", who.hospital.slug)
    await page.fill("#email", who.email)
    await page.fill("#password", PASSWORD)
    await page.click("button[type=submit].primary")
    await page.wait_for_url(re.compile(r".*/desk.*"))

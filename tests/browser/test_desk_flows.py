"""The desk's two daily flows in Chromium, step by step, each step's screen kept.

The clerk: log in, find no patient, create one (the matricule checked as typed), add the
CNS coverage, admit, record three acts with the code autocomplete, transfer, discharge.
The billing officer: preview and issue the invoices of a discharged stay, open the PDF,
build and freeze the month's claim batch, import a simulated return, write off a rejected
line. And another hospital's users see none of it.
"""

import re
from datetime import datetime

import httpx
import pytest
from playwright.async_api import Browser, Page, expect

from luxfact.auth.roles import Role
from luxfact.db.engine import Database
from luxfact.kit.time import LUXEMBOURG
from luxfact.patients.matricule import complete
from tests.billing.test_invoices import stay_with_acts
from tests.browser.conftest import Screens, log_in, open_page, person
from tests.claims import test_returns
from tests.conftest import Hospital

ENGLISH = "en-GB"
pytestmark = pytest.mark.usefixtures("catalogue")


async def submit(page: Page, button: str) -> None:
    async with page.expect_navigation():
        await page.get_by_role("button", name=button).click()


async def test_the_clerks_day(browser: Browser, desk_url: str, owner_db: Database,
                              screens: Screens, two_hospitals: tuple[Hospital, Hospital],
                              ) -> None:
    ours, theirs = two_hospitals
    clerk = await person(owner_db, ours, Role.clerk, language="en")
    page = await open_page(browser, ENGLISH)
    await log_in(page, desk_url, clerk)
    await page.goto(f"{desk_url}/desk/patients")
    # Search as you type: "/" focuses the search box; nobody is called Müller yet.
    await page.keyboard.press("/")
    await page.keyboard.type("Muller")
    await expect(page.locator("#results")).to_contain_text("No patient")
    await screens.shot(page, "search finds nobody")

    await page.evaluate("document.activeElement.blur()")  # out of the search box
    async with page.expect_navigation():
        await page.keyboard.press("n")  # the page's "new" shortcut
    await page.fill("#f-family_name", "Müller")
    await page.fill("#f-given_name", "Anne")
    await page.fill("#f-birth_date", "1980-03-12")
    await page.select_option("#f-sex", "F")
    await page.fill("#f-matricule", "1980031212345")  # a wrong check digit
    await expect(page.locator("#e-matricule")).to_contain_text(re.compile("check|Luhn",
                                                                          re.I))
    await screens.shot(page, "matricule checked as typed")
    matricule = complete("19800312" + "123")
    await page.fill("#f-matricule", matricule)
    await expect(page.locator("#e-matricule")).to_contain_text(re.compile("valid", re.I))
    await submit(page, "Register the patient")
    await expect(page.locator("h1")).to_contain_text("Müller")
    patient_url = page.url

    await page.goto(f"{patient_url}/coverages/new")
    await page.select_option("#f-cov-kind", "statutory")
    await page.fill("#f-cov-payer", "CNS")
    await page.fill("#f-cov-member_number", "M-2026-77")
    await page.fill("#f-cov-valid_from", "2020-01-01")
    await submit(page, "Add the coverage")
    await screens.shot(page, "patient with coverage")

    await page.goto(patient_url)
    await page.select_option("#f-admit-kind", "inpatient")
    await page.fill("#f-admit-admitted_at", "2026-11-20T08:30")
    await page.fill("#f-admit-unit", "MED")
    await page.fill("#f-admit-room", "101")
    await submit(page, "Save the stay")
    await expect(page.locator("h1")).to_contain_text("Müller")
    stay_url = page.url
    assert "/desk/stays/" in stay_url

    for code, day in (("V1", "2026-11-20T10:00"), ("N101", "2026-11-21T09:00"),
                      ("1D21", "2026-11-21T11:15")):
        await page.fill("#f-act-performed_at", day)
        await page.fill("#f-act-code", "")
        await page.locator("#f-act-code").type(code)
        await expect(page.locator("#act-suggest")).to_contain_text(code)
        await expect(page.locator("#act-suggest")).to_contain_text("€")
        if code == "V1":
            await screens.shot(page, "act code autocomplete with price")
        # On to the next field, as a clerk would: it closes the browser's list of codes.
        await page.locator("#f-act-quantity").focus()
        await submit(page, "Record the act")
    acts = page.locator("table tr[id^='act-']")
    await expect(acts).to_have_count(3)
    await expect(acts.nth(1)).to_contain_text("N101")
    await screens.shot(page, "stay with three acts")

    # The attending doctor, forgotten at the admission, is added.
    await page.get_by_role("link", name="Correct the kind or the doctors").click()
    await expect(page.locator("h1")).to_contain_text("Correct the stay")
    await page.fill("#f-stay-attending_doctor", "23456789")
    await submit(page, "Save the corrections")
    await expect(page.locator("body")).to_contain_text("Attending doctor")
    await expect(page.locator("body")).to_contain_text("23456789")
    await expect(acts).to_have_count(3)

    await page.fill("#f-transfer-at", "2026-11-21T14:00")
    await page.fill("#f-transfer-unit", "CHIR")
    await page.fill("#f-transfer-room", "204")
    await submit(page, "Transfer the patient")
    await page.fill("#f-discharge-at", "2026-11-23T11:00")
    await submit(page, "Discharge the patient")
    await expect(page.locator("body")).to_contain_text("discharged")
    await expect(page.locator("body")).to_contain_text("CHIR")
    await screens.shot(page, "stay discharged")

    # Another hospital's clerk: the same URLs are pages that do not exist.
    stranger = await person(owner_db, theirs, Role.clerk, language="en")
    other = await open_page(browser, ENGLISH)
    await log_in(other, desk_url, stranger)
    for url in (patient_url, stay_url):
        response = await other.goto(url)
        assert response is not None and response.status == 404
        await expect(other.locator("body")).not_to_contain_text("Müller")
    await other.goto(f"{desk_url}/desk/patients?q=Muller")
    await expect(other.locator("#results")).not_to_contain_text("Müller")
    await screens.shot(other, "another hospital sees nothing")
    await other.context.close()
    await page.context.close()


async def test_the_billing_officers_month(browser: Browser, desk_url: str,
                                          owner_db: Database, client: httpx.AsyncClient,
                                          screens: Screens,
                                          two_hospitals: tuple[Hospital, Hospital]) -> None:
    ours, theirs = two_hospitals
    stays = [await stay_with_acts(client, ours) for _ in range(3)]
    officer = await person(owner_db, ours, Role.billing, language="en")
    page = await open_page(browser, ENGLISH)
    await log_in(page, desk_url, officer)

    for stay in stays:
        await page.goto(f"{desk_url}/desk/billing")
        await expect(page.locator("main")).to_contain_text("Preview and issue")
        await page.goto(f"{desk_url}/desk/billing/stays/{stay['id']}")
        if stay is stays[0]:
            await screens.shot(page, "dry-run preview")
        await submit(page, "Issue the final invoices")
    await expect(page.locator("main")).to_contain_text(re.compile(r"\d"))
    await screens.shot(page, "invoices issued")

    # The patient invoice and its PDF.
    await page.goto(f"{desk_url}/desk/invoices?kind=patient&stay={stays[0]['id']}")
    await page.locator("main table a").first.click()
    await page.wait_for_load_state()
    invoice_url = page.url
    pdf = await page.request.get(f"{invoice_url}/pdf")
    assert pdf.status == 200 and pdf.headers["content-type"] == "application/pdf"
    assert (await pdf.body()).startswith(b"%PDF-")
    await screens.shot(page, "patient invoice")

    # The month's claim batch: build, freeze, download.
    month = datetime.now(LUXEMBOURG).strftime("%Y-%m")
    await page.goto(f"{desk_url}/desk/claims")
    await page.fill("#f-payer", "CNS")
    await page.fill("#f-period", month)
    await submit(page, "Build the batch")
    await expect(page.locator("main")).to_contain_text(re.compile("open", re.I))
    await submit(page, "Freeze: write the claim file")
    await expect(page.locator("main")).to_contain_text(re.compile("frozen", re.I))
    batch_url = page.url.split("?")[0]
    claim = await (await page.request.get(f"{batch_url}/file")).body()
    assert claim.startswith(b"<?xml")
    await screens.shot(page, "batch frozen")
    await submit(page, "Mark as sent")

    # The insurer's answer, simulated, uploaded as a file.
    answer = test_returns.answer_with_rejections(claim)
    await page.set_input_files("#f-file", files=[{"name": "return.xml",
                                                   "mimeType": "application/xml",
                                                   "buffer": answer}])
    await submit(page, "Import the return")
    await expect(page.locator("main")).to_contain_text(re.compile("answered", re.I))
    await screens.shot(page, "return imported")

    await page.goto(f"{desk_url}/desk/claim-lines?status=rejected")
    rows = page.locator("form.resolve input[name=reason]")
    assert await rows.count() >= 2  # each rejected line: write off or credit
    await screens.shot(page, "rejected lines to resolve")
    await rows.first.fill("Refused for good by the CNS")
    await submit(page, "Write off")
    await expect(page.locator("main")).to_contain_text(re.compile("written off", re.I))
    await screens.shot(page, "rejected line written off")
    await page.goto(f"{batch_url}/reconciliation")
    await expect(page.locator("main")).to_contain_text(re.compile("written off", re.I))
    await screens.shot(page, "reconciliation")
    await page.goto(f"{desk_url}/desk/dashboard")
    assert await page.locator("svg").count() >= 3
    await screens.shot(page, "dashboard")

    # Another hospital's billing officer: none of it.
    stranger = await person(owner_db, theirs, Role.billing, language="en")
    other = await open_page(browser, ENGLISH)
    await log_in(other, desk_url, stranger)
    for url in (invoice_url, batch_url, f"{invoice_url}/pdf"):
        response = await other.goto(url) if not url.endswith("/pdf") else None
        if response is not None:
            assert response.status == 404
        else:
            assert (await other.request.get(url)).status == 404
    await other.goto(f"{desk_url}/desk/claim-lines?status=written_off")
    await expect(other.locator("main")).not_to_contain_text("Refused for good")
    await other.context.close()
    await page.context.close()

"""The billing officer's desk pages: billing a stay, invoices, PDFs, credit notes and
payments, claim batches and returns, the rejected-lines worklist, the dashboard; and who may
see what. Data is arranged through the API (its own test helpers), then worked on in pages."""

import hashlib
import html
import re
from datetime import date, timedelta
from decimal import Decimal

import httpx
import pytest
from markupsafe import escape

from luxfact.auth.roles import Role
from luxfact.billing import service
from luxfact.claims import anomalies, xml
from luxfact.claims.simulate import simulate_return
from luxfact.db.engine import Database
from luxfact.web.billing import money
from tests.billing.test_invoices import bill, invoices_of, stay_with_acts
from tests.claims.test_batches import PERIOD, billed
from tests.conftest import REPO, Hospital, Hospitals
from tests.web.desk import csrf_of, signed_in

pytestmark = pytest.mark.usefixtures("catalogue")
IDEM = re.compile(r'name="idem" value="([^"]+)"')


def fr(amount: str | int) -> str:
    """An amount as the desk shows it to a French-speaking user (cents, or euros)."""
    return money(amount, "fr")


def esc(text: str) -> str:
    """Text as the pages write it (Jinja's autoescape)."""
    return str(escape(text))


def idem_of(page: httpx.Response, index: int = 0) -> str:
    found = IDEM.findall(page.text)
    assert len(found) > index, "the form has no idem key"
    return found[index]


def error_next_to(page: httpx.Response, name: str) -> str:
    """The error shown next to a field (the macro's `e-<name>` element)."""
    found = re.search(rf'id="e-{re.escape(name)}"[^>]*>([^<]*)<', page.text)
    assert found, f"no error element for {name}"
    return html.unescape(found.group(1)).strip()


def row_of(page: httpx.Response, row_id: str) -> list[str]:
    """The cells of the table row `row_id`, as text."""
    found = re.search(rf'<tr id="{re.escape(row_id)}">(.*?)</tr>', page.text, re.S)
    assert found, f"no row {row_id}"
    return [html.unescape(re.sub(r"<[^>]+>", "", cell)).strip()
            for cell in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", found.group(1), re.S)]


def table_after(page: httpx.Response, marker: str) -> list[list[str]]:
    """The body rows of the first table after `marker`, as text."""
    start = page.text.index(marker)
    body = page.text[page.text.index("<tbody>", start):page.text.index("</tbody>", start)]
    return [[html.unescape(re.sub(r"<[^>]+>", "", cell)).strip()
             for cell in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, re.S)]
            for row in re.findall(r"<tr[^>]*>(.*?)</tr>", body, re.S)]


async def api_get(client: httpx.AsyncClient, hospital: Hospital, url: str) -> httpx.Response:
    response = await client.get(url, headers=hospital.auth(Role.billing))
    assert response.status_code == 200, response.text
    return response


# ------------------------------------------------------------------------ billing a stay


async def test_bill_a_stay_preview_then_issue_once(app: object, owner_db: Database,
                                                   hospitals: Hospitals,
                                                   client: httpx.AsyncClient) -> None:
    stay = await stay_with_acts(client, hospitals.a)
    waiting = await stay_with_acts(client, hospitals.a, discharge=False)  # still in the house
    async with signed_in(app, owner_db, hospitals.a, Role.billing) as desk:
        listing = await desk.get("/desk/billing")
        assert listing.status_code == 200
        assert "script-src 'self'" in listing.headers["content-security-policy"]
        assert listing.headers["cache-control"] == "no-store"
        assert f'href="/desk/billing/stays/{stay["id"]}"' in listing.text
        assert waiting["id"] not in listing.text  # not discharged: not ready

        preview = await desk.get(f"/desk/billing/stays/{stay['id']}")
        assert preview.status_code == 200
        for text in ("V1", "N101", "CP1", "PARTICIPATION", "<details>", fr("59.76"),
                     fr("104.76"), "CNS"):
            assert text in preview.text, text
        # Insurer and patient parts, and each line's explanation.
        assert fr("59.57") in preview.text and "19.92" in preview.text
        # A dry run stores nothing: no invoice, every act still to bill.
        assert await invoices_of(client, hospitals.a, stay) == []
        acts = (await api_get(client, hospitals.a,
                              f"/api/v1/stays/{stay['id']}/acts")).json()["items"]
        assert {a["state"] for a in acts} == {"recorded"}

        form = {"csrf": csrf_of(preview), "idem": idem_of(preview)}
        issued = await desk.post(f"/desk/billing/stays/{stay['id']}", data=form)
        assert issued.status_code == 303
        assert issued.headers["location"] == f"/desk/invoices?stay={stay['id']}"
        again = await desk.post(f"/desk/billing/stays/{stay['id']}", data=form)  # double submit
        assert again.status_code == 303 and again.headers["location"] == \
            issued.headers["location"]
        invoices = await invoices_of(client, hospitals.a, stay)
        assert len(invoices) == 2  # one set of invoices, not two
        shown = await desk.get(issued.headers["location"])
        assert all(invoice["number"] in shown.text for invoice in invoices)

        # Closed now: no longer ready, and its preview says why without an Issue button.
        assert f"/desk/billing/stays/{stay['id']}" not in (await desk.get("/desk/billing")).text
        closed = await desk.get(f"/desk/billing/stays/{stay['id']}")
        assert closed.status_code == 200 and 'role="alert"' in closed.text
        assert f'action="/desk/billing/stays/{stay["id"]}"' not in closed.text
        refused = await desk.post(f"/desk/billing/stays/{stay['id']}",
                                  data={"csrf": csrf_of(preview), "idem": "another-key"})
        assert refused.status_code == 409 and 'role="alert"' in refused.text

        # Not discharged: the preview explains, nothing can be issued.
        early = await desk.get(f"/desk/billing/stays/{waiting['id']}")
        assert early.status_code == 200
        assert f'action="/desk/billing/stays/{waiting["id"]}"' not in early.text


async def test_the_repricing_report_is_confirmed_on_the_preview(
        app: object, owner_db: Database, hospitals: Hospitals,
        client: httpx.AsyncClient) -> None:
    """A tariff corrected in place after the stay's acts were priced: the preview lists the
    acts (then and today) instead of issuing, and one button re-prices them."""
    from luxfact.tariffs.models import TariffAct
    from tests.tariffs.corrections import corrected

    stay = await stay_with_acts(client, hospitals.a)
    async with corrected(owner_db, TariffAct, "coefficient", Decimal("3.00"), code="N101"), \
            signed_in(app, owner_db, hospitals.a, Role.billing) as desk:
        url = f"/desk/billing/stays/{stay['id']}"
        preview = await desk.get(url)
        assert preview.status_code == 200
        assert "retarifez-les au tarif du jour" in preview.text  # in the user's language
        [n101] = [a for a in (await api_get(client, hospitals.a,
                  f"/api/v1/stays/{stay['id']}/acts")).json()["items"]
                  if a["code"] == "N101"]
        assert row_of(preview, f"reprice-{n101['id']}")[2:] == [
            "N101@2019-01-01 · 19.78", "N101@2019-01-01 · 23.27"]
        assert f'action="{url}"' not in preview.text  # nothing to issue yet
        form = {"csrf": csrf_of(preview), "idem": idem_of(preview)}
        done = await desk.post(f"{url}/reprice", data=form)
        assert done.status_code == 303 and done.headers["location"] == url
        again = await desk.get(url)
        assert "reprice-" not in again.text and f'action="{url}"' in again.text
        assert fr("23.27") in again.text
        trail = (await client.get("/api/v1/audit-events", params={
            "object_id": n101["id"]}, headers=hospitals.a.auth(Role.admin))).json()
        assert trail["items"][0]["details"] == {"fields": [], "repriced": True}


async def test_a_stay_with_nothing_left_is_closed_by_its_final_billing(
        app: object, owner_db: Database, hospitals: Hospitals,
        client: httpx.AsyncClient) -> None:
    stay = await stay_with_acts(client, hospitals.a)
    interim = await bill(client, hospitals.a, stay, kind="interim", until="2026-03-05")
    assert interim.status_code == 201, interim.text
    async with signed_in(app, owner_db, hospitals.a, Role.billing) as desk:
        assert f"/desk/billing/stays/{stay['id']}" in (await desk.get("/desk/billing")).text
        preview = await desk.get(f"/desk/billing/stays/{stay['id']}")
        assert preview.status_code == 200 and 'role="alert"' in preview.text
        assert "Clôturer le séjour" in preview.text  # nothing to issue: the billing closes
        closed = await desk.post(f"/desk/billing/stays/{stay['id']}", data={
            "csrf": csrf_of(preview), "idem": idem_of(preview)})
        assert closed.status_code == 303
        assert len(await invoices_of(client, hospitals.a, stay)) == len(
            interim.json()["invoices"])  # no new invoice
        state = (await api_get(client, hospitals.a, f"/api/v1/stays/{stay['id']}")).json()
        assert state["state"] == "closed"
        assert f"/desk/billing/stays/{stay['id']}" not in (await desk.get("/desk/billing")).text


# ---------------------------------------------------------------- invoices and their forms


async def test_invoice_page_pdf_payment_and_credit_note(app: object, owner_db: Database,
                                                        hospitals: Hospitals,
                                                        client: httpx.AsyncClient) -> None:
    stay = await stay_with_acts(client, hospitals.a)
    insurer, patient = (await bill(client, hospitals.a, stay)).json()["invoices"]
    url = f"/desk/invoices/{patient['id']}"
    async with signed_in(app, owner_db, hospitals.a, Role.billing) as desk:
        page = await desk.get(url)
        assert page.status_code == 200
        assert patient["number"] in page.text and "PARTICIPATION" in page.text
        assert fr(patient["total"]) in page.text and "<details>" in page.text

        # The PDF: shown in the browser, or downloaded; the archived bytes of the API.
        pdf = await desk.get(f"{url}/pdf")
        assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
        assert pdf.content.startswith(b"%PDF")
        assert pdf.headers["content-disposition"].startswith("inline;")
        download = await desk.get(f"{url}/pdf?download=1")
        assert download.headers["content-disposition"].startswith("attachment;")
        api_pdf = await client.get(f"/api/v1/invoices/{patient['id']}/pdf",
                                   headers=hospitals.a.auth(Role.billing))
        assert download.content == pdf.content == api_pdf.content
        # The insurer's part is a claim, not a printed document (as in the API).
        assert (await desk.get(f"/desk/invoices/{insurer['id']}/pdf")).status_code == 409
        assert f"/desk/invoices/{insurer['id']}/pdf" not in \
            (await desk.get(f"/desk/invoices/{insurer['id']}")).text

        # Payments: a wrong amount is refused next to its field, what was typed is kept.
        token = csrf_of(page)
        today = service.today().isoformat()
        bad = await desk.post(f"{url}/payments", data={
            "csrf": token, "idem": idem_of(page, 1), "amount": "12,345",
            "paid_on": today, "method": "transfer", "reference": "VIR-1"})
        assert bad.status_code == 422
        assert error_next_to(bad, "amount")
        assert 'value="12,345"' in bad.text and 'value="VIR-1"' in bad.text
        assert 'aria-invalid="true"' in bad.text
        too_much = await desk.post(f"{url}/payments", data={
            "csrf": token, "idem": idem_of(page, 1), "amount": "500.00",
            "paid_on": today, "method": "transfer"})
        assert too_much.status_code == 422 and "104.76" in error_next_to(too_much, "amount")
        no_day = await desk.post(f"{url}/payments", data={
            "csrf": token, "idem": idem_of(page, 1), "amount": "1", "paid_on": "",
            "method": "cash"})
        assert no_day.status_code == 422 and error_next_to(no_day, "paid_on")
        form = {"csrf": token, "idem": idem_of(page, 1), "amount": "50,00",
                "paid_on": today, "method": "card", "reference": "TPE 0042"}
        paid = await desk.post(f"{url}/payments", data=form)
        assert paid.status_code == 303 and paid.headers["location"] == url
        assert (await desk.post(f"{url}/payments", data=form)).status_code == 303  # again
        read = (await api_get(client, hospitals.a, f"/api/v1/invoices/{patient['id']}")).json()
        assert (read["paid"], read["balance"], read["status"]) == ("50.00", "54.76",
                                                                  "partly_paid")
        page = await desk.get(url)
        assert "TPE 0042" in page.text and fr("54.76") in page.text

        # Credit notes: chosen lines without a line, or no reason, come back with errors.
        token = csrf_of(page)
        participation = next(line["seq"] for line in patient["lines"]
                             if line["code"] == "PARTICIPATION")
        no_line = await desk.post(f"{url}/credit-notes", data={
            "csrf": token, "idem": idem_of(page, 0), "scope": "lines", "reason": "erreur"})
        assert no_line.status_code == 422 and error_next_to(no_line, "lines")
        assert 'value="erreur"' in no_line.text
        no_reason = await desk.post(f"{url}/credit-notes", data={
            "csrf": token, "idem": idem_of(page, 0), "scope": "all", "reason": "  "})
        assert no_reason.status_code == 422 and error_next_to(no_reason, "reason")
        unknown = await desk.post(f"{url}/credit-notes", data={
            "csrf": token, "idem": idem_of(page, 0), "scope": "lines", "lines": "99",
            "reason": "erreur"})
        assert unknown.status_code == 422 and error_next_to(unknown, "lines")
        script = "<script>alert('x')</script> jours facturés en trop"
        credited = await desk.post(f"{url}/credit-notes", data={
            "csrf": token, "idem": idem_of(page, 0), "scope": "lines",
            "lines": str(participation), "reason": script})
        assert credited.status_code == 303
        note = await desk.get(credited.headers["location"])
        assert note.status_code == 200 and patient["number"] in note.text
        assert "<script>alert" not in note.text  # escaped, never run
        assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in note.text
        page = await desk.get(url)
        assert "&lt;script&gt;" in page.text and "<script>alert" not in page.text
        again = await desk.post(f"{url}/credit-notes", data={
            "csrf": token, "idem": "new-key", "scope": "lines",
            "lines": str(participation), "reason": "encore"})
        assert again.status_code == 409 and error_next_to(again, "credit")
        notes = (await api_get(client, hospitals.a,
                               f"/api/v1/invoices?doc_type=credit_note&stay_id={stay['id']}"
                               )).json()["items"]
        assert len(notes) == 1 and notes[0]["total"] == "59.76"


async def test_invoice_list_filters_and_the_overdue_quick_filter(
        app: object, owner_db: Database, hospitals: Hospitals, client: httpx.AsyncClient,
        monkeypatch: pytest.MonkeyPatch) -> None:
    first = await stay_with_acts(client, hospitals.a)
    first_insurer, first_patient = (await bill(client, hospitals.a, first)).json()["invoices"]
    second = await stay_with_acts(client, hospitals.a)
    _, second_patient = (await bill(client, hospitals.a, second)).json()["invoices"]
    headers = hospitals.a.auth(Role.billing)
    # The second patient pays: only the first patient invoice stays open.
    assert (await client.post(f"/api/v1/invoices/{second_patient['id']}/payments", json={
        "amount": second_patient["total"], "paid_on": service.today().isoformat(),
        "method": "cash"}, headers=headers)).status_code == 201
    matricule = (await api_get(client, hospitals.a, f"/api/v1/patients/"
                               f"{first_patient['patient_id']}")).json()["matricule"]
    async with signed_in(app, owner_db, hospitals.a, Role.billing) as desk:
        every = await desk.get("/desk/invoices")
        assert every.status_code == 200
        assert 'href="/desk/invoices?status=overdue"' in every.text  # the quick filter
        assert every.text.count('href="/desk/invoices/') == 4
        patients = await desk.get("/desk/invoices?kind=patient")
        assert first_patient["number"] in patients.text
        assert first_insurer["number"] not in patients.text
        paid = await desk.get("/desk/invoices?status=paid")
        assert paid.text.count('href="/desk/invoices/') == 1
        assert second_patient["number"] in paid.text
        by_patient = await desk.get(f"/desk/invoices?patient={matricule}")
        assert by_patient.text.count('href="/desk/invoices/') == 2
        assert second_patient["number"] not in by_patient.text
        issued = service.today().isoformat()
        today = await desk.get(f"/desk/invoices?issued_from={issued}&issued_to={issued}")
        assert today.text.count('href="/desk/invoices/') == 4
        future = (service.today() + timedelta(days=1)).isoformat()
        assert (await desk.get(f"/desk/invoices?issued_from={future}")
                ).text.count('href="/desk/invoices/') == 0
        assert (await desk.get("/desk/invoices?status=overdue")
                ).text.count('href="/desk/invoices/') == 0

        # Bad filters: 422, the error next to the field, the typed value kept.
        wrong_day = await desk.get("/desk/invoices?issued_from=31/12/2026")
        assert wrong_day.status_code == 422 and error_next_to(wrong_day, "issued_from")
        assert 'value="31/12/2026"' in wrong_day.text
        wrong_status = await desk.get("/desk/invoices?status=lost")
        assert wrong_status.status_code == 422 and error_next_to(wrong_status, "status")
        wrong_patient = await desk.get("/desk/invoices?patient=12345")
        assert wrong_patient.status_code == 422 and error_next_to(wrong_patient, "patient")
        assert (await desk.get("/desk/invoices?cursor=garbage")).status_code == 422

        # Past the due date, the open invoices are overdue.
        due = date.fromisoformat(first_patient["due_on"])
        monkeypatch.setattr(service, "today", lambda: due + timedelta(days=1))
        overdue = await desk.get("/desk/invoices?status=overdue")
        assert overdue.status_code == 200
        assert first_patient["number"] in overdue.text
        assert first_insurer["number"] in overdue.text  # the insurer part is owed too
        assert second_patient["number"] not in overdue.text  # paid
        only = await desk.get("/desk/invoices?status=overdue&kind=patient")
        assert only.text.count('href="/desk/invoices/') == 1


# ------------------------------------------------------------------------------ claims


def answer_rejecting(claim: bytes, rejected: int = 2) -> bytes:
    """A simulated return rejecting at least `rejected` lines and paying at least one."""
    for seed in range(500):
        answer = simulate_return(claim, seed=seed)
        lines = [line for inv in xml.parse_return(answer).invoices for line in inv.lines]
        if sum(line.net == 0 for line in lines) >= rejected and any(line.net > 0
                                                                    for line in lines):
            return answer
    raise AssertionError("no seed rejects enough lines")


async def frozen_and_sent(desk: httpx.AsyncClient, client: httpx.AsyncClient,
                          hospital: Hospital, stays: int) -> tuple[str, bytes]:
    """Build, validate, freeze and send a batch through the pages: (its id, its file)."""
    await billed(client, hospital, stays)
    page = await desk.get("/desk/claims")
    built = await desk.post("/desk/claims", data={
        "csrf": csrf_of(page), "idem": idem_of(page), "payer": "CNS", "period": PERIOD})
    assert built.status_code == 303, built.text
    url = built.headers["location"]
    for action in ("validate", "freeze", "sent"):
        done = await desk.post(f"{url}/{action}", data={"csrf": csrf_of(page)})
        assert done.status_code == 303, (action, done.text)
    file = await desk.get(f"{url}/file")
    assert file.status_code == 200
    return url.rsplit("/", 1)[1], file.content


async def test_build_validate_freeze_download_send(app: object, owner_db: Database,
                                                   hospitals: Hospitals,
                                                   client: httpx.AsyncClient) -> None:
    invoices = await billed(client, hospitals.a, 3)
    async with signed_in(app, owner_db, hospitals.a, Role.billing) as desk:
        page = await desk.get("/desk/claims")
        assert page.status_code == 200 and 'name="period"' in page.text
        token = csrf_of(page)
        bad = await desk.post("/desk/claims", data={"csrf": token, "idem": idem_of(page),
                                                    "payer": "CNS", "period": "2026-13"})
        assert bad.status_code == 422 and error_next_to(bad, "period")
        assert 'value="2026-13"' in bad.text
        none = await desk.post("/desk/claims", data={"csrf": token, "idem": idem_of(page),
                                                     "payer": "CNS", "period": "2001-01"})
        assert none.status_code == 422 and error_next_to(none, "period")
        form = {"csrf": token, "idem": idem_of(page), "payer": "CNS", "period": PERIOD}
        built = await desk.post("/desk/claims", data=form)
        assert built.status_code == 303
        url = built.headers["location"]
        assert (await desk.post("/desk/claims", data=form)).headers["location"] == url
        batch_id = url.rsplit("/", 1)[1]

        batch = await desk.get(url)
        assert batch.status_code == 200
        net = sum(int(Decimal(i["total"]) * 100) for i in invoices)
        assert row_of(batch, "total-invoices")[1] == "3"
        # Lines and amounts as they stand are summed after the page (htmx), or on their own.
        assert f'hx-get="{url}/totals"' in batch.text and f'href="{url}/totals"' in batch.text
        live = await desk.get(f"{url}/totals", headers={"HX-Request": "true"})
        assert "<html" not in live.text
        assert row_of(live, "total-lines")[1] == "6"
        assert row_of(live, "total-net")[1] == f"{fr(net)} EUR"
        assert 'id="total-net"' in (await desk.get(f"{url}/totals")).text
        assert (await desk.get(f"{url}/file")).status_code == 409  # not frozen yet

        validated = await desk.post(f"{url}/validate", data={"csrf": token})
        assert validated.status_code == 303
        frozen = await desk.post(f"{url}/freeze", data={"csrf": token})
        assert frozen.status_code == 303
        assert (await desk.post(f"{url}/freeze", data={"csrf": token})).status_code == 409
        shown = await desk.get(url)
        assert f'href="{url}/file"' in shown.text and f'action="{url}/sent"' in shown.text

        file = await desk.get(f"{url}/file")
        api_file = await client.get(f"/api/v1/claim-batches/{batch_id}/file",
                                    headers=hospitals.a.auth(Role.billing))
        assert file.status_code == 200 and file.content == api_file.content
        assert hashlib.sha256(file.content).hexdigest() == file.headers["x-content-sha256"]
        assert file.headers["content-disposition"].startswith("attachment;")

        sent = await desk.post(f"{url}/sent", data={"csrf": token})
        assert sent.status_code == 303
        api = (await api_get(client, hospitals.a, f"/api/v1/claim-batches/{batch_id}")).json()
        assert api["state"] == "sent" and api["line_count"] == 6
        frozen_page = await desk.get(url)
        assert row_of(frozen_page, "total-net")[1] == f"{fr(net)} EUR"
        assert row_of(frozen_page, "total-lines")[1] == "6"
        assert 'enctype="multipart/form-data"' in (await desk.get(url)).text


async def test_validation_errors_link_to_the_stay_and_line(app: object, owner_db: Database,
                                                           hospitals: Hospitals,
                                                           client: httpx.AsyncClient) -> None:
    from tests.patients.test_api import create as create_patient
    from tests.stays.test_api import act, admit, move

    # A patient without a national identification number: the claim cannot go.
    patient = await create_patient(client, hospitals.a, matricule=None,
                                   no_matricule_reason="foreign")
    stay = await admit(client, hospitals.a, patient=patient)
    assert (await act(client, hospitals.a, stay, code="V1", performer="12345678")
            ).status_code == 201
    assert (await move(client, hospitals.a, stay, type="discharge",
                       at="2026-03-05T11:00:00+01:00")).status_code == 201
    insurer = (await bill(client, hospitals.a, stay)).json()["invoices"][0]
    async with signed_in(app, owner_db, hospitals.a, Role.billing) as desk:
        page = await desk.get("/desk/claims")
        built = await desk.post("/desk/claims", data={
            "csrf": csrf_of(page), "idem": idem_of(page), "payer": "CNS", "period": PERIOD})
        url = built.headers["location"]
        refused = await desk.post(f"{url}/validate", data={"csrf": csrf_of(page)})
        assert refused.status_code == 422
        assert f'href="/desk/stays/{stay["id"]}"' in refused.text
        assert f'href="/desk/invoices/{insurer["id"]}"' in refused.text
        assert insurer["number"] in refused.text and "matricule" in refused.text
        frozen = await desk.post(f"{url}/freeze", data={"csrf": csrf_of(page)})
        assert frozen.status_code == 422 and f'/desk/stays/{stay["id"]}' in frozen.text


async def test_return_upload_worklist_and_reconciliation(app: object, owner_db: Database,
                                                         hospitals: Hospitals,
                                                         client: httpx.AsyncClient) -> None:
    async with signed_in(app, owner_db, hospitals.a, Role.billing) as desk:
        batch_id, claim = await frozen_and_sent(desk, client, hospitals.a, 5)
        url = f"/desk/claims/{batch_id}"
        page = await desk.get(url)
        token = csrf_of(page)
        # Bad uploads come back next to the field, never a 500.
        missing = await desk.post(f"{url}/return", data={"csrf": token},
                                  files={"other": ("x.txt", b"x", "text/plain")})
        assert missing.status_code == 422 and error_next_to(missing, "file")
        empty = await desk.post(f"{url}/return", data={"csrf": token},
                                files={"file": ("return.xml", b"", "application/xml")})
        assert empty.status_code == 422 and error_next_to(empty, "file")
        garbage = await desk.post(f"{url}/return", data={"csrf": token},
                                  files={"file": ("return.xml", b"\x00\xffnot xml",
                                                  "application/octet-stream")})
        assert garbage.status_code == 422 and error_next_to(garbage, "file")
        assert 'class="error"' in garbage.text

        answer = answer_rejecting(claim)
        upload = {"file": ("retour.xml", answer, "application/xml")}
        imported = await desk.post(f"{url}/return", data={"csrf": token}, files=upload)
        assert imported.status_code == 303
        assert imported.headers["location"] == f"{url}?imported=1"
        again = await desk.post(f"{url}/return", data={"csrf": token}, files=upload)
        assert again.headers["location"] == f"{url}?imported=0"

        # The reconciliation: the API's figures, the anomalies labelled in French.
        api = (await api_get(client, hospitals.a,
                             f"/api/v1/claim-batches/{batch_id}/reconciliation")).json()
        batch_page = await desk.get(url)
        assert batch_page.status_code == 200
        # The batch page loads its reconciliation after itself (htmx), or links to it.
        assert f'hx-get="{url}/reconciliation"' in batch_page.text
        assert f'href="{url}/reconciliation"' in batch_page.text
        shown = await desk.get(f"{url}/reconciliation", headers={"HX-Request": "true"})
        assert shown.status_code == 200 and "<html" not in shown.text  # the section alone
        whole = await desk.get(f"{url}/reconciliation")
        assert "<html" in whole.text and 'id="figure-claimed"' in whole.text
        for name in ("claimed", "paid", "partly_paid", "rejected", "outstanding"):
            cells = row_of(shown, f"figure-{name}")
            assert cells[1:] == [str(api[name]["count"]), fr(api[name]["claimed"]),
                                 fr(api[name]["paid"])], name
        codes = anomalies.load(REPO / "invoices")
        for figure in api["by_anomaly"]:
            assert esc(codes[figure["code"]].labels["fr"]) in shown.text

        # The worklist: each rejected line with its labels, motif and what to do.
        worklist = await desk.get("/desk/claim-lines")
        assert worklist.status_code == 200
        lines = (await api_get(client, hospitals.a,
                               "/api/v1/claim-lines?status=rejected")).json()["items"]
        assert len(lines) >= 2
        for line in lines:
            assert f'id="l-{line["invoice_id"]}-{line["line"]}"' in worklist.text
            assert f'href="/desk/stays/{line["stay_id"]}"' in worklist.text
            for anomaly in line["anomalies"]:
                assert esc(codes[anomaly["code"]].labels["fr"]) in worklist.text
                assert esc(anomaly["motif"]) in worklist.text

        # Write one off: a reason is needed (next to that line's field), then it is closed.
        first, second = lines[0], lines[1]
        token = csrf_of(worklist)
        off = f"/desk/claim-lines/{first['invoice_id']}/{first['line']}/write-off"
        key = f"{first['invoice_id']}-{first['line']}"
        blank = await desk.post(off, data={"csrf": token, "status": "rejected", "reason": ""})
        assert blank.status_code == 422 and error_next_to(blank, f"off-{key}")
        done = await desk.post(off, data={"csrf": token, "status": "rejected",
                                          "reason": "Délai de recours dépassé"})
        assert done.status_code == 303
        assert (await desk.post(off, data={"csrf": token, "reason": "encore"})
                ).status_code == 409
        closed = (await api_get(client, hospitals.a,
                                "/api/v1/claim-lines?status=written_off")).json()["items"]
        assert [(i["invoice_id"], i["line"]) for i in closed] == [(first["invoice_id"],
                                                                   first["line"])]
        assert f'id="l-{key}"' in (await desk.get("/desk/claim-lines?status=written_off")).text

        # Credit another: a credit note of that line, then the stay can be billed again.
        worklist = await desk.get("/desk/claim-lines")
        key = f"{second['invoice_id']}-{second['line']}"
        credit = f"/desk/claim-lines/{second['invoice_id']}/{second['line']}/credit"
        match = re.search(rf'action="{re.escape(credit)}".*?name="idem" value="([^"]+)"',
                          worklist.text, re.S)
        assert match
        credited = await desk.post(credit, data={"csrf": token, "idem": match.group(1),
                                                 "status": "rejected",
                                                 "reason": "Code corrigé"})
        assert credited.status_code == 303
        notice = await desk.get(credited.headers["location"])
        assert f'href="/desk/billing/stays/{second["stay_id"]}"' in notice.text
        assert f'id="l-{key}"' not in notice.text  # resolved: off the rejected list
        resolved = (await api_get(client, hospitals.a,
                                  "/api/v1/claim-lines?status=credited")).json()["items"]
        assert [(i["invoice_id"], i["line"]) for i in resolved] == [(second["invoice_id"],
                                                                     second["line"])]
        rebill = await desk.get(f"/desk/billing/stays/{second['stay_id']}")
        assert rebill.status_code == 200 and second["code"] in rebill.text
        assert f'action="/desk/billing/stays/{second["stay_id"]}"' in rebill.text

        after = (await api_get(client, hospitals.a,
                               f"/api/v1/claim-batches/{batch_id}/reconciliation")).json()
        shown = await desk.get(f"{url}/reconciliation", headers={"HX-Request": "true"})
        assert row_of(shown, "figure-written_off")[1] == str(after["written_off"]["count"]) == "1"
        assert row_of(shown, "figure-credited")[1] == str(after["credited"]["count"]) == "1"
        assert (await desk.get("/desk/claim-lines?status=bogus")).status_code == 422


# ----------------------------------------------------------------------------- dashboard


async def test_dashboard_draws_three_charts_with_their_figures(
        app: object, owner_db: Database, hospitals: Hospitals, client: httpx.AsyncClient,
        monkeypatch: pytest.MonkeyPatch) -> None:
    async with signed_in(app, owner_db, hospitals.a, Role.billing) as desk:
        empty = await desk.get("/desk/dashboard")
        assert empty.status_code == 200 and empty.text.count("<svg") == 3

        batch_id, claim = await frozen_and_sent(desk, client, hospitals.a, 4)
        page = await desk.get(f"/desk/claims/{batch_id}")
        imported = await desk.post(f"/desk/claims/{batch_id}/return", data={
            "csrf": csrf_of(page)}, files={"file": ("r.xml", answer_rejecting(claim),
                                                    "application/xml")})
        assert imported.status_code == 303
        everything = (await api_get(client, hospitals.a, "/api/v1/invoices?limit=200")
                      ).json()["items"]
        patient = next(i for i in everything if i["kind"] == "patient")
        assert (await client.post(f"/api/v1/invoices/{patient['id']}/payments", json={
            "amount": "10.00", "paid_on": service.today().isoformat(), "method": "cash"},
            headers=hospitals.a.auth(Role.billing))).status_code == 201

        # 45 days past the due date of every invoice (all issued today).
        due = date.fromisoformat(patient["due_on"])
        monkeypatch.setattr(service, "today", lambda: due + timedelta(days=45))
        board = await desk.get("/desk/dashboard?refresh=1")
        assert board.status_code == 200
        assert board.text.count("<svg") == 3 and board.text.count("<table") == 3
        assert "<script>" not in board.text.split("</head>")[1]
        assert " style=" not in board.text
        # The figures are kept a moment: looked at again, they are not computed again.
        computed = re.search(r"calculés à ([0-9:]+)", board.text)
        assert computed and computed.group(0) in (await desk.get("/desk/dashboard")).text

        billed_cents = sum(int(Decimal(i["total"]) * 100) for i in everything)
        issued = date.fromisoformat(patient["issued_on"])
        months = table_after(board, 'id="billed"')
        assert len(months) == 12
        month = next(row for row in months if str(issued.year) in row[0]
                     and row[1] != "0,00")
        assert month[1:] == [fr(billed_cents), fr(1000)]
        assert f"{fr(billed_cents)} EUR</title>" in board.text  # the bar's own title

        owed = billed_cents - 1000
        ages = {cells[0]: cells[1:] for cells in table_after(board, 'id="ages"')}
        assert ages["31–60 jours"] == [str(len(everything)), fr(owed)]
        assert ages["0–30 jours"] == ["0", "0,00"] and ages["Plus de 90 jours"] == ["0", "0,00"]

        api = (await api_get(client, hospitals.a,
                             f"/api/v1/claim-batches/{batch_id}/reconciliation")).json()
        rates = {cells[0]: cells for cells in table_after(board, 'id="refusals"')}
        assert set(rates) == {figure["code"] for figure in api["by_anomaly"]}
        lines = api["claimed"]["count"]
        for figure in api["by_anomaly"]:
            cells = rates[figure["code"]]
            rate = (Decimal(figure["count"]) * 100 / lines).quantize(Decimal("0.1"))
            assert cells[2] == str(figure["count"])
            assert cells[3] == f"{str(rate).replace('.', ',')} %"
            assert cells[1] == figure["label"]


# ----------------------------------------------------------------------- who sees what


async def test_other_hospitals_get_the_404_page_and_clerks_403(
        app: object, owner_db: Database, hospitals: Hospitals,
        client: httpx.AsyncClient) -> None:
    stay = await stay_with_acts(client, hospitals.a)
    ready = await stay_with_acts(client, hospitals.a)
    insurer, patient = (await bill(client, hospitals.a, stay)).json()["invoices"]
    async with signed_in(app, owner_db, hospitals.a, Role.billing) as desk:
        batch_id, _claim = await frozen_and_sent(desk, client, hospitals.a, 1)
    async with signed_in(app, owner_db, hospitals.b, Role.billing) as other:
        token = csrf_of(await other.get("/desk/billing"))
        for url in (f"/desk/billing/stays/{ready['id']}", f"/desk/invoices/{patient['id']}",
                    f"/desk/invoices/{patient['id']}/pdf", f"/desk/claims/{batch_id}",
                    f"/desk/claims/{batch_id}/file", "/desk/invoices/not-an-id",
                    "/desk/claims/42"):
            found = await other.get(url)
            assert found.status_code == 404, url
            assert "text/html" in found.headers["content-type"]
            assert "Introuvable" in found.text or "introuvable" in found.text.lower(), url
        for url, data in (
                (f"/desk/billing/stays/{ready['id']}", {"idem": "k1"}),
                (f"/desk/invoices/{patient['id']}/payments",
                 {"amount": "1", "paid_on": service.today().isoformat(), "method": "cash"}),
                (f"/desk/invoices/{insurer['id']}/credit-notes",
                 {"scope": "all", "reason": "x", "idem": "k2"}),
                (f"/desk/claims/{batch_id}/validate", {}),
                (f"/desk/claims/{batch_id}/sent", {}),
                (f"/desk/claim-lines/{insurer['id']}/1/write-off", {"reason": "x"}),
                (f"/desk/claim-lines/{insurer['id']}/1/credit", {"reason": "x", "idem": "k3"})):
            refused = await other.post(url, data={"csrf": token, **data})
            assert refused.status_code == 404, url
        assert stay["id"] not in (await other.get("/desk/billing")).text
        assert ready["id"] not in (await other.get("/desk/billing")).text
        assert patient["number"] not in (await other.get("/desk/invoices")).text
        assert batch_id not in (await other.get("/desk/claims")).text
        # Nothing of hospital A was changed by B's attempts.
        assert len(await invoices_of(client, hospitals.a, ready)) == 0
    async with signed_in(app, owner_db, hospitals.a, Role.clerk) as clerk:
        for url in ("/desk/billing", f"/desk/billing/stays/{ready['id']}", "/desk/invoices",
                    f"/desk/invoices/{patient['id']}", f"/desk/invoices/{patient['id']}/pdf",
                    "/desk/claims", f"/desk/claims/{batch_id}", "/desk/claim-lines",
                    "/desk/dashboard"):
            assert (await clerk.get(url)).status_code == 403, url
        token = csrf_of(await clerk.get("/desk"))
        assert (await clerk.post(f"/desk/billing/stays/{ready['id']}",
                                 data={"csrf": token})).status_code == 403
    assert len(await invoices_of(client, hospitals.a, ready)) == 0


async def test_forms_need_the_token_and_pages_the_session(app: object, owner_db: Database,
                                                          hospitals: Hospitals,
                                                          client: httpx.AsyncClient) -> None:
    stay = await stay_with_acts(client, hospitals.a)
    async with signed_in(app, owner_db, hospitals.a, Role.billing) as desk:
        forged = await desk.post(f"/desk/billing/stays/{stay['id']}",
                                 data={"csrf": "forged", "idem": "k"})
        assert forged.status_code == 403
        assert await invoices_of(client, hospitals.a, stay) == []
        german = await desk.post("/language", data={
            "language": "de", "next": "/desk/dashboard",
            "csrf": csrf_of(await desk.get("/desk/billing"))})
        assert german.status_code == 303
        board = await desk.get("/desk/dashboard")
        assert 'lang="de"' in board.text and "Offene Beträge nach Alter" in board.text
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),  # type: ignore[arg-type]
                                 base_url="https://testserver") as anonymous:
        assert (await anonymous.get("/desk/invoices")).status_code == 303

"""Invoice benchmark: issuing on PostgreSQL and rendering PDFs, against bare ReportLab.

    .venv/bin/python benchmarks/invoices.py [--stays 2000] [--concurrency 8] [--sample 200]

1. Creates a fresh PostgreSQL database (LUXFACT_TEST_POSTGRES_URL's server), migrates it,
   loads the demo hospitals and tariffs, and seeds --stays discharged inpatient stays of
   14 days, each with a doctor's visit and a single room every day (28 acts): billing one
   gives an insurer invoice of 14 lines and a patient invoice of 15 lines (14 single-room
   days and the daily participation).
2. Issues every stay (final invoice) through the billing service, as the application role
   (row-level security on), from --concurrency tasks: invoices/s.
3. Renders --sample patient invoices in this process, one after the other: documents/s,
   against the ceiling measured on the same documents: bare ReportLab drawing the same
   texts and rules with the same fonts (no QR code, no PDF/A). Target ratio >= 0.5.
4. Renders and archives every patient invoice of the month through `render_pending` (the
   process pool, as `luxfact invoices render` does): documents/s.
5. Extrapolates a month of 30,000 invoices issued (15,000 stays, an insurer and a patient
   invoice each) with their 15,000 patient invoices rendered, against the 10-minute target;
   and twice that (30,000 patient invoices, so 30,000 stays).
"""

import argparse
import asyncio
import io
import os
import sys
import time
import uuid
import zlib
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import asyncpg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from api import drop_database, make_database, run_cli  # noqa: E402
from reportlab.lib.pagesizes import A4  # noqa: E402
from reportlab.pdfbase import pdfdoc, pdfmetrics  # noqa: E402
from reportlab.pdfbase.ttfonts import TTFont  # noqa: E402
from reportlab.pdfgen.canvas import Canvas  # noqa: E402

from luxfact.billing import documents, rendering, service  # noqa: E402
from luxfact.billing.document import InvoiceDocument  # noqa: E402
from luxfact.billing.pdf import render_document  # noqa: E402
from luxfact.billing.repository import BillingRepository  # noqa: E402
from luxfact.billing.schemas import BillIn  # noqa: E402
from luxfact.db.engine import Database  # noqa: E402
from luxfact.kit import context  # noqa: E402
from luxfact.kit.time import LUXEMBOURG  # noqa: E402
from luxfact.patients.matricule import complete  # noqa: E402
from luxfact.settings import load_settings  # noqa: E402
from luxfact.tenancy.repository import TenantRepository  # noqa: E402
from luxfact.tenancy.service import tenant_by_id  # noqa: E402

DAYS = 14
MONTH = 30_000


async def seed(dsn: str, tenant_id: uuid.UUID, stays: int) -> list[uuid.UUID]:
    """Patients, coverages, stays, movements and acts, copied in (the superuser's COPY)."""
    now = datetime.now(UTC)
    admitted = datetime(2026, 10, 1, 8, 0, tzinfo=LUXEMBOURG)
    discharged = admitted + timedelta(days=DAYS, hours=2)
    patients, coverages, stay_rows, movements, acts = [], [], [], [], []
    for i in range(stays):
        birth = date(1950, 1, 1) + timedelta(days=i % 15000)
        patient_id, stay_id = uuid.uuid4(), uuid.uuid4()
        matricule = complete(birth.strftime("%Y%m%d") + f"{i // 15000:03d}")
        patients.append((tenant_id, patient_id, matricule, "Muller", f"Anne{i}", "muller",
                         f"anne{i}", birth, "F", ("fr", "de", "en")[i % 3], "1, rue du Test",
                         "L-1000", "Luxembourg", "LU", "", "", 1, now, now))
        coverages.append((tenant_id, uuid.uuid4(), patient_id, "statutory", "CNS", "", False,
                          date(2020, 1, 1), now))
        stay_rows.append((tenant_id, stay_id, patient_id, "inpatient", "discharged", admitted,
                          discharged, "MED", "1", "A", "second", False, False, 3, now, now))
        for seq, (kind, at) in enumerate((("admit", admitted), ("discharge", discharged)), 1):
            movements.append((tenant_id, uuid.uuid4(), stay_id, seq, kind, at, "", "", "", "",
                              "bench", now))
        for day in range(DAYS):
            at = admitted + timedelta(days=day, hours=2)
            for code in ("V1", "CP1"):
                # No stored price: billing prices the stay again, and has no recorded unit
                # price to check it against (a real act's is compared: same cost either way).
                acts.append((tenant_id, uuid.uuid4(), stay_id, code, at, 1, "[]", "",
                             "recorded", "bench", 0, 0, 0, "{}", 1, now, now))
    conn = await asyncpg.connect(dsn)
    try:
        await conn.copy_records_to_table("patients", records=patients, columns=[
            "tenant_id", "id", "matricule", "family_name", "given_name", "family_folded",
            "given_folded", "birth_date", "sex", "language", "street", "postal_code", "city",
            "country", "phone", "email", "version", "created_at", "updated_at"])
        await conn.copy_records_to_table("coverages", records=coverages, columns=[
            "tenant_id", "id", "patient_id", "kind", "payer", "member_number", "first_class",
            "valid_from", "created_at"])
        await conn.copy_records_to_table("stays", records=stay_rows, columns=[
            "tenant_id", "id", "patient_id", "kind", "state", "admitted_at", "discharged_at",
            "unit", "room", "bed", "room_class", "childbirth", "psychiatric", "version",
            "created_at", "updated_at"])
        await conn.copy_records_to_table("movements", records=movements, columns=[
            "tenant_id", "id", "stay_id", "seq", "type", "at", "unit", "room", "bed",
            "room_class", "actor", "created_at"])
        await conn.copy_records_to_table("acts", records=acts, columns=[
            "tenant_id", "id", "stay_id", "code", "performed_at", "quantity", "modifiers",
            "note", "state", "tariff_version", "gross_cents", "insurer_cents", "patient_cents",
            "pricing", "version", "created_at", "updated_at"])
        await conn.execute("ANALYZE")
    finally:
        await conn.close()
    return [row[1] for row in stay_rows]


async def issue_all(db: Database, tenant_id: uuid.UUID, stay_ids: list[uuid.UUID],
                    concurrency: int) -> tuple[float, int]:
    queue = list(stay_ids)
    issued = 0

    async def worker() -> None:
        nonlocal issued
        while queue:
            stay_id = queue.pop()
            async with db.transaction() as session:
                tenant = await tenant_by_id(session, tenant_id)  # as the API reads it
                assert tenant is not None
                result = await service.bill_stay(session, tenant, stay_id,
                                                 BillIn(kind="final"), "bench")
                issued += len(result.invoices)  # type: ignore[union-attr]

    started = time.perf_counter()
    with context.tenant_scope(tenant_id, actor="bench"):
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started, issued


async def patient_documents(db: Database, tenant_id: uuid.UUID, settings: object,
                            count: int) -> list[InvoiceDocument]:
    with context.tenant_scope(tenant_id, actor="bench"):
        async with db.transaction() as session:
            tenant = await TenantRepository(session).by_id(tenant_id)
            repo = BillingRepository(session, tenant_id)
            invoices = await repo.page(limit=count, status=None, patient_id=None, stay_id=None,
                                       kind="patient", doc_type="invoice", issued_from=None,
                                       issued_to=None, today=date.today(), after=None)
            return [await documents.build(session, tenant, invoice,  # type: ignore[arg-type]
                                          await repo.lines(invoice.id), settings)  # type: ignore[arg-type]
                    for invoice in invoices]


def bare_page(doc: InvoiceDocument) -> bytes:
    """The ceiling: the same texts and rules drawn with the same font, and nothing else."""
    out = io.BytesIO()
    canvas = Canvas(out, pagesize=A4, invariant=1, initialFontName="Bench")
    width, height = A4
    canvas.setFont("BenchBold", 14)
    canvas.drawString(50, height - 60, doc.hospital.legal_name)
    canvas.setFont("Bench", 9)
    y = height - 80
    for text in (doc.hospital.address.street, doc.hospital.address.city, doc.patient.name,
                 doc.patient.street, doc.patient.city, f"Facture {doc.number}",
                 str(doc.issued_on), str(doc.due_on), doc.reference):
        canvas.drawString(50, y, text)
        y -= 12
    y -= 10
    for line in doc.lines:
        for x, text in ((50, line.code), (100, line.label[:40]), (300, str(line.day)),
                        (360, str(line.quantity)), (390, str(line.unit_price)),
                        (440, str(line.amount)), (490, str(line.insurer)),
                        (540, str(line.patient))):
            canvas.drawString(x, y, text)
        canvas.line(50, y - 3, width - 50, y - 3)
        y -= 14
    for text in (str(doc.total), str(doc.insurer_total), str(doc.patient_total),
                 str(doc.amount_due), doc.hospital.iban or "", doc.hospital.footer):
        canvas.drawString(350, y, text)
        y -= 12
    canvas.showPage()
    canvas.save()
    return out.getvalue()


def timed(function: object, docs: list[InvoiceDocument], *args: object) -> float:
    function(docs[0], *args)  # type: ignore[operator]  # warm: fonts, layout, caches
    started = time.perf_counter()
    for doc in docs:
        function(doc, *args)  # type: ignore[operator]
    return len(docs) / (time.perf_counter() - started)


async def main(args: argparse.Namespace) -> None:
    print(f"# {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, "
          f"{args.stays} stays, {args.concurrency} issuing tasks")
    name, dsn = await make_database()
    owner = "postgresql+asyncpg://" + dsn.split("://", 1)[1]
    env = {**os.environ, "LUXFACT_DATABASE_URL": owner}
    try:
        run_cli(env, "db", "upgrade")
        run_cli(env, "tenants", "sync")
        run_cli(env, "demo")
        settings = load_settings(database_url=owner)
        conn = await asyncpg.connect(dsn)
        tenant_id = await conn.fetchval("SELECT id FROM tenants WHERE slug = 'demo-nord'")
        await conn.close()
        started = time.perf_counter()
        stay_ids = await seed(dsn, tenant_id, args.stays)
        print(f"seeded {len(stay_ids)} stays ({len(stay_ids) * DAYS * 2} acts) in "
              f"{time.perf_counter() - started:.1f} s")

        db = Database(settings.effective_app_database_url, pool_size=args.concurrency)
        seconds, issued = await issue_all(db, tenant_id, stay_ids, args.concurrency)
        issue_rate = issued / seconds
        print(f"issue   : {issued} invoices ({len(stay_ids)} stays) in {seconds:.1f} s = "
              f"{issue_rate:.0f} invoices/s ({len(stay_ids) / seconds:.0f} stays/s)")

        docs = await patient_documents(db, tenant_id, settings, args.sample)
        lines = sorted({len(doc.lines) for doc in docs})
        ours = timed(render_document, docs, settings.invoices_dir)
        font_dir = settings.invoices_dir / "fonts"
        pdfmetrics.registerFont(TTFont("Bench", str(font_dir / "DejaVuSans.ttf")))
        pdfmetrics.registerFont(TTFont("BenchBold", str(font_dir / "DejaVuSans-Bold.ttf")))
        # The ceiling is ReportLab as it comes (streams compressed at zlib's default level);
        # the product sets level 3 in its rendering processes (see billing/pdf.py), so the
        # bare page is also timed at that level, for the ratio at equal compression.
        product_zlib, pdfdoc.zlib = pdfdoc.zlib, zlib
        ceiling = timed(bare_page, docs)
        pdfdoc.zlib = product_zlib
        same_level = timed(bare_page, docs)
        print(f"render  : one process {ours:.1f} documents/s, bare ReportLab ceiling "
              f"{ceiling:.1f} documents/s, ratio {ours / ceiling:.2f} (target >= 0.5; "
              f"{len(docs)} patient invoices of {lines} lines)")
        print(f"          bare ReportLab at the product's compression level: "
              f"{same_level:.1f} documents/s, ratio {ours / same_level:.2f}")

        tenant = None
        with context.tenant_scope(tenant_id, actor="bench"):
            async with db.transaction() as session:
                tenant = await TenantRepository(session).by_id(tenant_id)
        start = datetime.now(LUXEMBOURG).replace(day=1, hour=0, minute=0, second=0,
                                                 microsecond=0)
        started = time.perf_counter()
        with context.tenant_scope(tenant_id, actor="bench"):
            rendered = await documents.render_pending(db, tenant, start,  # type: ignore[arg-type]
                                                      start + timedelta(days=32), settings)
        pool_seconds = time.perf_counter() - started
        pool_rate = rendered / pool_seconds
        print(f"pool    : {rendered} patient invoices rendered and archived in "
              f"{pool_seconds:.1f} s = {pool_rate:.1f} documents/s ({os.cpu_count()} processes; "
              f"the insurers' invoices go out as claim files)")
        await db.dispose()
        rendering.shutdown()

        stays_rate = len(stay_ids) / seconds
        month = (MONTH // 2) / stays_rate + (MONTH // 2) / pool_rate
        print(f"month   : {MONTH:,} invoices issued ({MONTH // 2:,} stays, an insurer and a "
              f"patient invoice each) and the {MONTH // 2:,} patient invoices rendered: "
              f"{month / 60:.1f} min (target < 10 min), ratio {month / 600:.2f} of the budget")
        print(f"          {MONTH:,} patient invoices ({MONTH:,} stays, {2 * MONTH:,} invoices "
              f"issued) and rendered: {2 * month / 60:.1f} min")
        total = Decimal(0)
        for doc in docs:
            total += doc.patient_total
        print(f"check   : sample patient total {total} EUR")
    finally:
        await drop_database(name)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stays", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--sample", type=int, default=200)
    asyncio.run(main(parser.parse_args()))

"""Claim benchmark: a month's batch built, validated and frozen, against bare lxml.

    .venv/bin/python benchmarks/claims.py [--invoices 30000] [--lines 1000000]

1. Creates a fresh PostgreSQL database (LUXFACT_TEST_POSTGRES_URL's server), migrates it,
   loads the demo hospitals and tariffs, and copies in --invoices issued CNS invoices of
   October 2026 holding --lines lines in all, each line with its act (performer and
   modifiers), each invoice with its patient, coverage and stay.
2. In a fresh process (so that its peak RSS is the product's alone), as the application
   role (row-level security on): builds the batch, then freezes it (the business rules on
   every invoice, the XML written incrementally with each invoice checked against the
   schema, hashed, and stored as 1 MiB pieces). Prints seconds, MB/s and peak RSS.
3. In another fresh process, the ceiling: lxml's incremental writer producing the same
   elements from the same values held in memory, with no database and no validation.

Target: the whole batch in under 45 s with peak RSS under 300 MB.
"""

import argparse
import asyncio
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import asyncpg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from api import drop_database, make_database, run_cli  # noqa: E402
from lxml import etree  # noqa: E402

from luxfact.claims import xml  # noqa: E402
from luxfact.claims.document import ClaimInvoice, ClaimLine, ClaimStay  # noqa: E402
from luxfact.kit.time import LUXEMBOURG  # noqa: E402
from luxfact.patients.matricule import complete  # noqa: E402

PERIOD = "2026-10"
# Insurer-billed codes of the demo catalogue, with their price in cents (the stored
# amounts are not priced again by the batch: only their validity on the day is checked).
CODES = (("V1", 1234), ("N101", 425), ("N104", 217), ("N202", 917), ("1D21", 1601),
         ("6G31", 6404), ("F20", 14176))
PERFORMER = "12345678"


def shape(invoices: int, lines: int) -> Iterator[int]:
    """Lines per invoice: as even as the totals allow."""
    base, extra = divmod(lines, invoices)
    for i in range(invoices):
        yield base + (1 if i < extra else 0)


def rss_mb() -> float:
    """Peak resident memory of this process. VmHWM, not getrusage: ru_maxrss survives
    exec, so a child would report the seeding parent's peak."""
    for row in Path("/proc/self/status").read_text().splitlines():
        if row.startswith("VmHWM:"):
            return int(row.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ------------------------------------------------------------------------------ seeding


async def seed(dsn: str, tenant_id: uuid.UUID, invoices: int, lines: int) -> None:
    """Patients, coverages, stays, acts, invoices and their lines, copied in."""
    now = datetime.now(UTC)
    conn = await asyncpg.connect(dsn)
    try:
        patients, coverages, stays, acts, heads, rows = [], [], [], [], [], []
        for i, count in enumerate(shape(invoices, lines)):
            # Born from 2018 on: no matricule can be one of the API benchmark's synthetic
            # patients (born before 2018), which benchmarks/desk.py adds beside these.
            birth = date(2018, 1, 1) + timedelta(days=i % 1000)
            patient_id, stay_id, coverage_id, invoice_id = (uuid.uuid4() for _ in range(4))
            admitted = datetime(2026, 9, 20, 8, 0, tzinfo=LUXEMBOURG) + timedelta(minutes=i)
            discharged = admitted + timedelta(days=10)
            patients.append((tenant_id, patient_id, complete(birth.strftime("%Y%m%d")
                                                             + f"{i // 1000:03d}"),
                             "Muller", f"Anne{i}", "muller", f"anne{i}", birth, "F", "fr",
                             "1, rue du Test", "L-1000", "Luxembourg", "LU", "", "", 1, now,
                             now))
            coverages.append((tenant_id, coverage_id, patient_id, "statutory", "CNS",
                              f"M{i:07d}", False, date(2020, 1, 1), now))
            stays.append((tenant_id, stay_id, patient_id, "inpatient", "closed", admitted,
                          discharged, "MED", "1", "A", "second", False, False, 1, now, now))
            total = gross = 0
            for seq in range(1, count + 1):
                code, cents = CODES[seq % len(CODES)]
                day = admitted.date() + timedelta(days=seq % 10)
                act_id = uuid.uuid4()
                acts.append((tenant_id, act_id, stay_id, code,
                             datetime.combine(day, admitted.timetz()), PERFORMER, 1, "[]", "",
                             "invoiced", invoice_id, "bench", cents, cents, 0, "{}", 1, now,
                             now))
                rows.append((tenant_id, invoice_id, seq, act_id, "insurer", code, code, code,
                             day, day, 1, cents, cents, cents, 0, cents, "{}"))
                total += cents
                gross += cents
            issued = datetime(2026, 10, 1, 9, tzinfo=UTC) + timedelta(seconds=60 * i)
            heads.append((tenant_id, invoice_id, "invoice", "insurer", "CNS", coverage_id,
                          "final", stay_id, patient_id, f"2026-B{i + 1:07d}", 2026, i + 1,
                          issued, issued.date(), admitted.date(), discharged.date(), "fr",
                          "EUR", total, gross, "", f"RF18B{i + 1:07d}", 0, 0, "bench", 1,
                          now))
        for table, records, columns in (
            ("patients", patients, [
                "tenant_id", "id", "matricule", "family_name", "given_name", "family_folded",
                "given_folded", "birth_date", "sex", "language", "street", "postal_code",
                "city", "country", "phone", "email", "version", "created_at", "updated_at"]),
            ("coverages", coverages, [
                "tenant_id", "id", "patient_id", "kind", "payer", "member_number",
                "first_class", "valid_from", "created_at"]),
            ("stays", stays, [
                "tenant_id", "id", "patient_id", "kind", "state", "admitted_at",
                "discharged_at", "unit", "room", "bed", "room_class", "childbirth",
                "psychiatric", "version", "created_at", "updated_at"]),
            ("invoices", heads, [
                "tenant_id", "id", "doc_type", "kind", "payer", "coverage_id", "billing",
                "stay_id", "patient_id", "number", "year", "seq", "issued_at", "issued_on",
                "period_from", "period_to", "language", "currency", "total_cents",
                "gross_cents", "reason", "reference", "paid_cents", "credited_cents", "actor",
                "version", "created_at"]),
            ("acts", acts, [
                "tenant_id", "id", "stay_id", "code", "performed_at", "performer", "quantity",
                "modifiers", "note", "state", "invoice_id", "tariff_version", "gross_cents",
                "insurer_cents", "patient_cents", "pricing", "version", "created_at",
                "updated_at"]),
            ("invoice_lines", rows, [
                "tenant_id", "invoice_id", "seq", "act_id", "part", "code", "label_fr",
                "label_de", "day", "last_day", "quantity", "unit_price_cents", "gross_cents",
                "insurer_cents", "patient_cents", "amount_cents", "pricing"]),
        ):
            await conn.copy_records_to_table(table, records=records, columns=columns)
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


# ---------------------------------------------------------------- the product (own process)


async def product(database_url: str, tenant_id: uuid.UUID) -> dict:
    from luxfact.claims import service
    from luxfact.claims.schemas import BatchIn
    from luxfact.db.engine import Database
    from luxfact.kit import context
    from luxfact.settings import load_settings
    from luxfact.tenancy.service import tenant_by_id

    settings = load_settings(database_url=database_url)
    db = Database(settings.effective_app_database_url, pool_size=2)
    figures: dict = {"rss_start_mb": rss_mb()}
    with context.tenant_scope(tenant_id, actor="bench"):
        started = time.perf_counter()
        async with db.transaction() as session:
            tenant = await tenant_by_id(session, tenant_id)
            assert tenant is not None
            batch, _ = await service.build(session, tenant, BatchIn(payer="CNS",
                                                                    period=PERIOD), "bench")
        figures["build_s"] = time.perf_counter() - started
        started = time.perf_counter()
        async with db.transaction() as session:
            frozen = await service.freeze(session, tenant, batch.id)
        figures["freeze_s"] = time.perf_counter() - started
    figures.update(invoices=frozen.invoice_count, lines=frozen.line_count, size=frozen.size,
                   net=str(Decimal(frozen.net_cents) / 100), sha256=frozen.sha256,
                   rss_mb=rss_mb())
    await db.dispose()
    return figures


# -------------------------------------------------------------------- the ceiling (own process)


def same_invoices(invoices: int, lines: int) -> Iterator[ClaimInvoice]:
    """The values the product writes, made in memory one invoice at a time."""
    for i, count in enumerate(shape(invoices, lines)):
        birth = date(2018, 1, 1) + timedelta(days=i % 1000)
        admitted = datetime(2026, 9, 20, 8, 0, tzinfo=LUXEMBOURG) + timedelta(minutes=i)
        claim_lines = []
        for seq in range(1, count + 1):
            code, cents = CODES[seq % len(CODES)]
            amount = Decimal(cents) / 100
            claim_lines.append(ClaimLine(
                reference=str(seq), code=code, modifiers=(),
                day=admitted.date() + timedelta(days=seq % 10), quantity=1, gross=amount,
                net=amount, performer=PERFORMER))
        yield ClaimInvoice(
            number=f"2026-B{i + 1:07d}", matricule=complete(birth.strftime("%Y%m%d")
                                                             + f"{i // 1000:03d}"),
            issued_on=date(2026, 10, 1),
            stay=ClaimStay(reference=str(uuid.uuid4()), kind="inpatient", admitted_at=admitted,
                           discharged_at=admitted + timedelta(days=10), unit="MED",
                           room_class="second", payer="CNS", member_number=f"M{i:07d}",
                           accident_number=None),
            lines=tuple(claim_lines))


def ceiling(invoices: int, lines: int) -> dict:
    started = time.perf_counter()
    with tempfile.TemporaryFile() as out:
        with etree.xmlfile(out, encoding="UTF-8") as xf:
            xf.write_declaration()
            with xf.element(f"{{{xml.CLAIM_NS}}}decompteFacturation", version=xml.VERSION,
                            nsmap={None: xml.CLAIM_NS}):
                for invoice in same_invoices(invoices, lines):
                    xf.write(xml._facture(invoice))
        size = out.tell()
    return {"ceiling_s": time.perf_counter() - started, "size": size, "rss_mb": rss_mb()}


# ----------------------------------------------------------------------------------- main


def child(*args: str) -> dict:
    result = subprocess.run([sys.executable, __file__, *args], capture_output=True,
                            text=True)
    if result.returncode:
        raise SystemExit(f"{args[0]} failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


async def main(args: argparse.Namespace) -> None:
    print(f"# {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, "
          f"{args.invoices:,} invoices, {args.lines:,} lines")
    name, dsn = await make_database()
    owner = "postgresql+asyncpg://" + dsn.split("://", 1)[1]
    env = {**os.environ, "LUXFACT_DATABASE_URL": owner}
    try:
        run_cli(env, "db", "upgrade")
        run_cli(env, "tenants", "sync")
        run_cli(env, "demo")  # the demo tariffs
        conn = await asyncpg.connect(dsn)
        tenant_id = await conn.fetchval("SELECT id FROM tenants WHERE slug = 'demo-nord'")
        await conn.close()
        started = time.perf_counter()
        await seed(dsn, tenant_id, args.invoices, args.lines)
        print(f"seeded  : {args.invoices:,} invoices, {args.lines:,} lines with their acts in "
              f"{time.perf_counter() - started:.1f} s")

        ours = child("product", owner, str(tenant_id))
        total = ours["build_s"] + ours["freeze_s"]
        mb = ours["size"] / 1e6
        print(f"product : build {ours['build_s']:.1f} s, validate + write + check + store "
              f"{ours['freeze_s']:.1f} s = {total:.1f} s for {ours['invoices']:,} invoices, "
              f"{ours['lines']:,} lines, {mb:.0f} MB ({mb / ours['freeze_s']:.1f} MB/s); "
              f"peak RSS {ours['rss_mb']:.0f} MB (at start {ours['rss_start_mb']:.0f} MB)")
        bare = child("ceiling", str(args.invoices), str(args.lines))
        bare_mb = bare["size"] / 1e6
        print(f"ceiling : lxml alone {bare['ceiling_s']:.1f} s for {bare_mb:.0f} MB "
              f"({bare_mb / bare['ceiling_s']:.1f} MB/s), peak RSS {bare['rss_mb']:.0f} MB")
        print(f"ratio   : {bare['ceiling_s'] / total:.2f} of the ceiling's speed; the whole "
              f"batch {total:.1f} s (target < 45 s, ratio {total / 45:.2f} of the budget), "
              f"peak RSS {ours['rss_mb']:.0f} MB (target < 300 MB)")
        conn = await asyncpg.connect(dsn)
        pieces = await conn.fetch("SELECT data FROM claim_file_chunks ORDER BY n")
        await conn.close()
        digest = hashlib.sha256()
        for piece in pieces:
            digest.update(piece["data"])
        del pieces
        print(f"check   : net {ours['net']} EUR, stored file SHA-256 "
              f"{'matches' if digest.hexdigest() == ours['sha256'] else 'DIFFERS'}")
    finally:
        await drop_database(name)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "product":
        print(json.dumps(asyncio.run(product(sys.argv[2], uuid.UUID(sys.argv[3])))))
    elif len(sys.argv) > 1 and sys.argv[1] == "ceiling":
        print(json.dumps(ceiling(int(sys.argv[2]), int(sys.argv[3]))))
    else:
        parser = argparse.ArgumentParser(description=__doc__,
                                         formatter_class=argparse.RawDescriptionHelpFormatter)
        parser.add_argument("--invoices", type=int, default=30_000)
        parser.add_argument("--lines", type=int, default=1_000_000)
        asyncio.run(main(parser.parse_args()))

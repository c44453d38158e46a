"""Desk benchmark: every page rendered by the server, with 200,000 patients and 1,000,000 acts.

    .venv/bin/python benchmarks/desk.py [--rounds 30]

1. Creates a fresh PostgreSQL database (LUXFACT_TEST_POSTGRES_URL's server), migrates it,
   loads the demo hospitals, tariffs and users, and copies in 30,000 stays with 1,000,000
   acts billed on 30,000 CNS invoices (the claims benchmark's data) and 170,000 more
   patients (the API benchmark's synthetic names): 200,000 patients in all; the month's
   claim batch (30,000 invoices, 1,000,000 lines) is built and frozen.
2. Starts `luxfact serve` (1 worker, the application role: row-level security on), logs in
   as the demo clerk, billing officer and administrator of demo-nord.
3. For each page: --rounds sequential requests from one keep-alive connection, after 3
   warm-up requests: p50 and p99 of the time from sending the request to reading the whole
   page, against the 100 ms budget; the ceiling is the same server's `/healthz` measured
   the same way. Then search-as-you-type: the search partial for a name typed letter by
   letter (and a matricule and a birth date), end to end.
"""

import argparse
import asyncio
import os
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import asyncpg
import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from api import (  # noqa: E402
    Connection,
    drop_database,
    free_port,
    make_database,
    percentile,
    prepare,
    seed_postgres,
    serve,
    wait_ready,
)
from claims import product as freeze_month  # noqa: E402
from claims import seed as seed_billed  # noqa: E402

from luxfact.auth.roles import Role  # noqa: E402
from luxfact.cli.demo import demo_email, demo_password  # noqa: E402

BUDGET_MS = 100.0
SLUG = "demo-nord"


def log_in(url: str, role: Role) -> str:
    """The session cookie of the demo user of `role`."""
    with httpx.Client(base_url=url) as client:
        page = client.get("/login")
        assert page.status_code == 200
        done = client.post("/login", data={"hospital": SLUG, "email": demo_email(SLUG, role),
                                           "password": demo_password(SLUG, role),
                                           "next": "/desk"})
        assert done.status_code == 303, done.text
        return f"luxfact_session={client.cookies['luxfact_session']}"


async def timed(port: int, cookie: str, path: str, rounds: int) -> tuple[list[float], int]:
    conn = Connection("127.0.0.1", port, {"Cookie": cookie} if cookie else {})
    try:
        status = 0
        for _ in range(3):
            status, _ = await conn.request("GET", path)
        samples = []
        for _ in range(rounds):
            started = time.perf_counter()
            status, _ = await conn.request("GET", path)
            samples.append((time.perf_counter() - started) * 1000)
        return samples, status
    finally:
        conn.close()


async def ids(dsn: str, tenant_id: uuid.UUID) -> dict[str, str]:
    conn = await asyncpg.connect(dsn)
    try:
        invoice = await conn.fetchrow(
            "SELECT id, patient_id, stay_id FROM invoices WHERE tenant_id = $1 "
            "ORDER BY seq DESC LIMIT 1", tenant_id)
        batch = await conn.fetchval("SELECT id FROM claim_batches WHERE tenant_id = $1",
                                    tenant_id)
        return {"patient": str(invoice["patient_id"]), "stay": str(invoice["stay_id"]),
                "invoice": str(invoice["id"]), "batch": str(batch)}
    finally:
        await conn.close()


def pages(found: dict[str, str]) -> list[tuple[Role, str]]:
    return [
        (Role.clerk, "/desk"),
        (Role.clerk, "/desk/patients"),
        (Role.clerk, f"/desk/patients/{found['patient']}"),
        (Role.clerk, f"/desk/stays/{found['stay']}"),
        (Role.clerk, "/desk/stays"),
        (Role.billing, "/desk/billing"),
        (Role.billing, "/desk/invoices"),
        (Role.billing, "/desk/invoices?status=overdue"),
        (Role.billing, f"/desk/invoices/{found['invoice']}"),
        (Role.billing, "/desk/claims"),
        (Role.billing, f"/desk/claims/{found['batch']}"),
        (Role.billing, f"/desk/claims/{found['batch']}/reconciliation"),
        (Role.billing, "/desk/claim-lines"),
        (Role.billing, "/desk/dashboard"),
        (Role.billing, "/desk/dashboard?refresh=1"),  # computed anew, not from the cache
        (Role.admin, "/desk/admin/users"),
        (Role.admin, "/desk/admin/audit"),
        (Role.admin, "/desk/admin/hospital"),
    ]


SEARCH = "/desk/patients/search?q="  # the search-as-you-type partial
TYPED = ["M", "Mu", "Mul", "Mull", "Mulle", "Muller", "Muller A", "Muller An",
         "19850312", "1985-03-12"]


async def main(args: argparse.Namespace) -> None:
    print(f"# {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, "
          f"{args.rounds} requests per page")
    name, dsn = await make_database()
    owner = "postgresql+asyncpg://" + dsn.split("://", 1)[1]
    env = {**os.environ, "LUXFACT_DATABASE_URL": owner,
           "LUXFACT_SECRET_KEY": "bench-secret-key-1234"}
    server = None
    try:
        prepare(env)
        conn = await asyncpg.connect(dsn)
        tenant_id = await conn.fetchval("SELECT id FROM tenants WHERE slug = $1", SLUG)
        await conn.close()
        started = time.perf_counter()
        await seed_billed(dsn, tenant_id, 30_000, 1_000_000)
        await seed_postgres(dsn, tenant_id, 170_000)
        conn = await asyncpg.connect(dsn)
        counts = await conn.fetchrow(
            "SELECT (SELECT count(*) FROM patients) AS patients, "
            "(SELECT count(*) FROM acts) AS acts")
        await conn.close()
        print(f"seeded  : {counts['patients']:,} patients, {counts['acts']:,} acts in "
              f"{time.perf_counter() - started:.0f} s")
        started = time.perf_counter()
        await freeze_month(owner, tenant_id)  # the month's claim batch, frozen
        print(f"batch   : 30,000 invoices frozen into a claim batch in "
              f"{time.perf_counter() - started:.0f} s")
        found = await ids(dsn, tenant_id)
        port = free_port()
        server = serve(env, port, 1)
        url = f"http://127.0.0.1:{port}"
        wait_ready(url)
        cookies = {role: log_in(url, role) for role in (Role.clerk, Role.billing, Role.admin)}

        floor, _ = await timed(port, "", "/healthz", args.rounds)
        ceiling = percentile(floor, 99)
        print(f"ceiling : /healthz p50 {statistics.median(floor):.1f} ms, p99 {ceiling:.1f} ms")
        worst = 0.0
        for role, path in pages(found):
            samples, status = await timed(port, cookies[role], path, args.rounds)
            p99 = percentile(samples, 99)
            worst = max(worst, p99)
            print(f"page    : {path[:60]:60} {status} p50 {statistics.median(samples):6.1f} ms"
                  f"  p99 {p99:6.1f} ms  ({p99 / BUDGET_MS:.2f} of the budget)")
        typed = []
        for text in TYPED:
            samples, status = await timed(port, cookies[Role.clerk], SEARCH + quote(text),
                                          max(5, args.rounds // 3))
            assert status == 200, (text, status)
            typed.extend(samples)
        print(f"search  : as you type ({len(TYPED)} prefixes, names, matricule, birth date): "
              f"p50 {statistics.median(typed):.1f} ms, p99 {percentile(typed, 99):.1f} ms "
              f"(target < {BUDGET_MS:.0f} ms)")
        print(f"verdict : slowest page p99 {worst:.1f} ms, {worst / BUDGET_MS:.2f} of the "
              f"{BUDGET_MS:.0f} ms budget (the server's floor, /healthz p99, is "
              f"{ceiling:.1f} ms)")
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=20)
        await drop_database(name)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=30)
    asyncio.run(main(parser.parse_args()))

"""Soak: a mixed workload at a fixed rate against `luxfact serve --workers 2` for 10 minutes.

    .venv/bin/python benchmarks/soak.py [--seconds 600] [--rate 60] [--connections 16]

1. Creates a fresh PostgreSQL database (LUXFACT_TEST_POSTGRES_URL's server), migrates it,
   loads the demo hospitals, tariffs, users and keys; copies in 20,000 patients to search
   and --rate × --seconds / 20 discharged stays with their acts, ready to bill.
2. Starts `luxfact serve --workers 2` as the application role.
3. Sends --rate operations a second, on a fixed schedule, from --connections keep-alive
   connections of this process: 80 % reads (API patient search, a stay, the invoice list,
   the desk's search as you type), 5 % desk writes (a patient created through the desk's
   form, with its session cookie, form token and idempotency key), 10 % HL7 messages (an
   A01 of a new patient over HTTP), 5 % invoice issuing (a final bill of a waiting stay).
4. Reports throughput, p50/p99 per operation, errors (target: none), and the resident
   memory of the two web processes after the first minute and at the end (target: growth
   under 10 %).
"""

import argparse
import asyncio
import os
import random
import re
import statistics
import sys
import time
import uuid
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from urllib.parse import quote, urlencode

import asyncpg
import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from api import (  # noqa: E402
    FAMILY,
    drop_database,
    free_port,
    make_database,
    percentile,
    prepare,
    seed_postgres,
    serve,
    wait_ready,
)

from invoices import seed as seed_stays  # noqa: E402
from luxfact.auth.roles import Role  # noqa: E402
from luxfact.cli.demo import demo_email, demo_password  # noqa: E402
from luxfact.kit.time import LUXEMBOURG  # noqa: E402
from luxfact.patients.matricule import complete  # noqa: E402

SLUG = "demo-nord"
MIX = [("read", 80), ("desk_write", 5), ("hl7", 10), ("issue", 5)]


class Http:
    """A keep-alive HTTP/1.1 connection that sends any body and headers (the API
    benchmark's is JSON only)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: bytes = b"",
                      headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        head = (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}"
                f"Content-Length: {len(body)}\r\n\r\n")
        self.writer.write(head.encode() + body)
        assert self.reader is not None
        status = int((await self.reader.readline()).split()[1])
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            if name.lower() == "content-length":
                length = int(value)
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def rss_mb(pid: int) -> float:
    for row in Path(f"/proc/{pid}/status").read_text().splitlines():
        if row.startswith("VmRSS:"):
            return int(row.split()[1]) / 1024
    return 0.0


def web_workers(supervisor: int) -> list[int]:
    """The processes whose parent is `supervisor` (uvicorn's workers), from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == supervisor:
            found.append(int(stat.parent.name))
    return sorted(found)


def desk_session(url: str) -> tuple[str, str]:
    """The clerk's session cookie and form token."""
    with httpx.Client(base_url=url) as client:
        done = client.post("/login", data={"hospital": SLUG,
                                           "email": demo_email(SLUG, Role.clerk),
                                           "password": demo_password(SLUG, Role.clerk),
                                           "next": "/desk"})
        assert done.status_code == 303, done.text
        page = client.get("/desk/patients/new")
        token = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert token
        return f"luxfact_session={client.cookies['luxfact_session']}", token.group(1)


def _segment(name: str, values: dict[int, str]) -> str:
    fields = [name] + [""] * max(values)
    for position, value in values.items():
        fields[position] = value
    return "|".join(fields)


def a01(n: int) -> bytes:
    """An admission of a new patient (with a matricule of their own) and a CNS coverage."""
    stamp = datetime.now(LUXEMBOURG).strftime("%Y%m%d%H%M%S")
    birth = date(1950, 1, 1) + timedelta(days=n // 900)
    matricule = complete(birth.strftime("%Y%m%d") + f"{100 + n % 900:03d}")
    return ("\r".join([
        "|".join(["MSH", "^~\\&", "HIS", "NORDHIS", "LUXFACT", "LUX", stamp, "",
                  "ADT^A01^ADT_A01", f"SOAK{n:08d}", "P", "2.5"]),
        f"EVN|A01|{stamp}|||||{stamp}",
        f"PID|1||{matricule}^^^CNS^NN||{random.choice(FAMILY)}^Soak||"
        f"{birth.strftime('%Y%m%d')}|F",
        _segment("PV1", {1: "1", 2: "I", 3: "MED^204^A", 19: f"SOAK-{n:08d}", 44: stamp}),
        _segment("IN1", {1: "1", 3: "CNS", 4: "CNS", 12: "20200101"}),
    ]) + "\r").encode()


async def main(args: argparse.Namespace) -> None:
    print(f"# {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, "
          f"{args.rate} operations/s for {args.seconds} s, {args.connections} connections, "
          f"luxfact serve --workers 2 on PostgreSQL")
    name, dsn = await make_database()
    owner = "postgresql+asyncpg://" + dsn.split("://", 1)[1]
    env = {**os.environ, "LUXFACT_DATABASE_URL": owner,
           "LUXFACT_SECRET_KEY": "soak-secret-key-12345"}
    server = None
    try:
        keys = prepare(env)
        conn = await asyncpg.connect(dsn)
        tenant_id = await conn.fetchval("SELECT id FROM tenants WHERE slug = $1", SLUG)
        await conn.close()
        await seed_postgres(dsn, tenant_id, 20_000)
        waiting = await seed_stays(dsn, tenant_id, args.rate * args.seconds // 20 + 50)
        random.shuffle(waiting)
        port = free_port()
        server = serve(env, port, 2)
        url = f"http://127.0.0.1:{port}"
        wait_ready(url)
        api_key = {"Authorization": f"Bearer {keys[(SLUG, 'clerk')]}"}
        billing = {"Authorization": f"Bearer {keys[(SLUG, 'billing')]}",
                   "Content-Type": "application/json"}
        hl7 = {"Authorization": f"Bearer {keys[(SLUG, 'integration')]}",
               "Content-Type": "text/plain"}
        cookie, csrf = desk_session(url)
        desk = {"Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"}
        stays = list(waiting[:200])

        latencies: dict[str, list[float]] = defaultdict(list)
        errors: dict[str, list[str]] = defaultdict(list)
        counter = iter(range(10**9))

        async def operation(http: Http, kind: str) -> None:
            n = next(counter)
            if kind == "read":
                which = n % 4
                if which == 0:
                    kind, call = "read: API patient search", (
                        "GET", f"/api/v1/patients?q={quote(random.choice(FAMILY))}", b"",
                        api_key)
                elif which == 1:
                    kind, call = "read: API stay", (
                        "GET", f"/api/v1/stays/{random.choice(stays)}", b"", api_key)
                elif which == 2:
                    kind, call = "read: API invoices", (
                        "GET", "/api/v1/invoices?limit=20", b"", billing)
                else:
                    kind, call = "read: desk search as you type", (
                        "GET", f"/desk/patients/search?q={quote(random.choice(FAMILY)[:3])}",
                        b"", {"Cookie": cookie})
            elif kind == "desk_write":
                body = urlencode({"csrf": csrf, "idem": uuid.uuid4().hex,
                                  "family_name": random.choice(FAMILY), "given_name": "Soak",
                                  "birth_date": "1980-01-01", "sex": "F",
                                  "no_matricule_reason": "foreign", "language": "fr"})
                call = ("POST", "/desk/patients/new", body.encode(), desk)
            elif kind == "hl7":
                call = ("POST", "/api/v1/hl7/v2", a01(n), hl7)
            else:
                if not waiting:
                    return
                stay = waiting.pop()
                call = ("POST", f"/api/v1/stays/{stay}/invoices", b'{"kind": "final"}',
                        billing)
            started = time.perf_counter()
            try:
                status, payload = await http.request(*call)
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                errors[kind].append(repr(exc))
                http.close()
                http.writer = None
                return
            latencies[kind].append((time.perf_counter() - started) * 1000)
            ok = status < 400 or (kind == "desk_write" and status == 303)
            if kind == "hl7" and b"MSA|AA" not in payload:
                ok = False
            if not ok:
                errors[kind].append(f"{status} {payload[:160]!r}")

        kinds = [kind for kind, weight in MIX for _ in range(weight)]
        queue: asyncio.Queue[str | None] = asyncio.Queue()

        async def connection() -> None:
            http = Http(port)
            while (kind := await queue.get()) is not None:
                await operation(http, kind)
            http.close()

        pool = [asyncio.create_task(connection()) for _ in range(args.connections)]
        workers = web_workers(server.pid)
        start_rss: dict[int, float] = {}
        started = time.monotonic()
        sent = 0
        late = 0
        while (elapsed := time.monotonic() - started) < args.seconds:
            due = int(elapsed * args.rate) + 1
            while sent < due:
                queue.put_nowait(random.choice(kinds))
                sent += 1
            if queue.qsize() > args.rate:  # more than a second behind the schedule
                late += 1
            if not start_rss and elapsed > 60:
                start_rss = {pid: rss_mb(pid) for pid in workers}
            await asyncio.sleep(1 / args.rate)
        for _ in pool:
            queue.put_nowait(None)
        await asyncio.gather(*pool)
        duration = time.monotonic() - started
        end_rss = {pid: rss_mb(pid) for pid in workers}

        done = sum(len(v) for v in latencies.values())
        print(f"load    : {done:,} operations answered in {duration:.0f} s = "
              f"{done / duration:.1f}/s (scheduled {args.rate}/s); behind schedule by more "
              f"than a second in {late} of {args.seconds * args.rate} ticks")
        for kind in sorted(latencies):
            values = latencies[kind]
            print(f"op      : {kind:34} {len(values):6,}  p50 {statistics.median(values):6.1f} "
                  f"ms  p99 {percentile(values, 99):7.1f} ms  errors {len(errors[kind])}")
        total_errors = sum(len(v) for v in errors.values())
        print(f"errors  : {total_errors} (target: none)")
        for kind, found in errors.items():
            for error in found[:3]:
                print(f"          {kind}: {error}")
        for pid in workers:
            before, after = start_rss.get(pid, 0.0), end_rss[pid]
            growth = (after - before) / before * 100 if before else float("nan")
            print(f"memory  : web process {pid}: {before:.0f} MB after the first minute, "
                  f"{after:.0f} MB at the end: {growth:+.1f} % (target < 10 %)")
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        await drop_database(name)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=600)
    parser.add_argument("--rate", type=int, default=60)
    parser.add_argument("--connections", type=int, default=16)
    asyncio.run(main(parser.parse_args()))

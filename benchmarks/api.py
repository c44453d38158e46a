"""API benchmark: the product against a bare Starlette + asyncpg endpoint, same machine, same run.

    .venv/bin/python benchmarks/api.py [--seconds 20] [--connections 64] [--warmup 10]
                                       [--rounds 1] [--patients 200000]

1. Creates a fresh PostgreSQL database (LUXFACT_TEST_POSTGRES_URL's server), migrates it,
   loads the demo hospitals, tariffs and keys (after the warm-up, ANALYZE: what autovacuum
   would have done), and starts `luxfact serve --workers 2` as the
   application role (row-level security on), plus the bare app (benchmarks/bare_app.py, also
   2 workers) inserting one row per request under the same tenant setting.
2. From a separate process, 64 connections for a fixed duration: the product's scenario
   (create a patient, admit, record 10 acts, read the stay) and the bare insert. Prints
   req/s, p50 and p99 for each and the ratio (target ≥ 0.3).
3. The product at a fixed rate of 200 requests/s: p99 (target < 50 ms).
4. Patient search at 200,000 patients through the API, on PostgreSQL and on SQLite:
   p50/p99 of the end-to-end latency (target < 50 ms).

Latencies are measured by the client from sending a request to reading its answer.
"""

import argparse
import asyncio
import json
import os
import random
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

import asyncpg
import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from luxfact.kit.text import fold  # noqa: E402
from luxfact.patients.matricule import complete  # noqa: E402
from luxfact.patients.search import name_keys  # noqa: E402

PG_URL = os.environ.get("LUXFACT_TEST_POSTGRES_URL",
                        "postgresql://postgres@127.0.0.1:5432/postgres")
BIN = Path(sys.executable).parent
ACTS = ["N101", "N104", "N202", "N205", "CP2", "CP3", "N101", "N104", "N202", "N205"]
FAMILY = ["Muller", "Schmit", "Weber", "Wagner", "Hoffmann", "Thill", "Kremer", "Meyer",
          "Schroeder", "Klein", "Reuter", "Majerus", "Schiltz", "Steffen", "Becker", "Goergen",
          "Ferreira", "Da Silva", "Dos Santos", "Pereira", "Rodrigues", "Martins", "Lopes",
          "Fernandes", "Gonçalves", "Marques", "Dupont", "Lambert", "Bernard", "François"]
GIVEN = ["Anne", "Marie", "Jean", "Paul", "Luc", "Léa", "Tom", "Emma", "Noah", "Laura",
         "Sophie", "Ben", "Max", "Julie", "Sarah", "David", "Pedro", "Ana", "João", "Inês"]


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ready(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer")


def run_cli(env: dict[str, str], *args: str) -> str:
    result = subprocess.run([str(BIN / "luxfact"), *args], env=env, capture_output=True,
                            text=True, check=True)
    return result.stdout


def demo_keys(output: str) -> dict[tuple[str, str], str]:
    keys = {}
    for line in output.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2].startswith("lfx_"):
            keys[(parts[0], parts[1])] = parts[2]
    return keys


# --- load generator (runs in its own process: `api.py load ...`) -------------------------

class Connection:
    """A minimal keep-alive HTTP/1.1 client connection: httpx's pool, at 64 connections,
    costs more CPU than the servers it measures on this 2-core machine."""

    def __init__(self, host: str, port: int, headers: dict[str, str]) -> None:
        self.host, self.port = host, port
        self.extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: object | None = None
                      ) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        payload = b"" if body is None else json.dumps(body).encode()
        head = (f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\n{self.extra}"
                f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n")
        self.writer.write(head.encode() + payload)
        assert self.reader is not None
        status_line = await self.reader.readline()
        status = int(status_line.split()[1])
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            if name.lower() == "content-length":
                length = int(value)
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()

async def product_flow(conn: Connection, latencies: list[float], deadline: float,
                       pace: asyncio.Semaphore | None, first_stay: str, skip: int) -> int:
    """The scenario on one connection, from act number `skip` of an already admitted stay.

    Connections start at different points of the scenario: started together at its first
    step, 64 paced clients stay in step, and every patient and admission of a round (the two
    heaviest requests) would come within the same fraction of a second: a burst that no
    fixed rate of the scenario's mix contains.
    """
    done = 0

    async def call(method: str, url: str, body: object | None = None) -> dict:
        nonlocal done
        if pace is not None:
            await pace.acquire()
        started = time.perf_counter()
        status, payload = await conn.request(method, url, body)
        latencies.append(time.perf_counter() - started)
        if status >= 400:
            raise RuntimeError(f"{method} {url}: {status} {payload[:200]!r}")
        done += 1
        return json.loads(payload)

    now = datetime.now(UTC)
    stay_id, acts = first_stay, ACTS[skip:]
    while time.monotonic() < deadline:
        for code in acts:
            await call("POST", f"/api/v1/stays/{stay_id}/acts", {
                "code": code, "performed_at": (now - timedelta(hours=1)).isoformat()})
        await call("GET", f"/api/v1/stays/{stay_id}")
        if time.monotonic() >= deadline:
            break
        patient = await call("POST", "/api/v1/patients", new_patient())
        stay_id = (await call("POST", "/api/v1/stays", new_stay(patient["id"], now)))["id"]
        acts = ACTS
    return done


def new_patient() -> dict[str, str]:
    return {"no_matricule_reason": "foreign", "family_name": random.choice(FAMILY),
            "given_name": random.choice(GIVEN), "birth_date": "1970-01-01", "sex": "F"}


def new_stay(patient_id: str, now: datetime) -> dict[str, str]:
    return {"patient_id": patient_id, "kind": "inpatient",
            "admitted_at": (now - timedelta(hours=2)).isoformat(), "unit": "MED"}


async def first_stay(conn: Connection) -> str:
    """A patient admitted before the measurement starts, for a connection to begin with."""
    status, payload = await conn.request("POST", "/api/v1/patients", new_patient())
    assert status == 201, payload[:200]
    status, payload = await conn.request(
        "POST", "/api/v1/stays", new_stay(json.loads(payload)["id"], datetime.now(UTC)))
    assert status == 201, payload[:200]
    return json.loads(payload)["id"]


async def bare_flow(conn: Connection, latencies: list[float], deadline: float) -> int:
    done = 0
    while time.monotonic() < deadline:
        started = time.perf_counter()
        status, _ = await conn.request("POST", "/bare", {"family_name": "Muller"})
        latencies.append(time.perf_counter() - started)
        if status != 201:
            raise RuntimeError(f"bare: {status}")
        done += 1
    return done


async def load(args: argparse.Namespace) -> dict[str, float]:
    latencies: list[float] = []
    pace: asyncio.Semaphore | None = None
    refill: asyncio.Task | None = None
    if args.rate:
        pace = asyncio.Semaphore(0)

        async def tokens() -> None:
            interval = 1 / args.rate
            next_at = time.perf_counter()
            while True:
                next_at += interval
                await asyncio.sleep(max(0, next_at - time.perf_counter()))
                pace.release()

    host, port = args.url.removeprefix("http://").split(":")
    headers = {"Authorization": f"Bearer {args.key}"} if args.key else {}
    connections = [Connection(host, int(port), headers) for _ in range(args.connections)]
    stays: list[str] = []
    if args.target == "product":
        stays = await asyncio.gather(*(first_stay(c) for c in connections))
    if pace is not None:  # tokens from now on only: none piled up during the set-up
        refill = asyncio.create_task(tokens())
    started = time.monotonic()
    deadline = started + args.seconds
    if args.target == "bare":
        counts = await asyncio.gather(*(bare_flow(c, latencies, deadline) for c in connections))
    else:
        # Each connection starts at its own point of the scenario (see product_flow).
        counts = await asyncio.gather(*(
            product_flow(c, latencies, deadline, pace, stay, random.randrange(len(ACTS) + 1))
            for c, stay in zip(connections, stays, strict=True)))
    elapsed = time.monotonic() - started
    for connection in connections:
        connection.close()
    if refill:
        refill.cancel()
    return {"requests": sum(counts), "seconds": elapsed, "rps": sum(counts) / elapsed,
            "p50_ms": percentile(latencies, 50) * 1000, "p99_ms": percentile(latencies, 99) * 1000}


def run_load(url: str, target: str, seconds: int, connections: int, key: str = "",
             rate: int = 0) -> dict[str, float]:
    command = [sys.executable, __file__, "load", "--url", url, "--target", target,
               "--seconds", str(seconds), "--connections", str(connections), "--key", key,
               "--rate", str(rate)]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return json.loads(output.strip().splitlines()[-1])


# --- patients for the search measurement --------------------------------------------------

def synthetic_patients(count: int, tenant_id: uuid.UUID) -> tuple[list[tuple], list[tuple]]:
    rng = random.Random(7)
    now = datetime.now(UTC)
    patients, keys = [], []
    seen: set[str | None] = set()
    for i in range(count):
        # Vary family names beyond the base list so prefixes and typos have to discriminate.
        family = f"{rng.choice(FAMILY)}{'' if i % 3 else rng.choice(['', 'er', 'y', 'ing'])}"
        given = rng.choice(GIVEN)
        birth = date(1930, 1, 1) + timedelta(days=rng.randrange(32000))
        patient_id = uuid.uuid4()
        # Unique: the sequence number and the birth date both derive from i.
        matricule = complete(birth.strftime("%Y%m%d") + f"{i % 1000:03d}") if i % 10 else None
        if matricule in seen:
            matricule = None
        seen.add(matricule)
        patients.append((tenant_id, patient_id, matricule, None if matricule else "foreign",
                         family, given, fold(family), fold(given), birth, "F", "fr", now, now))
        keys.extend((tenant_id, k, patient_id, fold(family), fold(given))
                    for k in name_keys(family))
    return patients, keys


PATIENT_COLUMNS = ("tenant_id", "id", "matricule", "no_matricule_reason", "family_name",
                   "given_name", "family_folded", "given_folded", "birth_date", "sex",
                   "language", "created_at", "updated_at")


async def seed_postgres(dsn: str, tenant_id: uuid.UUID, count: int) -> float:
    patients, keys = synthetic_patients(count, tenant_id)
    started = time.perf_counter()
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("ALTER TABLE patients DISABLE TRIGGER ALL")
        # The defaulted columns need values for COPY.
        rows = [(*p, "", "", "", "LU", "", "", 1) for p in patients]
        await conn.copy_records_to_table(
            "patients", records=rows,
            columns=[*PATIENT_COLUMNS, "street", "postal_code", "city", "country", "phone",
                     "email", "version"])
        await conn.copy_records_to_table(
            "patient_name_keys", records=keys,
            columns=["tenant_id", "key", "patient_id", "family_folded", "given_folded"])
        await conn.execute("ALTER TABLE patients ENABLE TRIGGER ALL")
        await conn.execute("ANALYZE patients; ANALYZE patient_name_keys")
    finally:
        await conn.close()
    return time.perf_counter() - started


STAMP = "%Y-%m-%d %H:%M:%S.%f"  # how SQLAlchemy stores a datetime in SQLite


def seed_sqlite(path: str, tenant_id: uuid.UUID, count: int) -> float:
    patients, keys = synthetic_patients(count, tenant_id)
    started = time.perf_counter()
    conn = sqlite3.connect(path)
    with conn:
        columns = [*PATIENT_COLUMNS, "street", "postal_code", "city", "country", "phone",
                   "email", "version"]
        conn.executemany(
            f"INSERT INTO patients ({', '.join(columns)}) VALUES "
            f"({', '.join('?' * len(columns))})",
            [(str(p[0].hex), p[1].hex, *p[2:8], p[8].isoformat(), p[9], p[10],
              p[11].strftime(STAMP), p[12].strftime(STAMP), "", "", "", "LU", "", "", 1)
             for p in patients])
        conn.executemany("INSERT INTO patient_name_keys (tenant_id, key, patient_id, "
                         "family_folded, given_folded) VALUES (?, ?, ?, ?, ?)",
                         [(t.hex, k, p.hex, f, g) for t, k, p, f, g in keys])
        conn.execute("ANALYZE")
    conn.close()
    return time.perf_counter() - started


def search_latency(url: str, key: str, rounds: int = 300) -> dict[str, float]:
    """Sequential searches from one keep-alive connection (TCP_NODELAY, as asyncio sets it;
    httpx's synchronous client showed a constant ~44 ms delayed-ACK stall against a
    multi-worker uvicorn here, which is the client's, not the server's)."""
    rng = random.Random(11)
    queries = []
    for _ in range(rounds):
        family = fold(rng.choice(FAMILY)).replace(" ", "")
        kind = rng.randrange(4)
        if kind == 0:
            queries.append({"q": family[:4]})  # typing: a prefix
        elif kind == 1:
            queries.append({"q": family[:2] + "x" + family[3:]})  # one typo
        elif kind == 2:
            queries.append({"q": f"{family} {fold(rng.choice(GIVEN))}"})
        else:
            queries.append({"q": family, "birth_date": (date(1930, 1, 1) + timedelta(
                days=rng.randrange(32000))).isoformat()})

    async def run() -> list[float]:
        host, port = url.removeprefix("http://").split(":")
        conn = Connection(host, int(port), {"Authorization": f"Bearer {key}"})
        latencies = []
        try:
            for i, params in enumerate([*queries[:20], *queries]):  # 20 to warm up
                path = "/api/v1/patients?" + urlencode({**params, "limit": 20})
                started = time.perf_counter()
                status, _ = await conn.request("GET", path)
                if status != 200:
                    raise RuntimeError(f"search answered {status}")
                if i >= 20:
                    latencies.append(time.perf_counter() - started)
        finally:
            conn.close()
        return latencies

    latencies = asyncio.run(run())
    return {"p50_ms": percentile(latencies, 50) * 1000, "p99_ms": percentile(latencies, 99) * 1000,
            "mean_ms": statistics.mean(latencies) * 1000}


def serve(env: dict[str, str], port: int, workers: int) -> subprocess.Popen:
    return subprocess.Popen([str(BIN / "luxfact"), "serve", "--port", str(port),
                             "--workers", str(workers)],
                            env={**env, "LUXFACT_LOG_LEVEL": "WARNING"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def prepare(env: dict[str, str]) -> dict[tuple[str, str], str]:
    run_cli(env, "db", "upgrade")
    run_cli(env, "tenants", "sync")
    return demo_keys(run_cli(env, "demo"))


def tenant_id_of(key: str) -> uuid.UUID:
    return uuid.UUID(hex=key.split("_")[1])


async def make_database() -> tuple[str, str]:
    name = f"luxfact_bench_{uuid.uuid4().hex[:8]}"
    admin = PG_URL.replace("postgresql+asyncpg://", "postgresql://")
    conn = await asyncpg.connect(admin)
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    return name, admin.rsplit("/", 1)[0] + "/" + name


async def drop_database(name: str) -> None:
    conn = await asyncpg.connect(PG_URL.replace("postgresql+asyncpg://", "postgresql://"))
    await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await conn.close()


def main(args: argparse.Namespace) -> None:
    print(f"# {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, "
          f"{args.seconds}s per run, {args.connections} connections")
    name, dsn = asyncio.run(make_database())
    env = {**os.environ, "LUXFACT_DATABASE_URL": dsn, "LUXFACT_SECRET_KEY": "bench-secret-key-1234"}
    processes: list[subprocess.Popen] = []
    try:
        keys = prepare(env)
        key = keys[("demo-nord", "integration")]
        tenant = tenant_id_of(key)
        asyncio.run(_bare_table(dsn))
        port, bare_port = free_port(), free_port()
        processes.append(serve(env, port, 2))
        app_dsn = dsn.replace("postgres@", "luxfact_app@")
        processes.append(subprocess.Popen(
            [sys.executable, str(ROOT / "benchmarks" / "bare_app.py"), str(bare_port), "2"],
            env={**env, "LUXFACT_BENCH_DSN": app_dsn, "LUXFACT_BENCH_TENANT": str(tenant),
                 "PYTHONPATH": f"{ROOT / 'benchmarks'}:{ROOT}"},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        url, bare_url = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{bare_port}"
        wait_ready(f"{url}/readyz")
        wait_ready(f"{bare_url}/bare")

        # Warm-up of both, unmeasured, at the measured concurrency: connection pools at
        # their full size, tables with statistics. After a light warm-up (3 s on 8
        # connections) the product's first measured run was often the slowest by far
        # (167 req/s, then 253 to 329 on the same server: docs/performance.md).
        run_load(url, "product", args.warmup, args.connections, key)
        run_load(bare_url, "bare", args.warmup, args.connections)
        # What autovacuum does within a minute on a production server (this machine's
        # cluster runs without it): statistics for the tables the warm-up filled, which also
        # drops the plans the workers' connections made while the tables held a few rows
        # (a stay lock at 20 ms instead of under 1 ms: docs/operations.md).
        asyncio.run(analyze(dsn))
        # Product and bare alternate, `--rounds` times: this machine has slow phases lasting
        # minutes, and a pair measured back to back shares its phase; the median pair is
        # the figure.
        ratios = []
        for _ in range(args.rounds):
            product = run_load(url, "product", args.seconds, args.connections, key)
            bare = run_load(bare_url, "bare", args.seconds, args.connections)
            ratios.append(product["rps"] / bare["rps"])
            print(f"saturation, product (scenario mix): {product['rps']:8.0f} req/s  "
                  f"p50 {product['p50_ms']:6.1f} ms  p99 {product['p99_ms']:7.1f} ms")
            print(f"saturation, bare insert (ceiling):  {bare['rps']:8.0f} req/s  "
                  f"p50 {bare['p50_ms']:6.1f} ms  p99 {bare['p99_ms']:7.1f} ms")
            print(f"ratio product/bare: {ratios[-1]:.2f}  (target >= 0.30)")
        if args.rounds > 1:
            print(f"ratio product/bare, median of {args.rounds} pairs: "
                  f"{statistics.median(ratios):.2f}  (target >= 0.30)")
        for _ in range(args.rounds):
            fixed = run_load(url, "product", args.seconds, args.connections, key, rate=200)
            print(f"fixed rate 200 req/s, product: achieved {fixed['rps']:.0f} req/s  "
                  f"p50 {fixed['p50_ms']:.1f} ms  p99 {fixed['p99_ms']:.1f} ms  "
                  "(target p99 < 50 ms)")

        if not args.patients:
            return
        seeded = asyncio.run(seed_postgres(dsn, tenant, args.patients))
        pg_search = search_latency(url, key)
        print(f"patient search, PostgreSQL, {args.patients:,} patients (seeded in {seeded:.0f}s):"
              f" p50 {pg_search['p50_ms']:.1f} ms  p99 {pg_search['p99_ms']:.1f} ms  "
              "(target < 50 ms)")
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=20)
        asyncio.run(drop_database(name))

    if not args.patients:
        return
    with tempfile.TemporaryDirectory() as tmp:
        db = f"{tmp}/bench.db"
        sqlite_env = {**os.environ, "LUXFACT_DATABASE_URL": f"sqlite:///{db}",
                      "LUXFACT_SECRET_KEY": "bench-secret-key-1234"}
        keys = prepare(sqlite_env)
        key = keys[("demo-nord", "integration")]
        seeded = seed_sqlite(db, tenant_id_of(key), args.patients)
        port = free_port()
        process = serve(sqlite_env, port, 1)
        try:
            wait_ready(f"http://127.0.0.1:{port}/readyz")
            result = search_latency(f"http://127.0.0.1:{port}", key)
        finally:
            process.terminate()
            process.wait(timeout=20)
        print(f"patient search, SQLite, {args.patients:,} patients (seeded in {seeded:.0f}s):"
              f" p50 {result['p50_ms']:.1f} ms  p99 {result['p99_ms']:.1f} ms  (target < 50 ms)")


async def analyze(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    await conn.execute("ANALYZE")
    await conn.close()


async def _bare_table(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    await conn.execute("CREATE TABLE bench_bare (tenant_id uuid NOT NULL, id uuid NOT NULL, "
                       "payload jsonb NOT NULL, PRIMARY KEY (tenant_id, id))")
    await conn.execute("ALTER TABLE bench_bare ENABLE ROW LEVEL SECURITY; "
                       "ALTER TABLE bench_bare FORCE ROW LEVEL SECURITY")
    await conn.execute("CREATE POLICY tenant_isolation ON bench_bare USING (tenant_id = "
                       "NULLIF(current_setting('app.tenant_id', true), '')::uuid)")
    await conn.execute("GRANT SELECT, INSERT ON bench_bare TO luxfact_app")
    await conn.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command")
    loader = sub.add_parser("load")
    loader.add_argument("--url", required=True)
    loader.add_argument("--target", choices=["product", "bare"], required=True)
    loader.add_argument("--seconds", type=int, default=20)
    loader.add_argument("--connections", type=int, default=64)
    loader.add_argument("--key", default="")
    loader.add_argument("--rate", type=int, default=0)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--warmup", type=int, default=10,
                        help="seconds of unmeasured load on each server before measuring")
    parser.add_argument("--rounds", type=int, default=1,
                        help="saturation pairs and fixed-rate runs to measure (figures vary)")
    parser.add_argument("--patients", type=int, default=200_000,
                        help="patients for the search measurement (0: skip it)")
    arguments = parser.parse_args()
    if arguments.command == "load":
        print(json.dumps(asyncio.run(load(arguments))))
    else:
        main(arguments)

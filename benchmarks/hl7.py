"""HL7 benchmark: ADT and DFT messages over MLLP into `luxfact mllp`, against an echo ceiling.

    .venv/bin/python benchmarks/hl7.py [--messages 20000] [--connections 8] [--workers N]

1. Creates a fresh PostgreSQL database (LUXFACT_TEST_POSTGRES_URL's server), migrates it,
   loads the demo hospitals, tariffs and keys, and starts a real `luxfact mllp --tenant
   demo-nord` connecting as the application role (row-level security on), plus the ceiling:
   an MLLP echo server (this file, `echo`) answering each frame with an AA, no parsing, no
   database. A warm-up of 400 messages, then ANALYZE (what autovacuum would have done).
   `luxfact mllp` runs one worker per core (`--workers`; a process per pod when deployed).
2. From a separate process, --connections MLLP connections deliver --messages messages, each
   waiting for its ACK before sending the next (MLLP's original mode). Each visit is four
   messages on one connection, in order: A01 (new patient, coverage), DFT^P03 (two charges),
   A02 (transfer), A03 (discharge). Every ACK must be AA.
3. Prints messages/s, p50 and p99 ACK latency (from sending a message to reading its ACK)
   for the product and the ceiling, and the ratio. Target: >= 500 messages/s.
4. Prints the CPU time a message took in the listener and in the PostgreSQL backends
   serving the run's database: at 500 messages/s on 2 cores, the two (with the load
   generator) have 4 ms a message between them.
"""

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import asyncpg  # noqa: E402
import uvloop  # noqa: E402
from api import (  # noqa: E402
    BIN,
    analyze,
    drop_database,
    free_port,
    make_database,
    percentile,
    prepare,
)

# This file bears the hl7 library's name: once `api` is imported, its folder leaves the path,
# so that `import hl7` (in luxfact.hl7) finds the library, not this script.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "benchmarks"]

from luxfact.patients.matricule import complete  # noqa: E402

START, END = b"\x0b", b"\x1c\x0d"
FACILITY = "NORDHIS"


# --- the messages ------------------------------------------------------------------------

def visit_messages(n: int) -> list[bytes]:
    """A01, DFT^P03, A02, A03 of one visit (a new patient each)."""
    birth = datetime(1940, 1, 1) + timedelta(days=n % 25000)
    matricule = complete(birth.strftime("%Y%m%d") + f"{n // 25000:03d}")
    admitted = datetime(2026, 9, 1, 8, 0) + timedelta(minutes=n % 60000)

    def ts(moment: datetime) -> str:
        return moment.strftime("%Y%m%d%H%M%S")

    def msh(kind: str, seq: int) -> str:
        structure = "DFT_P03" if kind.startswith("DFT") else "ADT_A01"
        return (f"MSH|^~\\&|HIS|{FACILITY}|LUXFACT|LUX|{ts(admitted)}||{kind}^{structure}|"
                f"B{n:07d}-{seq}|P|2.5")

    pid = (f"PID|1||{matricule}^^^CNS^NN~H{n:07d}^^^HIS^MR||Muller^Anne{n % 997}||"
           f"{birth:%Y%m%d}|F|||{n % 90} rue du Test^^Luxembourg^^L-1{n % 1000:03d}^LU")
    visit = f"BV{n:07d}"

    def pv1(location: str = "MED^204^A", admit: str = "", discharge: str = "") -> str:
        fields = ["PV1", "1", "I", location] + [""] * 15 + [visit] + [""] * 24 + [admit,
                                                                                 discharge]
        fields[7] = "12345678^Doc^Tor"
        return "|".join(fields)

    in1 = "|".join(["IN1", "1", "", "CNS", "CNS"] + [""] * 7 + ["20200101"] + [""] * 23
                   + [f"M{n:07d}"])
    act = admitted + timedelta(hours=2)
    ft1 = [f"FT1|{i}|||{ts(act + timedelta(minutes=i))}||CG|{code}^^LUXNOM|||{qty}"
           for i, (code, qty) in enumerate((("N101", 2), ("C1", 1)), 1)]
    transfer, discharge = admitted + timedelta(days=1), admitted + timedelta(days=3)
    return [("\r".join(segments) + "\r").encode() for segments in (
        [msh("ADT^A01", 1), f"EVN|A01|{ts(admitted)}", pid, pv1(admit=ts(admitted)), in1],
        [msh("DFT^P03", 2), f"EVN|P03|{ts(act)}", pid, pv1(), *ft1],
        [msh("ADT^A02", 3), f"EVN|A02|{ts(transfer)}||||{ts(transfer)}", pid,
         pv1(location="CHIR^12^B")],
        [msh("ADT^A03", 4), f"EVN|A03|{ts(discharge)}", pid,
         pv1(discharge=ts(discharge))],
    )]


# --- the load generator (its own process: `hl7.py load ...`) --------------------------

async def deliver(port: int, frames: list[bytes], latencies: list[float]) -> dict[str, int]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    codes: dict[str, int] = {}
    try:
        for frame in frames:
            started = time.perf_counter()
            writer.write(frame)
            ack = await reader.readuntil(END)
            latencies.append(time.perf_counter() - started)
            msa = ack[ack.index(b"\rMSA|") + 5:][:2].decode()
            codes[msa] = codes.get(msa, 0) + 1
            if msa != "AA" and codes[msa] <= 3:
                print(f"not AA: {ack[:400]!r}", file=sys.stderr)
    finally:
        writer.close()
    return codes


async def load(args: argparse.Namespace) -> dict[str, float]:
    visits = args.messages // 4
    latencies: list[float] = []
    # Every frame built before the clock starts: the generator shares the 2 cores with
    # what it measures, so it does as little as it can while it runs.
    shares = [[START + raw + END
               for n in range(args.offset + c, args.offset + visits, args.connections)
               for raw in visit_messages(n)]
              for c in range(args.connections)]
    cpu_before = time.process_time()
    started = time.perf_counter()
    results = await asyncio.gather(*(deliver(args.port, share, latencies)
                                     for share in shares))
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu_before
    codes: dict[str, int] = {}
    for result in results:
        for key, count in result.items():
            codes[key] = codes.get(key, 0) + count
    return {"messages": len(latencies), "seconds": elapsed, "mps": len(latencies) / elapsed,
            "p50_ms": percentile(latencies, 50) * 1000,
            "p99_ms": percentile(latencies, 99) * 1000, "cpu": cpu,
            "codes": codes}  # type: ignore[dict-item]


def run_load(port: int, messages: int, connections: int, offset: int = 0) -> dict:
    command = [sys.executable, __file__, "load", "--port", str(port), "--messages",
               str(messages), "--connections", str(connections), "--offset", str(offset)]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return json.loads(output.strip().splitlines()[-1])


# --- the ceiling: an MLLP echo server (its own process: `hl7.py echo --port N`) -------------

async def echo(port: int) -> None:
    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                data = await reader.readuntil(END)
                control = data.split(b"|", 10)[9]  # MSH-10, by position: no parsing
                writer.write(START + b"MSH|^~\\&|LUXFACT|LUX|HIS|" + FACILITY.encode()
                             + b"|20261126000000||ACK|E1|P|2.5\rMSA|AA|" + control + b"\r"
                             + END)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(connection, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


def _stat(pid: int) -> list[str] | None:
    """A process's /proc stat fields after its name (None once it is gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def _cpu(fields: list[str]) -> float:
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # user + system


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) of a process and its children (the workers)."""
    total = 0.0
    for entry in os.listdir("/proc"):
        fields = _stat(int(entry)) if entry.isdigit() else None
        if fields and (int(entry) == pid or int(fields[1]) == pid):  # [1]: parent's pid
            total += _cpu(fields)
    return total


async def backends_cpu(dsn: str) -> dict[int, float]:
    """CPU seconds of each PostgreSQL backend serving the run's database (the listener's
    connections): what the database itself spends on the messages, from the same /proc."""
    conn = await asyncpg.connect(dsn)
    pids = await conn.fetch("SELECT pid FROM pg_stat_activity WHERE datname = "
                            "current_database() AND pid <> pg_backend_pid()")
    await conn.close()
    found = {row["pid"]: _stat(row["pid"]) for row in pids}
    return {pid: _cpu(fields) for pid, fields in found.items() if fields}


def wait_port(port: int, process: subprocess.Popen, timeout: float = 60) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port}")


def main(args: argparse.Namespace) -> None:
    print(f"# {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, "
          f"{args.messages} messages over {args.connections} MLLP connections")
    name, dsn = asyncio.run(make_database())
    env = {**os.environ, "LUXFACT_DATABASE_URL": dsn,
           "LUXFACT_SECRET_KEY": "bench-secret-key-1234", "LUXFACT_LOG_LEVEL": "WARNING"}
    processes: list[subprocess.Popen] = []
    try:
        prepare(env)
        port, echo_port = free_port(), free_port()
        processes.append(subprocess.Popen(
            [str(BIN / "luxfact"), "mllp", "--port", str(port), "--tenant", "demo-nord",
             "--workers", str(args.workers)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        processes.append(subprocess.Popen(
            [sys.executable, __file__, "echo", "--port", str(echo_port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_port(port, processes[0])
        wait_port(echo_port, processes[1])
        warm = 400
        run_load(port, warm, args.connections, offset=10_000_000)  # pools, caches, plans
        # What autovacuum does within a minute on a production server (this machine's
        # cluster runs without it): statistics for the tables the warm-up filled, and the
        # plans made while they held a few rows dropped (docs/operations.md).
        asyncio.run(analyze(dsn))
        cpu_before = process_cpu(processes[0].pid)
        database_before = asyncio.run(backends_cpu(dsn))
        product = run_load(port, args.messages, args.connections)
        cpu = process_cpu(processes[0].pid) - cpu_before
        database_after = asyncio.run(backends_cpu(dsn))
        # A backend opened during the load counts whole; one closed during it is lost
        # (the listener's pool keeps its connections: none is, in practice).
        database = sum(seconds - database_before.get(pid, 0.0)
                       for pid, seconds in database_after.items())
        ceiling = run_load(echo_port, args.messages, args.connections)
        print(f"luxfact mllp:        {product['mps']:8.0f} messages/s  "
              f"p50 {product['p50_ms']:6.1f} ms  p99 {product['p99_ms']:7.1f} ms  "
              f"({product['messages']} in {product['seconds']:.1f} s, ACKs {product['codes']})")
        print(f"echo (ceiling):      {ceiling['mps']:8.0f} messages/s  "
              f"p50 {ceiling['p50_ms']:6.1f} ms  p99 {ceiling['p99_ms']:7.1f} ms")
        print(f"ratio product/echo: {product['mps'] / ceiling['mps']:.3f}")
        print(f"luxfact mllp CPU: {cpu:.1f} s, {cpu / product['messages'] * 1000:.2f} ms per "
              f"message ({args.workers} worker(s))")
        print(f"generator CPU:    {product['cpu']:.1f} s, "
              f"{product['cpu'] / product['messages'] * 1000:.2f} ms per message (the load "
              f"generator's own, on uvloop)")
        print(f"PostgreSQL CPU:   {database:.1f} s, "
              f"{database / product['messages'] * 1000:.2f} ms per message "
              f"({len(database_after)} backends serving the run's database)")
        verdict = "met" if product["mps"] >= 500 else "NOT met"
        print(f"target >= 500 messages/s: {verdict}")
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=30)
        asyncio.run(drop_database(name))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command")
    loader = sub.add_parser("load")
    loader.add_argument("--port", type=int, required=True)
    loader.add_argument("--messages", type=int, default=20000)
    loader.add_argument("--connections", type=int, default=8)
    loader.add_argument("--offset", type=int, default=0)
    echoer = sub.add_parser("echo")
    echoer.add_argument("--port", type=int, required=True)
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--connections", type=int, default=8)
    # One listener process per core, as deployed: one per pod (deploy/k8s), or `--workers`
    # on one machine. A single process is bound by one core (`--workers 1` to see it).
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="luxfact mllp --workers (processes sharing the port; "
                             "default: one per core)")
    arguments = parser.parse_args()
    if arguments.command == "load":
        print(json.dumps(uvloop.run(load(arguments))))
    elif arguments.command == "echo":
        asyncio.run(echo(arguments.port))
    else:
        main(arguments)

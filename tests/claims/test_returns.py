"""The insurer's answer: imported whole or not at all, once; reconciliation and worklist."""

import asyncio
import csv
import io
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from luxfact.auth.roles import Role
from luxfact.claims import xml
from luxfact.claims.simulate import simulate_return
from tests.claims.test_batches import billed, build
from tests.conftest import Hospital, Hospitals

pytestmark = pytest.mark.usefixtures("catalogue")


async def sent_batch(client: httpx.AsyncClient, hospital: Hospital, stays: int) -> tuple[dict,
                                                                                         bytes]:
    await billed(client, hospital, stays)
    batch = (await build(client, hospital)).json()
    url = f"/api/v1/claim-batches/{batch['id']}"
    headers = hospital.auth(Role.billing)
    assert (await client.post(f"{url}/freeze", headers=headers)).status_code == 200
    assert (await client.post(f"{url}/sent", headers=headers)).status_code == 200
    return batch, (await client.get(f"{url}/file", headers=headers)).content


def answer_with_rejections(claim: bytes) -> bytes:
    """A simulated return that rejects at least one line (the seed is searched for)."""
    for seed in range(200):
        answer = simulate_return(claim, seed=seed)
        lines = [line for inv in xml.parse_return(answer).invoices for line in inv.lines]
        if any(line.net == 0 for line in lines) and any(line.net > 0 for line in lines):
            return answer
    raise AssertionError("no seed rejects a line")


async def post_return(client: httpx.AsyncClient, hospital: Hospital, batch: dict,
                      body: bytes) -> httpx.Response:
    return await client.post(f"/api/v1/claim-batches/{batch['id']}/return", content=body,
                             headers={**hospital.auth(Role.billing),
                                      "Content-Type": "application/xml"})


async def test_a_return_is_applied_once_and_reconciled(client: httpx.AsyncClient,
                                                       hospitals: Hospitals) -> None:
    batch, claim = await sent_batch(client, hospitals.a, 5)
    answer = answer_with_rejections(claim)
    parsed = xml.parse_return(answer)
    headers = hospitals.a.auth(Role.billing)
    imported = await post_return(client, hospitals.a, batch, answer)
    assert imported.status_code == 200, imported.text
    assert imported.json()["state"] == "answered"
    url = f"/api/v1/claim-batches/{batch['id']}"
    figures = (await client.get(f"{url}/reconciliation", headers=headers)).json()
    lines = [line for inv in parsed.invoices for line in inv.lines]
    rejected = [line for line in lines if line.net == 0]
    assert figures["claimed"]["count"] == len(lines) == 10
    assert figures["rejected"]["count"] == len(rejected)
    assert figures["outstanding"]["count"] == 0
    assert sum(figures[s]["count"] for s in ("paid", "partly_paid", "rejected")) == len(lines)
    assert Decimal(figures["claimed"]["paid"]) == sum((line.net for line in lines), Decimal(0))

    worklist = (await client.get("/api/v1/claim-lines?status=rejected",
                                 headers=headers)).json()["items"]
    assert len(worklist) == len(rejected)
    assert all(item["anomalies"] and item["paid"] == "0.00" for item in worklist)
    table = list(csv.reader(io.StringIO((await client.get(f"{url}/reconciliation.csv",
                                                          headers=headers)).text)))
    assert table[0] == ["status", "count", "claimed", "paid"] and len(table) == 8

    # A rejected line written off, with a reason: closed, counted, audited; not twice.
    first = worklist[0]
    off = f"/api/v1/claim-lines/{first['invoice_id']}/{first['line']}/write-off"
    assert (await client.post(off, json={}, headers=headers)).status_code == 422
    assert (await client.post(off, json={"reason": "Délai de recours dépassé"},
                              headers=headers)).status_code == 204
    assert (await client.post(off, json={"reason": "encore"},
                              headers=headers)).status_code == 409
    assert (await client.post(off, json={"reason": "x"},
                              headers=hospitals.b.auth(Role.billing))).status_code == 404
    after = (await client.get(f"{url}/reconciliation", headers=headers)).json()
    assert after["written_off"]["count"] == 1
    assert after["rejected"]["count"] == figures["rejected"]["count"] - 1
    closed = (await client.get("/api/v1/claim-lines?status=written_off",
                               headers=headers)).json()["items"]
    assert [(i["invoice_id"], i["line"]) for i in closed] == [(first["invoice_id"],
                                                               first["line"])]
    events = (await client.get(f"/api/v1/audit-events?object_id={first['invoice_id']}",
                               headers=hospitals.a.auth(Role.admin))).json()["items"]
    assert any(e["action"] == "claim_line.write_off"
               and e["details"]["reason"] == "Délai de recours dépassé" for e in events)
    figures = after

    again = await post_return(client, hospitals.a, batch, answer)  # the same file again
    assert again.status_code == 200 and again.json()["version"] == imported.json()["version"]
    assert (await client.get(f"{url}/reconciliation", headers=headers)).json() == figures
    # Another hospital can neither see nor answer it.
    assert (await post_return(client, hospitals.b, batch, answer)).status_code == 404
    assert (await client.get("/api/v1/claim-lines?status=rejected",
                             headers=hospitals.b.auth(Role.billing))).json()["items"] == []


async def test_bad_returns_are_refused_whole(client: httpx.AsyncClient,
                                             hospitals: Hospitals) -> None:
    batch, claim = await sent_batch(client, hospitals.a, 1)
    url = f"/api/v1/claim-batches/{batch['id']}"
    headers = hospitals.a.auth(Role.billing)
    answer = simulate_return(claim)
    hostile = [
        b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r>&x;</r>',
        b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]>'
        b"<a>&b;</a>",
        answer[: len(answer) // 2],  # truncated
        answer.replace(b"urn:luxfact:claims:return:1.0", b"urn:other:1.0"),
        answer.replace(batch["file_reference"].encode(), b"LXF-90000017-202601-DEADBEEF"),
        b"\xff\xfe not xml",
    ]
    for body in hostile:
        refused = await post_return(client, hospitals.a, batch, body)
        assert refused.status_code == 422, (body[:60], refused.text)
        assert refused.json()["errors"][0]["field"] == "file"
    wrong_type = await client.post(f"{url}/return", content=answer,
                                   headers={**headers, "Content-Type": "text/plain"})
    assert wrong_type.status_code == 415
    state = (await client.get(url, headers=headers)).json()
    assert state["state"] == "sent"  # nothing was applied
    assert (await client.get(f"{url}/reconciliation", headers=headers)).json()[
        "outstanding"]["count"] == 2


async def test_a_return_before_the_batch_is_sent_is_refused(client: httpx.AsyncClient,
                                                            hospitals: Hospitals) -> None:
    await billed(client, hospitals.a, 1)
    batch = (await build(client, hospitals.a)).json()
    refused = await post_return(client, hospitals.a, batch, b"<x/>")
    assert refused.status_code == 409


async def test_simulate_return_from_the_command_line(client: httpx.AsyncClient,
                                                     hospitals: Hospitals,
                                                     cli_env: dict[str, str],
                                                     tmp_path: Path) -> None:
    batch, claim = await sent_batch(client, hospitals.a, 2)
    path = tmp_path / "claim.xml"
    await asyncio.to_thread(path.write_bytes, claim)
    command = [sys.executable, "-m", "luxfact.cli.main", "claims", "simulate-return", str(path)]
    done = await asyncio.to_thread(subprocess.run, command, env=cli_env, capture_output=True,
                                   timeout=60)
    assert done.returncode == 0, done.stderr
    answer = xml.parse_return(done.stdout)
    assert answer.file_reference == batch["file_reference"]
    assert (await post_return(client, hospitals.a, batch, done.stdout)).status_code == 200
    garbage = tmp_path / "garbage.xml"
    await asyncio.to_thread(garbage.write_bytes, b"<nope/>")
    bad = await asyncio.to_thread(subprocess.run, [*command[:-1], str(garbage)], env=cli_env,
                                  capture_output=True, timeout=60)
    assert bad.returncode != 0 and b"not a claim file" in bad.stdout + bad.stderr

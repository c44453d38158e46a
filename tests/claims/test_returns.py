"""The insurer's answer: imported whole or not at all, once; reconciliation and worklist."""

import asyncio
import csv
import io
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from luxfact.auth.roles import Role
from luxfact.claims import anomalies, returns, xml
from luxfact.claims.simulate import simulate_return
from tests.billing.test_invoices import bill
from tests.claims.test_batches import billed, build
from tests.conftest import Hospital, Hospitals

pytestmark = pytest.mark.usefixtures("catalogue")
ROOT = Path(__file__).resolve().parents[2]


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
    assert table[0] == ["status", "count", "claimed", "paid"]
    assert [row[0] for row in table[1:9]] == list(returns.FIGURES)
    assert len(table) == 9 + len(figures["by_anomaly"])
    # Why lines were cut or refused, by code: every refused line is under its codes.
    codes = anomalies.load(ROOT / "invoices")
    refused = worklist + (await client.get("/api/v1/claim-lines?status=partly_paid",
                                           headers=headers)).json()["items"]
    assert {f["code"] for f in figures["by_anomaly"]} == {
        a["code"] for line in refused for a in line["anomalies"]}
    for figure in figures["by_anomaly"]:
        assert figure["label"] == codes[figure["code"]].labels["fr"]
        assert figure["count"] == sum(1 for line in refused if figure["code"] in {
            a["code"] for a in line["anomalies"]})

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


async def test_a_batch_is_reconciled_once_every_line_is_resolved(
        client: httpx.AsyncClient, hospitals: Hospitals) -> None:
    batch, claim = await sent_batch(client, hospitals.a, 4)
    answer = answer_with_rejections(claim)
    headers = hospitals.a.auth(Role.billing)
    url = f"/api/v1/claim-batches/{batch['id']}"
    assert (await post_return(client, hospitals.a, batch, answer)).json()["state"] == "answered"
    waiting = [item for status in ("rejected", "partly_paid") for item in (await client.get(
        f"/api/v1/claim-lines?status={status}&limit=100", headers=headers)).json()["items"]]
    assert waiting

    # Labels and advice come from the configurable list, in the reader's language.
    codes = anomalies.load(ROOT / "invoices")
    german = (await client.get("/api/v1/claim-lines?status=rejected&limit=100", headers={
        **headers, "Accept-Language": "de-LU, fr;q=0.5"})).json()["items"]
    for item in german:
        for anomaly in item["anomalies"]:
            assert anomaly["label"] == codes[anomaly["code"]].labels["de"]
            assert anomaly["resolution"] == codes[anomaly["code"]].resolution

    # The first is credited (to be claimed again, corrected); the rest written off.
    first, *rest = waiting
    credited = await client.post(f"/api/v1/invoices/{first['invoice_id']}/credit-notes",
                                 json={"lines": [first["line"]], "reason": "Code corrigé"},
                                 headers=headers)
    assert credited.status_code == 201, credited.text
    listed = (await client.get("/api/v1/claim-lines?status=credited",
                               headers=headers)).json()["items"]
    assert [(i["invoice_id"], i["line"]) for i in listed] == [(first["invoice_id"],
                                                               first["line"])]
    # The act, released, is billed again: the corrected invoice goes into a new batch.
    again = await bill(client, hospitals.a, {"id": first["stay_id"]})
    assert again.status_code == 201, again.text
    corrected = [i for i in again.json()["invoices"] if i["kind"] == "insurer"]
    assert len(corrected) == 1 and len(corrected[0]["lines"]) == 1
    later = await build(client, hospitals.a)
    assert later.status_code == 201 and later.json()["id"] != batch["id"]
    assert later.json()["invoice_count"] == 1
    for item in rest:
        assert (await client.get(url, headers=headers)).json()["state"] == "answered"
        off = f"/api/v1/claim-lines/{item['invoice_id']}/{item['line']}/write-off"
        assert (await client.post(off, json={"reason": "Refus définitif"},
                                  headers=headers)).status_code == 204
    assert (await client.get(url, headers=headers)).json()["state"] == "reconciled"
    figures = (await client.get(f"{url}/reconciliation", headers=headers)).json()
    assert figures["state"] == "reconciled"
    assert (figures["credited"]["count"], figures["written_off"]["count"]) == (1, len(rest))
    assert figures["rejected"]["count"] == figures["partly_paid"]["count"] == 0
    events = (await client.get(f"/api/v1/audit-events?object_id={batch['id']}",
                               headers=hospitals.a.auth(Role.admin))).json()["items"]
    assert [e["action"] for e in events].count("claim_batch.reconciled") == 1


def test_the_anomaly_list_labels_every_code_of_the_return_schema(tmp_path: Path) -> None:
    tree = xml._schema_file(xml.RETURN_XSD, None)
    codes = tree.xpath("//xs:simpleType[@name='T_CodeAnomalie']//xs:enumeration/@value",
                       namespaces={"xs": "http://www.w3.org/2001/XMLSchema"})
    listed = anomalies.load(ROOT / "invoices")
    assert codes and set(codes) == set(listed)
    assert all(entry.labels[lang] for entry in listed.values() for lang in ("fr", "de", "en"))
    # A broken list is refused with its file and line.
    (tmp_path / "claims").mkdir()
    (tmp_path / "claims" / "anomalies.csv").write_text(
        "code,label_fr,label_de,label_en,resolution\nX,a,b,c,maybe\n", encoding="utf-8")
    with pytest.raises(anomalies.AnomalyListError, match=r"anomalies.csv:2: resolution"):
        anomalies.load(tmp_path)
    # A code the list does not know is shown under its own name.
    assert anomalies.describe(listed, {"type": "REJET", "code": "NOUVEAU", "motif": "m"},
                              "en") == {"type": "REJET", "code": "NOUVEAU", "label": "NOUVEAU",
                                        "motif": "m", "resolution": "check"}


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
        re.sub(rb"<montantNet>(\d+\.\d\d)</montantNet>", rb"<montantNet>\g<1>5</montantNet>",
               answer, count=1),  # an amount with three decimals
    ]
    for body in hostile:
        refused = await post_return(client, hospitals.a, batch, body)
        assert refused.status_code == 422, (body[:60], refused.text)
        assert refused.json()["errors"][0]["field"] == "file"
    wrong_type = await client.post(f"{url}/return", content=answer,
                                   headers={**headers, "Content-Type": "text/plain"})
    assert wrong_type.status_code == 415

    async def two_hundred_megabytes() -> AsyncIterator[bytes]:
        yield answer
        for _ in range(200):
            yield b" " * (1024 * 1024)

    huge = await client.post(f"{url}/return", content=two_hundred_megabytes(),
                             headers={**headers, "Content-Type": "application/xml"})
    assert huge.status_code == 413 and "52428800 bytes" in huge.json()["detail"]
    state = (await client.get(url, headers=headers)).json()
    assert state["state"] == "sent"  # nothing was applied
    assert (await client.get(f"{url}/reconciliation", headers=headers)).json()[
        "outstanding"]["count"] == 2
    # A return above the 5 MB of other bodies, under the return's own 50 MB, is read.
    padded = answer + b" " * (6 * 1024 * 1024)
    assert (await post_return(client, hospitals.a, batch, padded)).status_code == 200
    assert (await client.get(url, headers=headers)).json()["state"] in ("answered",
                                                                         "reconciled")


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

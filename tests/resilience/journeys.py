"""The load of the outage test: patient journeys over HTTP, every answer recorded.

A journey is what an admission desk and a billing office do for one patient: register them,
read the record, add the coverage, admit, record three acts, discharge, issue the invoices,
list them. Every write carries an `Idempotency-Key` and, answered 503, is sent again with
the same key and body until it succeeds, as a client following `Retry-After` would (only
faster, to keep the test short). Reads are sent once: a 503 is a fine answer to them.
"""

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import httpx

from luxfact.auth.roles import Role
from tests.conftest import Hospital
from tests.patients.test_api import new_matricule, patient_body

RETRY_PAUSE = 0.05
ADMITTED = "2026-03-02T08:00:00+01:00"
DISCHARGED = "2026-03-05T11:00:00+01:00"
ACTS = ({"code": "V1", "performer": "12345678", "performed_at": "2026-03-02T10:00:00+01:00"},
        {"code": "N101", "performed_at": "2026-03-02T10:00:00+01:00"},
        {"code": "CP1", "performed_at": "2026-03-03T10:00:00+01:00"})


@dataclass
class Answer:
    """One request and how it ended: a status, or the transport error instead of one."""

    method: str
    path: str
    started: float
    ended: float
    status: int = 0
    content_type: str = ""
    retry_after: str | None = None
    replayed: bool = False
    problem: dict[str, Any] | None = None
    body: Any = None
    error: str = ""


@dataclass
class Journey:
    patient: dict[str, Any]
    stay: dict[str, Any]
    acts: list[dict[str, Any]]
    invoices: list[dict[str, Any]]
    keys: list[str]
    retried: int = 0  # writes answered 503 at least once, then sent again


@dataclass
class Load:
    http: httpx.AsyncClient
    hospital: Hospital
    answers: list[Answer] = field(default_factory=list)
    _births: int = 0

    async def send(self, method: str, path: str, role: Role, body: object = None,
                   key: str | None = None) -> Answer:
        headers = self.hospital.auth(role)
        if key is not None:
            headers["Idempotency-Key"] = key
        answer = Answer(method, path, time.monotonic(), 0.0)
        self.answers.append(answer)
        try:
            response = await self.http.request(method, path, json=body, headers=headers)
        except httpx.TransportError as exc:  # a timeout is a hung request: the test fails
            answer.ended, answer.error = time.monotonic(), type(exc).__name__
            raise
        answer.ended, answer.status = time.monotonic(), response.status_code
        answer.content_type = response.headers.get("content-type", "")
        answer.retry_after = response.headers.get("retry-after")
        answer.replayed = response.headers.get("idempotent-replayed") == "true"
        answer.body = response.json() if "json" in answer.content_type else None
        if response.status_code >= 400:
            answer.problem = answer.body
        return answer

    async def write(self, journey_keys: list[str], path: str, body: object,
                    role: Role = Role.clerk) -> tuple[dict[str, Any], bool]:
        """The created record, and whether it took more than one attempt."""
        key = uuid.uuid4().hex
        journey_keys.append(key)
        attempts = 0
        while True:
            attempts += 1
            answer = await self.send("POST", path, role, body, key)
            if answer.status in (200, 201):
                return answer.body, attempts > 1
            # Anything but "the database is away" is a failure the test reports at once.
            assert answer.status == 503, (answer.status, answer.problem)
            await asyncio.sleep(RETRY_PAUSE)

    async def read(self, path: str, role: Role) -> None:
        answer = await self.send("GET", path, role)
        assert answer.status in (200, 503), (answer.status, answer.problem)

    async def journey(self) -> Journey:
        # A birth date of its own per journey: matricules cannot collide within the tenant.
        self._births += 1
        birth = date(1940, 1, 1) + timedelta(days=self._births)
        keys: list[str] = []
        retried = 0

        async def write(path: str, body: object, role: Role = Role.clerk) -> dict[str, Any]:
            nonlocal retried
            record, again = await self.write(keys, path, body, role)
            retried += again
            return record

        patient = await write("/api/v1/patients", patient_body(
            birth_date=birth.isoformat(), matricule=new_matricule(birth.strftime("%Y%m%d"))))
        await self.read(f"/api/v1/patients/{patient['id']}", Role.billing)
        await write(f"/api/v1/patients/{patient['id']}/coverages",
                    {"kind": "statutory", "payer": "CNS", "valid_from": "2020-01-01"})
        stay = await write("/api/v1/stays", {
            "patient_id": patient["id"], "kind": "inpatient", "admitted_at": ADMITTED,
            "unit": "MED2", "room": "204", "bed": "A"})
        acts = [await write(f"/api/v1/stays/{stay['id']}/acts", body) for body in ACTS]
        await write(f"/api/v1/stays/{stay['id']}/movements",
                    {"type": "discharge", "at": DISCHARGED})
        billed = await write(f"/api/v1/stays/{stay['id']}/invoices", {"kind": "final"},
                             Role.billing)
        await self.read(f"/api/v1/invoices?stay_id={stay['id']}", Role.billing)
        return Journey(patient, stay, acts, billed["invoices"], keys, retried)

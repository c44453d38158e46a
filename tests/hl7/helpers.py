"""Delivering HL7 messages over the API and reading the result back through the REST API."""

import httpx

from luxfact.auth.roles import Role
from tests.conftest import Hospital

ER7 = "x-application/hl7-v2+er7"


async def send(client: httpx.AsyncClient, hospital: Hospital, raw: bytes, *,
               role: Role = Role.integration, content_type: str = ER7) -> str:
    response = await client.post("/api/v1/hl7/v2", content=raw, headers={
        **hospital.auth(role), "content-type": content_type})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith(content_type)
    return response.text


def segment(ack: str, name: str) -> list[str]:
    """A segment's fields, split on the ACK's own field separator (the message's)."""
    separator = ack[3]
    for line in ack.split("\r"):
        if line.startswith(name + separator):
            return line.split(separator)
    raise AssertionError(f"no {name} in {ack!r}")


def code(ack: str) -> str:
    return segment(ack, "MSA")[1]


def reason(ack: str) -> str:
    """The readable reason of an AE or AR (MSA-3), unescaped enough for assertions."""
    return segment(ack, "MSA")[3].replace("\\F\\", ack[3])


async def accepted(client: httpx.AsyncClient, hospital: Hospital, raw: bytes) -> str:
    ack = await send(client, hospital, raw)
    assert code(ack) == "AA", ack
    return ack


async def refused(client: httpx.AsyncClient, hospital: Hospital, raw: bytes,
                  expected: str = "AE") -> str:
    ack = await send(client, hospital, raw)
    assert code(ack) == expected, ack
    return reason(ack)


async def patient(client: httpx.AsyncClient, hospital: Hospital, matricule: str) -> dict:
    response = await client.get(f"/api/v1/patients?matricule={matricule}",
                                headers=hospital.auth(Role.clerk))
    items = response.json()["items"]
    assert len(items) == 1, items
    return items[0]


async def stays_of(client: httpx.AsyncClient, hospital: Hospital, patient_id: str) -> list[dict]:
    response = await client.get(f"/api/v1/stays?patient_id={patient_id}",
                                headers=hospital.auth(Role.clerk))
    assert response.status_code == 200
    return response.json()["items"]


async def stay(client: httpx.AsyncClient, hospital: Hospital, matricule: str,
               visit: str) -> dict:
    """The stay of a visit number, read through the API (with its movements)."""
    found = await patient(client, hospital, matricule)
    for item in await stays_of(client, hospital, found["id"]):
        if item["external_id"] == visit:
            full = await client.get(f"/api/v1/stays/{item['id']}",
                                    headers=hospital.auth(Role.clerk))
            return full.json()
    raise AssertionError(f"no stay {visit}")


async def acts(client: httpx.AsyncClient, hospital: Hospital, stay_id: str) -> list[dict]:
    response = await client.get(f"/api/v1/stays/{stay_id}/acts",
                                headers=hospital.auth(Role.clerk))
    assert response.status_code == 200
    return response.json()["items"]


async def messages(client: httpx.AsyncClient, hospital: Hospital, role: Role = Role.admin,
                   **query: str) -> list[dict]:
    response = await client.get("/api/v1/hl7/messages", params=query,
                                headers=hospital.auth(role))
    assert response.status_code == 200, response.text
    return response.json()["items"]

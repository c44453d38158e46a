"""The catalogue over the API: any role reads it; a hospital's own prices stay its own."""

from datetime import date

import httpx
import pytest

from luxfact.auth.roles import Role
from luxfact.db.engine import Database
from luxfact.kit import context
from luxfact.tariffs.service import replace_hospital_prices
from tests.conftest import Hospital, Hospitals

pytestmark = pytest.mark.usefixtures("catalogue")


@pytest.mark.parametrize("role", list(Role))
async def test_every_role_reads_a_price(
    client: httpx.AsyncClient, hospitals: Hospitals, role: Role
) -> None:
    response = await client.get("/api/v1/tariffs/acts/N101?date=2023-09-01",
                                headers=hospitals.a.auth(role))
    assert response.status_code == 200
    body = response.json()
    assert body["unit_price"] == "19.30" and body["key_letter_value"] == "7.5679"
    assert body["coefficient"] == "2.55" and body["cote"] == "944.43"
    assert body["key_letter"] == "N" and body["version"] == "N101@2019-01-01"
    assert body["valid_from"] == "2019-01-01" and body["valid_to"] is None
    assert body["label_fr"] == "Soins infirmiers de base" and body["label_de"] == "Grundpflege"


async def test_version_boundaries(client: httpx.AsyncClient, hospitals: Hospitals) -> None:
    clerk = hospitals.a.auth(Role.clerk)
    last_old = (await client.get("/api/v1/tariffs/acts/C1?date=2022-12-31", headers=clerk)).json()
    first_new = (await client.get("/api/v1/tariffs/acts/C1?date=2023-01-01", headers=clerk)).json()
    assert last_old["version"] == "C1@2019-01-01" and last_old["valid_to"] == "2022-12-31"
    assert first_new["version"] == "C1@2023-01-01" and first_new["coefficient"] == "11.00"


async def test_unknown_code_is_404_and_invalid_date_is_422(
    client: httpx.AsyncClient, hospitals: Hospitals
) -> None:
    clerk = hospitals.a.auth(Role.clerk)
    unknown = await client.get("/api/v1/tariffs/acts/NOPE?date=2024-01-01", headers=clerk)
    assert unknown.status_code == 404
    early = await client.get("/api/v1/tariffs/acts/C1?date=2018-12-31", headers=clerk)
    assert early.status_code == 422
    body = early.json()
    assert body["errors"][0]["field"] == "query.date"
    assert body["versions"] == ["2019-01-01..2022-12-31", "2023-01-01.."]
    bad = await client.get("/api/v1/tariffs/acts/C1?date=yesterday", headers=clerk)
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "query.date"
    lower = await client.get("/api/v1/tariffs/acts/n101?date=2023-09-01", headers=clerk)
    assert lower.status_code == 200 and lower.json()["code"] == "N101"


async def test_without_a_date_today_is_used(
    client: httpx.AsyncClient, hospitals: Hospitals
) -> None:
    response = await client.get("/api/v1/tariffs/acts/N101", headers=hospitals.a.auth("clerk"))
    assert response.status_code == 200
    assert date.fromisoformat(response.json()["date"]) >= date(2026, 1, 1)


async def test_search_by_code_and_label(client: httpx.AsyncClient, hospitals: Hospitals) -> None:
    clerk = hospitals.a.auth(Role.clerk)
    by_code = (await client.get("/api/v1/tariffs/acts?q=n10&date=2024-01-01",
                                headers=clerk)).json()["items"]
    assert [i["code"] for i in by_code] == ["N101", "N104"]
    by_label = (await client.get("/api/v1/tariffs/acts?q=ECHOGRAPHIE&date=2024-01-01",
                                 headers=clerk)).json()["items"]
    assert [i["code"] for i in by_label] == ["6G31"]  # accents and case ignored
    assert by_label[0]["unit_price"] == "178.46"  # 38.40 × 4.6475 (0.49210 × 944.43 / 100)
    empty = await client.get("/api/v1/tariffs/acts?q=", headers=clerk)
    assert empty.status_code == 422


async def test_search_needs_credentials(client: httpx.AsyncClient) -> None:
    assert (await client.get("/api/v1/tariffs/acts?q=N1")).status_code == 401


async def load_own_price(owner_db: Database, hospital: Hospital, code: str, cents: int,
                         valid_from: date = date(2019, 1, 1)) -> None:
    """The hospital's price list made of one item, as `luxfact tariffs hospital-prices`."""
    with context.tenant_scope(hospital.id):
        async with owner_db.transaction() as session:
            await replace_hospital_prices(session, hospital.id, [{
                "code": code, "valid_from": valid_from, "valid_to": None, "label_fr": code,
                "label_de": code, "label_en": code, "amount_cents": cents}])


async def test_hospital_prices_are_seen_by_their_hospital_only(
    client: httpx.AsyncClient, hospitals: Hospitals, owner_db: Database
) -> None:
    await load_own_price(owner_db, hospitals.a, "A-TV", 350, date(2015, 1, 1))
    # 2016: before the national catalogue's own euro key letter (2019): a hospital's prices
    # are in euros whatever that catalogue says.
    for day in ("2016-06-01", "2024-01-01"):
        own = await client.get(f"/api/v1/tariffs/acts/A-TV?date={day}",
                               headers=hospitals.a.auth(Role.clerk))
        assert own.status_code == 200, own.text
        assert own.json()["unit_price"] == "3.50" and own.json()["category"] == "supplement"
    other = await client.get("/api/v1/tariffs/acts/A-TV?date=2024-01-01",
                             headers=hospitals.b.auth(Role.clerk))
    assert other.status_code == 404
    for hospital, found in ((hospitals.a, True), (hospitals.b, False)):
        search = await client.get("/api/v1/tariffs/acts?q=A-TV&date=2024-01-01",
                                  headers=hospital.auth(Role.clerk))
        assert search.status_code == 200
        assert ("A-TV" in [item["code"] for item in search.json()["items"]]) is found


async def test_a_refused_look_up_leaves_the_cached_catalogue_usable(
    client: httpx.AsyncClient, hospitals: Hospitals
) -> None:
    # The request that loads a catalogue version ends in an error, so its transaction is
    # rolled back; the tables it cached must still build the next hospital's snapshot.
    from luxfact.tariffs import service as tariffs

    tariffs._tables_cache.clear()
    tariffs._cache.clear()
    unknown = await client.get("/api/v1/tariffs/acts/NOPE?date=2024-01-01",
                               headers=hospitals.a.auth(Role.clerk))
    assert unknown.status_code == 404
    for hospital in (hospitals.b, hospitals.a):
        tariffs._cache.clear()  # as when a hospital's prices are older than their TTL
        found = await client.get("/api/v1/tariffs/acts/N101?date=2024-01-01",
                                 headers=hospital.auth(Role.clerk))
        assert found.status_code == 200 and found.json()["unit_price"] == "19.30"

"""Long-lived objects are frozen out of the garbage collector's full collections.

What it buys (full collections of 84–233 ms under load, and the fixed-rate p99 they caused)
is measured by benchmarks/api.py, not here; these tests check that the freezing happens
where it is meant to: when a worker starts, and when a new tariff catalogue is loaded.
"""

import gc
import weakref
from collections.abc import Iterator

import httpx
import pytest
from asgi_lifespan import LifespanManager

from luxfact.app import create_app
from luxfact.auth.roles import Role
from luxfact.kit.memory import freeze_long_lived
from luxfact.settings import Settings
from luxfact.tariffs import service as tariffs
from tests.conftest import Hospitals


@pytest.fixture
def unfrozen() -> Iterator[None]:
    """Nothing frozen at the start of the test, whatever ran before it."""
    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    yield


def test_freezing_keeps_objects_out_of_collections_and_frees_garbage_first(
        unfrozen: None) -> None:
    class Node:
        pass

    kept = Node()
    cycle = Node()
    cycle.self = cycle  # type: ignore[attr-defined]
    gone = weakref.ref(cycle)
    del cycle  # garbage only a collection can free: frozen unfreed, it would live on
    freeze_long_lived()
    assert gc.get_freeze_count() > 0 and gc.is_tracked(kept)
    assert gone() is None


async def test_an_app_freezes_what_it_built_when_it_starts(settings: Settings,
                                                           unfrozen: None) -> None:
    async with LifespanManager(create_app(settings)):
        assert gc.get_freeze_count() > 0


@pytest.mark.usefixtures("catalogue")
async def test_a_new_tariff_catalogue_is_frozen_once_loaded(
        client: httpx.AsyncClient, hospitals: Hospitals, unfrozen: None) -> None:
    tariffs._tables_cache.clear()  # as after an import: the next look-up loads the tables
    tariffs._cache.clear()
    found = await client.get("/api/v1/tariffs/acts/N101?date=2023-09-01",
                             headers=hospitals.a.auth(Role.clerk))
    assert found.status_code == 200
    assert gc.get_freeze_count() > 0

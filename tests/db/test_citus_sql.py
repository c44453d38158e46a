"""The Citus path: the SQL the tenant hook emits in `citus` mode, and the scale-out guide's
table lists, checked against the models so the guide cannot drift."""

import re
import uuid
from pathlib import Path

import pytest

from luxfact.db.engine import tenant_setting_sql
from luxfact.db.models import metadata, tenant_owned_tables

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "scale-out.md"
TENANT = uuid.UUID("6c0d5e8e-3f47-4b8a-9d0b-2a1c3e4f5a6b")


def test_citus_mode_sets_propagation_then_the_tenant_literal() -> None:
    statements = tenant_setting_sql(TENANT, "citus")
    assert statements == [
        ("SET LOCAL citus.propagate_set_commands = 'local'", {}),
        (f"SET LOCAL app.tenant_id = '{TENANT}'", {}),
    ]
    # No bound parameters: SET takes none, which is why the literal is validated.
    assert all(params == {} for _, params in statements)


def test_citus_mode_without_a_tenant_sets_the_empty_string() -> None:
    assert tenant_setting_sql(None, "citus")[1] == ("SET LOCAL app.tenant_id = ''", {})


@pytest.mark.parametrize("bad", [
    "x'; RESET ROLE; --",
    "6C0D5E8E-3F47-4B8A-9D0B-2A1C3E4F5A6B",  # upper case never comes out of uuid.UUID
    "6c0d5e8e3f474b8a9d0b2a1c3e4f5a6b",
    "hospital-a",
])
def test_citus_mode_refuses_anything_but_a_uuid(bad: str) -> None:
    with pytest.raises(ValueError, match="UUID"):
        tenant_setting_sql(bad, "citus")  # type: ignore[arg-type]


def test_set_config_mode_binds_the_tenant_as_a_parameter() -> None:
    assert tenant_setting_sql(TENANT, "set_config") == [
        ("SELECT set_config('app.tenant_id', :tenant, true)", {"tenant": str(TENANT)})]


def _guide_sql() -> str:
    """The fenced block of the guide marked ```sql citus-distribute."""
    match = re.search(r"^```sql citus-distribute\n(.*?)^```", GUIDE.read_text(), re.S | re.M)
    assert match, "docs/scale-out.md lost its ```sql citus-distribute block"
    return match.group(1)


def test_guide_distributes_exactly_the_tenant_owned_tables() -> None:
    sql = _guide_sql()
    distributed = re.findall(r"create_distributed_table\('(\w+)',\s*'tenant_id'", sql)
    assert sorted(distributed) == tenant_owned_tables()
    assert len(distributed) == len(set(distributed))
    # Colocated with the first one, so joins and foreign keys stay on one node.
    first, *rest = distributed
    for table in rest:
        assert re.search(rf"create_distributed_table\('{table}',\s*'tenant_id',\s*"
                         rf"colocate_with\s*=>\s*'{first}'\)", sql), table


def test_guide_makes_every_other_table_a_reference_table() -> None:
    reference = re.findall(r"create_reference_table\('(\w+)'\)", _guide_sql())
    others = sorted(t.name for t in metadata.sorted_tables
                    if t.name not in set(tenant_owned_tables()))
    assert sorted(reference) == others
    assert "tenants" in reference
    assert all(t == "tenants" or t.startswith("tariff_") for t in reference)


def test_guide_distributes_parents_before_children() -> None:
    """create_distributed_table refuses a foreign key to a table not yet distributed."""
    sql = _guide_sql()
    order = re.findall(r"create_(?:distributed|reference)_table\('(\w+)'", sql)
    position = {name: i for i, name in enumerate(order)}
    for table in metadata.sorted_tables:
        for fk in table.foreign_key_constraints:
            parent = fk.referred_table.name
            if parent != table.name:
                assert position[parent] < position[table.name], (parent, table.name)


def test_every_key_of_a_tenant_owned_table_starts_with_tenant_id() -> None:
    """What makes distribution by tenant_id possible: Citus needs the distribution column in
    every primary key and unique constraint, and foreign keys between distributed tables on it."""
    owned = set(tenant_owned_tables())
    for table in metadata.sorted_tables:
        if table.name not in owned:
            continue
        assert next(iter(table.primary_key.columns)).name == "tenant_id", table.name
        for fk in table.foreign_key_constraints:
            assert fk.columns[0].name == "tenant_id", (table.name, fk.name)
            assert fk.referred_table.name in owned or fk.referred_table.name == "tenants"
        for constraint in table.constraints:
            if constraint.__class__.__name__ == "UniqueConstraint":
                assert next(iter(constraint.columns)).name == "tenant_id", table.name
        for index in table.indexes:
            if index.unique:
                assert next(iter(index.columns)).name == "tenant_id", (table.name, index.name)

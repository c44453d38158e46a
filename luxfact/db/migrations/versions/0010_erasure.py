"""erasure of invoices past retention

The triggers that keep issued invoices, their lines, payments and documents immutable let one
thing through from now on: a DELETE by the tables' owner (or a member of its role) in a
transaction that asked for it with `SELECT set_config('luxfact.erasure', 'on', true)`. That is
what `luxfact privacy erase` does, after checking that the invoices are past their legal
retention (docs/privacy.md). The application role owns nothing, so for the service nothing
changes: it can delete no issued invoice, setting or not. UPDATE stays refused for everyone.

SQLite has no such triggers (immutability rests on the service there): nothing to do.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-26
"""
from collections.abc import Sequence

from alembic import op

from luxfact.db import rls

revision: str = '0010'
down_revision: str | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Every function here runs with its search_path pinned to pg_catalog (then pg_temp, last):
# a role allowed to create objects in some schema of its path could otherwise shadow
# pg_has_role or pg_class with its own and pass the owner check.
PINNED = "SET search_path = pg_catalog, pg_temp"


def _erasure_allowed(schema: str) -> str:
    """The erasure path: asked for in this transaction, by the owner of the changed table."""
    # `schema` is the quoted identifier current_schema() gave.
    return (
        f"CREATE OR REPLACE FUNCTION {schema}.luxfact_erasure_allowed(rel oid) "  # noqa: S608
        f"RETURNS boolean LANGUAGE sql STABLE {PINNED} AS $$ "
        "SELECT coalesce(pg_catalog.current_setting('luxfact.erasure', true), '') = 'on' "
        "AND pg_catalog.pg_has_role(current_user, (SELECT c.relowner FROM pg_catalog.pg_class c "
        "WHERE c.oid = rel), 'MEMBER') $$"
    )


def _schema() -> str:
    name = op.get_bind().exec_driver_sql("SELECT current_schema()").scalar()
    return '"' + str(name).replace('"', '""') + '"'


def _functions(erasure: bool, schema: str = "") -> list[str]:
    """The two trigger functions of migration 0004, with or without the erasure path."""
    mutable = " - ".join(f"'{column}'" for column in rls.INVOICE_MUTABLE_COLUMNS)
    let_erase = (f"IF {schema}.luxfact_erasure_allowed(TG_RELID) THEN RETURN OLD; END IF; "
                 if erasure else "")
    pinned = f" {PINNED}" if erasure else ""  # 0004's own definitions had none
    return [
        "CREATE OR REPLACE FUNCTION luxfact_invoice_immutable() RETURNS trigger "
        f"LANGUAGE plpgsql{pinned} AS $$ BEGIN "
        f"IF TG_OP = 'DELETE' THEN {let_erase}"
        "RAISE EXCEPTION 'invoice % is issued: it cannot be deleted', OLD.number "
        "USING ERRCODE = 'restrict_violation'; END IF; "
        f"IF (to_jsonb(NEW) - {mutable}) IS DISTINCT FROM (to_jsonb(OLD) - {mutable}) THEN "
        "RAISE EXCEPTION 'invoice % is issued: its number, amounts and lines are immutable', "
        "OLD.number USING ERRCODE = 'restrict_violation'; END IF; "
        "RETURN NEW; END $$",
        "CREATE OR REPLACE FUNCTION luxfact_refuse_issued_change() RETURNS trigger "
        f"LANGUAGE plpgsql{pinned} AS $$ BEGIN "
        + (f"IF TG_OP = 'DELETE' THEN {let_erase}END IF; " if erasure else "")
        + "RAISE EXCEPTION '% on % is not allowed: issued documents are immutable', "
        "TG_OP, TG_TABLE_NAME USING ERRCODE = 'restrict_violation'; END $$",
    ]


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    schema = _schema()
    op.execute(_erasure_allowed(schema))
    for statement in _functions(erasure=True, schema=schema):
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for statement in _functions(erasure=False):
        op.execute(statement)
    op.execute("DROP FUNCTION IF EXISTS luxfact_erasure_allowed(oid)")

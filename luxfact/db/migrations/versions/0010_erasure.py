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

# The erasure path: asked for in this transaction, by the owner of the table being changed.
ERASURE_ALLOWED = (
    "CREATE OR REPLACE FUNCTION luxfact_erasure_allowed(rel oid) RETURNS boolean "
    "LANGUAGE sql STABLE AS $$ "
    "SELECT coalesce(current_setting('luxfact.erasure', true), '') = 'on' "
    "AND pg_has_role(current_user, (SELECT relowner FROM pg_class WHERE oid = rel), 'MEMBER') "
    "$$"
)


def _functions(erasure: bool) -> list[str]:
    """The two trigger functions of migration 0004, with or without the erasure path."""
    mutable = " - ".join(f"'{column}'" for column in rls.INVOICE_MUTABLE_COLUMNS)
    let_erase = "IF luxfact_erasure_allowed(TG_RELID) THEN RETURN OLD; END IF; " if erasure else ""
    return [
        "CREATE OR REPLACE FUNCTION luxfact_invoice_immutable() RETURNS trigger "
        "LANGUAGE plpgsql AS $$ BEGIN "
        f"IF TG_OP = 'DELETE' THEN {let_erase}"
        "RAISE EXCEPTION 'invoice % is issued: it cannot be deleted', OLD.number "
        "USING ERRCODE = 'restrict_violation'; END IF; "
        f"IF (to_jsonb(NEW) - {mutable}) IS DISTINCT FROM (to_jsonb(OLD) - {mutable}) THEN "
        "RAISE EXCEPTION 'invoice % is issued: its number, amounts and lines are immutable', "
        "OLD.number USING ERRCODE = 'restrict_violation'; END IF; "
        "RETURN NEW; END $$",
        "CREATE OR REPLACE FUNCTION luxfact_refuse_issued_change() RETURNS trigger "
        "LANGUAGE plpgsql AS $$ BEGIN "
        + (f"IF TG_OP = 'DELETE' THEN {let_erase}END IF; " if erasure else "")
        + "RAISE EXCEPTION '% on % is not allowed: issued documents are immutable', "
        "TG_OP, TG_TABLE_NAME USING ERRCODE = 'restrict_violation'; END $$",
    ]


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(ERASURE_ALLOWED)
    for statement in _functions(erasure=True):
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for statement in _functions(erasure=False):
        op.execute(statement)
    op.execute("DROP FUNCTION IF EXISTS luxfact_erasure_allowed(oid)")

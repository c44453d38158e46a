"""PostgreSQL-only DDL: row-level security, the application role, append-only tables.

Called from migrations (per table) and from `luxfact db upgrade` (role and grants). On SQLite
every function here does nothing: isolation there rests on the repositories alone.
"""

from sqlalchemy import text
from sqlalchemy.engine import Connection

TENANT_PREDICATE = "tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid"


def enable_tenant_rls(conn: Connection, table: str) -> None:
    if conn.dialect.name != "postgresql":
        return
    conn.execute(text(f'ALTER TABLE "{table}" ENABLE ROW LEVEL SECURITY'))
    conn.execute(text(f'ALTER TABLE "{table}" FORCE ROW LEVEL SECURITY'))
    conn.execute(text(
        f'CREATE POLICY tenant_isolation ON "{table}" '
        f"USING ({TENANT_PREDICATE}) WITH CHECK ({TENANT_PREDICATE})"
    ))


def make_append_only(conn: Connection, table: str) -> None:
    """A trigger that refuses UPDATE and DELETE, whoever asks (the owner included)."""
    if conn.dialect.name != "postgresql":
        return
    conn.execute(text(
        "CREATE OR REPLACE FUNCTION luxfact_refuse_change() RETURNS trigger "
        "LANGUAGE plpgsql AS $$ BEGIN "
        "RAISE EXCEPTION '% on % is not allowed: the table is append-only', TG_OP, TG_TABLE_NAME "
        "USING ERRCODE = 'insufficient_privilege'; END $$"
    ))
    conn.execute(text(
        f'CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON "{table}" '
        "FOR EACH ROW EXECUTE FUNCTION luxfact_refuse_change()"
    ))


# What the application role may do, table by table; anything not listed gets full DML.
# The national tariff catalogue changes only through `luxfact tariffs import` (the owner).
READ_ONLY_FOR_APP = {
    "alembic_version", "tariff_acts", "tariff_cotes", "tariff_imports", "tariff_key_letters",
    "tariff_modifiers", "tariff_nomenclatures", "tariff_parameters", "tariff_rules",
}
INSERT_ONLY_FOR_APP = {"audit_events"}


def ensure_app_role(conn: Connection, role: str, password: str = "") -> None:
    """Create the login role the service uses (owning nothing, no BYPASSRLS) and grant it DML."""
    if conn.dialect.name != "postgresql":
        return
    exists = conn.execute(text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role}).first()
    quoted = conn.dialect.identifier_preparer.quote(role)
    if not exists:
        conn.execute(text(f"CREATE ROLE {quoted} LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB"))
    if password:
        # Utility statements take no parameters: the literal is quoted by doubling quotes.
        literal = password.replace("'", "''")
        conn.execute(text(f"ALTER ROLE {quoted} PASSWORD '{literal}'"))
    db = conn.execute(text("SELECT current_database()")).scalar_one()
    conn.execute(text(f'GRANT CONNECT ON DATABASE "{db}" TO {quoted}'))
    conn.execute(text(f"GRANT USAGE ON SCHEMA public TO {quoted}"))
    tables = conn.execute(text(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
    )).scalars().all()
    for table in tables:
        if table in READ_ONLY_FOR_APP:
            privileges = "SELECT"
        elif table in INSERT_ONLY_FOR_APP:
            privileges = "SELECT, INSERT"
        else:
            privileges = "SELECT, INSERT, UPDATE, DELETE"
        conn.execute(text(f'REVOKE ALL ON "{table}" FROM {quoted}'))
        conn.execute(text(f'GRANT {privileges} ON "{table}" TO {quoted}'))
    conn.execute(text(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {quoted}"))


# What may change on an issued invoice: what is owed (payments, credit notes) and the row
# version. Anything else, its number, amounts, payer or dates, is refused.
INVOICE_MUTABLE_COLUMNS = ("paid_cents", "credited_cents", "version")


def make_invoices_immutable(conn: Connection) -> None:
    """Triggers that refuse any change to an issued invoice's number, amounts or lines, and
    to an archived document, whoever asks. SQLSTATE 23001 (restrict_violation) reaches the
    service as an integrity error, which it answers with 409."""
    if conn.dialect.name != "postgresql":
        return
    mutable = " - ".join(f"'{column}'" for column in INVOICE_MUTABLE_COLUMNS)
    conn.execute(text(
        "CREATE OR REPLACE FUNCTION luxfact_invoice_immutable() RETURNS trigger "
        "LANGUAGE plpgsql AS $$ BEGIN "
        "IF TG_OP = 'DELETE' THEN "
        "RAISE EXCEPTION 'invoice % is issued: it cannot be deleted', OLD.number "
        "USING ERRCODE = 'restrict_violation'; END IF; "
        f"IF (to_jsonb(NEW) - {mutable}) IS DISTINCT FROM (to_jsonb(OLD) - {mutable}) THEN "
        "RAISE EXCEPTION 'invoice % is issued: its number, amounts and lines are immutable', "
        "OLD.number USING ERRCODE = 'restrict_violation'; END IF; "
        "RETURN NEW; END $$"
    ))
    conn.execute(text(
        "CREATE TRIGGER invoices_immutable BEFORE UPDATE OR DELETE ON invoices "
        "FOR EACH ROW EXECUTE FUNCTION luxfact_invoice_immutable()"
    ))
    conn.execute(text(
        "CREATE OR REPLACE FUNCTION luxfact_refuse_issued_change() RETURNS trigger "
        "LANGUAGE plpgsql AS $$ BEGIN "
        "RAISE EXCEPTION '% on % is not allowed: issued documents are immutable', "
        "TG_OP, TG_TABLE_NAME USING ERRCODE = 'restrict_violation'; END $$"
    ))
    for table in ("invoice_lines", "invoice_documents", "payments"):
        conn.execute(text(
            f'CREATE TRIGGER {table}_immutable BEFORE UPDATE OR DELETE ON "{table}" '
            "FOR EACH ROW EXECUTE FUNCTION luxfact_refuse_issued_change()"
        ))

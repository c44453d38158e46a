"""Process settings, read once from `LUXFACT_*` environment variables.

A missing or malformed setting stops the process with the variable's name: a service that
starts half-configured is worse than one that refuses to start.
"""

from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import URL, make_url

ROOT = Path(__file__).resolve().parent.parent


class SettingsError(Exception):
    """A setting is missing or malformed; the message names the variable."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LUXFACT_", extra="ignore", frozen=True)

    # The owner's connection: migrations and the administrative CLI commands use it.
    database_url: str = f"sqlite+aiosqlite:///{ROOT / 'var' / 'luxfact.db'}"
    # The web process and the worker connect as a role that owns nothing, so PostgreSQL's
    # row-level security applies to them. Empty: derived from database_url and app_role.
    app_database_url: str = ""
    app_role: str = Field(default="luxfact_app", pattern=r"^[a-z_][a-z0-9_]{0,62}$")
    app_role_password: str = ""
    # How the tenant reaches PostgreSQL: set_config() per transaction, or the Citus form
    # (SET LOCAL with propagation to the workers), see docs/operations.md.
    tenant_setting_mode: Literal["set_config", "citus"] = "set_config"
    db_pool_size: int = Field(default=10, ge=1, le=200)
    # Prepared statements cached per PostgreSQL connection (asyncpg and SQLAlchemy's dialect).
    # 0 behind PgBouncer in transaction pooling, where a cached statement would be sought on
    # another server connection (docs/operations.md, deploy/pgbouncer/).
    db_statement_cache: int = Field(default=100, ge=0, le=10_000)

    secret_key: str = Field(default="dev-insecure-secret-change-me", min_length=16)
    environment: Literal["development", "production", "test"] = "development"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    tenants_dir: Path = ROOT / "tenants"
    documents_dir: Path = ROOT / "var" / "documents"
    # Layouts, texts and fonts of the printed documents (invoices/ at the project's root).
    invoices_dir: Path = ROOT / "invoices"
    # Processes rendering PDFs beside the web process (0: one per core).
    render_workers: int = Field(default=0, ge=0, le=64)
    max_body_bytes: int = Field(default=5 * 1024 * 1024, ge=1024)
    # The insurer's return file (POST .../return): parsed whole, so bounded; 50 MB is a
    # return of about 120,000 lines.
    max_return_bytes: int = Field(default=50 * 1024 * 1024, ge=1024, le=512 * 1024 * 1024)
    # An HL7 v2 message over HTTP: read as a stream, its first megabyte kept, a larger one
    # answered AR (as over MLLP); over this, 413.
    max_hl7_body_bytes: int = Field(default=64 * 1024 * 1024, ge=1024,
                                    le=1024 * 1024 * 1024)
    # HL7 v2 messages received (raw, ACK, status) are kept this many days, then removed by
    # `luxfact hl7 purge`.
    hl7_retention_days: int = Field(default=90, ge=1, le=3650)
    # Private networks webhooks may be sent to, comma-separated CIDRs (the hospitals' VPN
    # ranges): other than these, only public addresses (docs/webhooks.md).
    webhook_networks: str = ""
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    workers: int = Field(default=1, ge=1, le=64)
    # GET /metrics: with a token, only `Authorization: Bearer <token>`; without one, only a
    # loopback client. Anyone else gets 404 (docs/metrics.md).
    metrics_token: str = ""

    @field_validator("webhook_networks")
    @classmethod
    def _networks(cls, value: str) -> str:
        from luxfact.webhooks.addresses import networks

        networks(value)  # a bad CIDR stops the process at start, naming it
        return value

    @field_validator("database_url", "app_database_url")
    @classmethod
    def _known_driver(cls, value: str) -> str:
        if not value:
            return value
        try:
            url = make_url(value)
        except Exception as exc:
            raise ValueError(f"not a database URL: {exc}") from None
        driver = url.drivername
        # Accept the bare scheme an operator would write and pick the async driver for it.
        if driver in ("postgresql", "postgres", "postgresql+asyncpg"):
            return url.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)
        if driver in ("sqlite", "sqlite+aiosqlite"):
            return url.set(drivername="sqlite+aiosqlite").render_as_string(hide_password=False)
        raise ValueError(f"unsupported database {driver!r}: use postgresql:// or sqlite://")

    @property
    def is_postgres(self) -> bool:
        return self.database_url.startswith("postgresql")

    @property
    def effective_app_database_url(self) -> str:
        if self.app_database_url:
            return self.app_database_url
        if not self.is_postgres:
            return self.database_url
        owner = make_url(self.database_url)
        url = URL.create(owner.drivername, username=self.app_role,
                         password=self.app_role_password or None, host=owner.host,
                         port=owner.port, database=owner.database, query=owner.query)
        return url.render_as_string(hide_password=False)


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment; overrides win (tests, CLI options)."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            name = "LUXFACT_" + "_".join(str(p) for p in error["loc"]).upper()
            lines.append(f"{name}: {error['msg']}")
        raise SettingsError("invalid settings:\n  " + "\n  ".join(lines)) from None

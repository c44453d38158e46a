"""Tenants from their files: create or update, idempotently, all or nothing."""

import time
import uuid
from dataclasses import dataclass, field

from sqlmodel.ext.asyncio.session import AsyncSession

from luxfact.kit.errors import Conflict, NotFound
from luxfact.kit.time import utcnow
from luxfact.tenancy.config import TenantConfig
from luxfact.tenancy.models import Tenant
from luxfact.tenancy.repository import TenantRepository


@dataclass
class TenantChange:
    slug: str
    outcome: str  # "created", "updated", "unchanged"
    fields: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        if self.outcome == "updated":
            return f"{self.slug}: updated ({', '.join(self.fields)})"
        return f"{self.slug}: {self.outcome}"


def _columns(config: TenantConfig) -> dict[str, object]:
    data = config.data
    return {
        "legal_name": data.legal_name,
        "cns_provider_code": data.cns_provider_code,
        "iban": data.iban,
        "bic": data.bic,
        "invoice_number_pattern": data.invoices.number_pattern,
        "credit_note_number_pattern": data.invoices.credit_note_pattern,
        "default_language": data.languages.default,
        "timezone": data.timezone,
        "config": config.stored_config(),
        "config_hash": config.config_hash(),
    }


def _changed_fields(old: dict[str, object], new: dict[str, object], prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out.extend(_changed_fields(a, b, f"{prefix}{key}."))
        elif a != b:
            out.append(prefix + key)
    return out


async def sync_tenants(session: AsyncSession, configs: list[TenantConfig]) -> list[TenantChange]:
    """Apply validated tenant files. The caller's transaction makes it all or nothing."""
    repo = TenantRepository(session)
    await _refuse_taken_facilities(repo, configs)
    changes = []
    for config in configs:
        columns = _columns(config)
        tenant = await repo.by_slug(config.slug)
        if tenant is None:
            session.add(Tenant(slug=config.slug, **columns))  # type: ignore[arg-type]
            changes.append(TenantChange(config.slug, "created"))
            continue
        if tenant.config_hash == columns["config_hash"]:
            changes.append(TenantChange(config.slug, "unchanged"))
            continue
        fields = _changed_fields(tenant.config, columns["config"])  # type: ignore[arg-type]
        for name, value in columns.items():
            setattr(tenant, name, value)
        tenant.updated_at = utcnow()
        session.add(tenant)
        changes.append(TenantChange(config.slug, "updated", fields))
    await session.flush()
    return changes


async def _refuse_taken_facilities(repo: TenantRepository, configs: list[TenantConfig]) -> None:
    """A sending facility (HL7 MSH-4) belongs to one hospital: the files checked each other
    (`read_tenant_dir`); here they are checked against the active tenants already stored that
    this sync does not rewrite (a sync from another directory, a file since removed), whose
    messages would otherwise go to whichever hospital the listener read last."""
    synced = {config.slug for config in configs}
    taken = {facility: tenant.slug for tenant in await repo.all()
             if tenant.active and tenant.slug not in synced
             for facility in (tenant.config or {}).get("integration", {}).get(
                 "hl7_facilities", [])}
    clashes = [f"{config.path.name}: integration.hl7_facilities: {facility!r} is already "
               f"mapped to tenant {taken[facility]!r}" for config in configs
               for facility in config.data.integration.hl7_facilities if facility in taken]
    if clashes:
        raise Conflict("; ".join(clashes) + ": remove it from that tenant first; nothing was "
                       "changed")


async def get_tenant(session: AsyncSession, slug: str) -> Tenant:
    tenant = await TenantRepository(session).by_slug(slug)
    if tenant is None:
        raise NotFound(f"No tenant {slug!r}: run `luxfact tenants sync` or check the slug.")
    return tenant


def tenant_warnings(tenant: Tenant) -> list[str]:
    """What an administrator should fix in the tenant file, though nothing refuses it."""
    warnings = []
    if not tenant.iban:
        warnings.append("No IBAN: invoices are issued, but their PDF carries no bank details "
                        "and no payment QR code. Add `iban` (and `bic`) to the tenant file.")
    if not tenant.config.get("logo"):
        warnings.append("No logo: documents show the hospital's name only.")
    return warnings


# Tenants change only through `luxfact tenants sync`, and are read by every billing request:
# a few seconds of staleness after a sync is harmless, a query per request is not free.
TENANT_TTL = 5.0
_tenants: dict[uuid.UUID, tuple[float, Tenant]] = {}


async def tenant_by_id(session: AsyncSession, tenant_id: uuid.UUID) -> Tenant | None:
    """The tenant, read at most every TENANT_TTL seconds per process, for reading only.

    What is cached is a copy outside any session: a session's rollback expires the objects
    it loaded, and a cached one would then try to reload itself in the wrong session.
    """
    cached = _tenants.get(tenant_id)
    if cached is not None and time.monotonic() - cached[0] < TENANT_TTL:
        return cached[1]
    tenant = await TenantRepository(session).by_id(tenant_id)
    if tenant is None:
        return None
    copy = Tenant.model_construct(**{name: getattr(tenant, name)
                                     for name in Tenant.model_fields})
    _tenants[tenant_id] = (time.monotonic(), copy)
    return copy
